"""Benchmark kernels (matmul, conv2d) with seeded exact-integer inputs. No Django here: the
provider agent imports this package with only NumPy (torch/cupy optional) installed."""

from .backends import (
    BACKENDS,
    BackendError,
    available_backends,
    backend_device_name,
    bench,
    best_backend,
    compute,
    prepare,
    reference_call_seconds,
    resolve_backend,
    supported_precisions,
    supports,
)
from .generator import conv_inputs, generate, matmul_inputs, seed_bytes
from .specs import PRECISIONS, Conv2dSpec, MatmulSpec, Spec, SpecError, spec_from_dict

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BackendError",
    "Conv2dSpec",
    "MatmulSpec",
    "Spec",
    "SpecError",
    "available_backends",
    "backend_device_name",
    "bench",
    "best_backend",
    "compute",
    "conv_inputs",
    "generate",
    "matmul_inputs",
    "prepare",
    "reference_call_seconds",
    "resolve_backend",
    "seed_bytes",
    "spec_from_dict",
    "supported_precisions",
    "supports",
]
