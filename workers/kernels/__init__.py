"""Benchmark kernels (matmul, conv2d): chain jobs (floating-point and exact int8) and the
older exact-integer Merkle kernels. No Django here: the
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
from .chain import (
    CHAIN_PRECISIONS,
    FLOAT_CHAIN_PRECISIONS,
    ChainSpec,
    ConvChainSpec,
    MatmulChainSpec,
    chain_spec_from_dict,
)
from .generator import conv_inputs, generate, matmul_inputs, seed_bytes
from .specs import PRECISIONS, Conv2dSpec, MatmulSpec, Spec, SpecError, spec_from_dict

# Any job's spec: a Merkle-protocol kernel (exact integers: int8) or a chain-sketch kernel.
JobSpec = Spec | ChainSpec
CHAIN_KINDS = frozenset({MatmulChainSpec.kind, ConvChainSpec.kind})


def job_spec_from_dict(data: object) -> JobSpec:
    """A job's spec from its `to_dict()` form, whichever protocol its kind belongs to."""
    if isinstance(data, dict) and data.get("kind") in CHAIN_KINDS:
        return chain_spec_from_dict(data)
    return spec_from_dict(data)


__all__ = [
    "BACKENDS",
    "CHAIN_KINDS",
    "CHAIN_PRECISIONS",
    "FLOAT_CHAIN_PRECISIONS",
    "ChainSpec",
    "ConvChainSpec",
    "JobSpec",
    "MatmulChainSpec",
    "chain_spec_from_dict",
    "job_spec_from_dict",
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
