"""Running a chain job (workers/kernels/chain.py) on a backend: the agent's side.

NumPy runs fp32 (and tf32, as fp32: identical inputs, a more accurate answer, never a faster
one); torch runs every chain precision on CPU or CUDA through one code path, so the CUDA run is
the one the CPU tests exercise. Half-precision GEMMs/convolutions write P outputs from fp32
accumulation (torch's default, with reduced-precision reductions switched off): that output
rounding is exactly the per-layer error the tolerance allows (verification/precision.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import BackendError, _torch_flags, available_backends, resolve_backend
from .chain import ChainSpec, _abs_scale_np, inputs_numpy, inputs_torch

_PRECISIONS = {
    "numpy": ("fp32", "tf32"),
    "torch-cpu": ("fp32", "tf32", "bf16", "fp16"),
    "torch-cuda": ("fp32", "tf32", "bf16", "fp16"),
}
_TORCH_DTYPES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def chain_backends(precision: str) -> list[str]:
    """Available backends that run chain jobs in `precision`, most preferred first."""
    return [b for b in available_backends() if precision in _PRECISIONS.get(b, ())]


@dataclass
class PreparedChain:
    """Inputs generated on the backend's device; `run` is the kernel (all L layers) plus the
    sketch, returning Y as a (units, m) float32 NumPy array."""

    spec: ChainSpec
    backend: str
    run: Callable[[], np.ndarray]
    layers_only: Callable[[], Any]
    sync: Callable[[], None]


def chain_prepare(spec: ChainSpec, seed: str, backend: str = "numpy") -> PreparedChain:
    backend = resolve_backend(backend)
    if spec.precision not in _PRECISIONS.get(backend, ()):
        raise BackendError(f"backend {backend} does not run chain jobs in {spec.precision}")
    if backend not in available_backends():
        raise BackendError(f"backend {backend} is not available on this machine")
    if backend == "numpy":
        return _prepare_numpy(spec, seed)
    return _prepare_torch(spec, seed, backend)


def _prepare_numpy(spec: ChainSpec, seed: str) -> PreparedChain:
    x0, w = inputs_numpy(spec, seed)
    scales = [spec.broadcast_scale(s) for s in spec.scales(seed)]
    sketch = spec.sketch_matrix(seed)

    def layers() -> np.ndarray:
        x = x0
        for scale in scales:
            x = _abs_scale_np(spec.layer_numpy(x, w), scale)
        return x

    def run() -> np.ndarray:
        return np.ascontiguousarray(spec.unit_vectors(layers()) @ sketch, dtype=np.float32)

    return PreparedChain(spec, "numpy", run, layers, lambda: None)


def _prepare_torch(spec: ChainSpec, seed: str, backend: str) -> PreparedChain:
    import torch

    device = "cuda" if backend == "torch-cuda" else "cpu"
    dtype = getattr(torch, _TORCH_DTYPES[spec.precision])
    x0, w = inputs_torch(spec, seed, device=device, dtype=dtype)
    scales = [
        spec.broadcast_scale(s) for s in torch.from_numpy(spec.scales(seed)).to(device, dtype)
    ]
    sketch = torch.from_numpy(spec.sketch_matrix(seed)).to(device)

    def layers() -> Any:
        with _torch_flags(torch, spec.precision), torch.inference_mode():
            x = x0
            for scale in scales:
                x = spec.layer_torch(torch, x, w)
                x.abs_()
                x.mul_(scale)
            return x

    def run() -> np.ndarray:
        with torch.inference_mode():
            y = spec.unit_vectors(layers()).float() @ sketch
        return y.cpu().numpy()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return PreparedChain(spec, backend, run, layers, sync)


def chain_compute(spec: ChainSpec, seed: str, backend: str = "numpy") -> np.ndarray:
    """Y = sketch of X_L, (units, m) float32, computed on `backend`."""
    return chain_prepare(spec, seed, backend).run()


__all__ = ["PreparedChain", "chain_backends", "chain_compute", "chain_prepare"]
