"""Running a chain job (workers/kernels/chain.py) on a backend: the agent's side.

NumPy runs fp32 (and tf32, as fp32: identical inputs, a more accurate answer, never a faster
one); torch runs every chain precision on CPU or CUDA through one code path, so the CUDA run is
the one the CPU tests exercise. Half-precision GEMMs/convolutions write P outputs from fp32
accumulation (torch's default, with reduced-precision reductions switched off): that output
rounding is exactly the per-layer error the tolerance allows (verification/precision.py).

int8 (the exact chain): NumPy holds the integers in float32 and multiplies with sgemm, exact
for reductions of up to FP32_EXACT_TERMS (longer ones in chunks); torch keeps int8 tensors and
multiplies with torch._int_mm (int8 x int8 -> int32, the int8 tensor-core/VNNI path), the
convolution as an im2col of the k*k shifted taps in channels-last layout. Every route gives the
same integers, which is what the server compares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import BackendError, _torch_flags, available_backends, resolve_backend
from .chain import (
    INT8_MAX,
    ChainSpec,
    ConvChainSpec,
    MatmulChainSpec,
    _abs_scale_np,
    exact_conv_valid_np,
    exact_matmul_np,
    inputs_int8,
    inputs_numpy,
    inputs_torch,
    int8_map_np,
)

_PRECISIONS = {
    "numpy": ("fp32", "tf32", "int8"),
    "torch-cpu": ("fp32", "tf32", "bf16", "fp16", "int8"),
    "torch-cuda": ("fp32", "tf32", "bf16", "fp16", "int8"),
}
_TORCH_DTYPES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def chain_backends(precision: str, family: str | None = None) -> list[str]:
    """Available backends that run chain jobs in `precision`, most preferred first. NumPy comes
    before torch's CPU backend for fp32 matmul (its BLAS is as fast and it generates inputs
    faster), after it for a convolution (NumPy's im2col GEMMs measured 3-5x slower than
    oneDNN's convolution, with 64 MB temporaries whose page faults make the time vary 2x under
    load) and for int8 (torch._int_mm uses the CPU's int8 dot-product units)."""
    names = [b for b in available_backends() if precision in _PRECISIONS.get(b, ())]
    if (family == "conv2d" or precision == "int8") and "torch-cpu" in names and "numpy" in names:
        names.remove("torch-cpu")
        names.insert(names.index("numpy"), "torch-cpu")
    return names


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
    if spec.exact:
        if backend == "numpy":
            return _prepare_numpy_int8(spec, seed)
        return _prepare_torch_int8(spec, seed, backend)
    if backend == "numpy":
        return _prepare_numpy(spec, seed)
    return _prepare_torch(spec, seed, backend)


def _sketch_float(spec: ChainSpec, x: Any, v: Any) -> Any:
    """Y = unit_vectors(X_L) . V (fp32). For conv, V^T times each image's (C, H*W) block and
    only the (H*W, m) result transposed: the same sums without first copying the whole
    activation into pixel-major order (that copy was half the sketch's time, ~10% of a CPU
    conv job's span)."""
    if not isinstance(spec, ConvChainSpec):
        return spec.unit_vectors(x) @ v
    blocks = x.reshape(spec.batch, spec.channels, spec.height * spec.width)
    y = v.T @ blocks  # (batch, m, H*W)
    if isinstance(y, np.ndarray):
        return y.transpose(0, 2, 1).reshape(-1, spec.sketch_width)
    return y.permute(0, 2, 1).reshape(-1, spec.sketch_width)


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
        return np.ascontiguousarray(_sketch_float(spec, layers(), sketch), dtype=np.float32)

    return PreparedChain(spec, "numpy", run, layers, lambda: None)


def _prepare_numpy_int8(spec: ChainSpec, seed: str) -> PreparedChain:
    x0, w = inputs_numpy(spec, seed)
    signs = [spec.broadcast_scale(sign) for sign in spec.signs(seed)]
    sketch = spec.sketch_matrix(seed).astype(np.float64)
    axis = -1 if isinstance(spec, MatmulChainSpec) else 1  # the features of a unit
    if isinstance(spec, MatmulChainSpec):
        layer = exact_matmul_np
    else:
        r = spec.radius

        def layer(x: np.ndarray, w: np.ndarray) -> np.ndarray:
            return exact_conv_valid_np(np.pad(x, ((0, 0), (0, 0), (r, r), (r, r))), w)

    def layers() -> np.ndarray:
        x = x0
        for sign in signs:
            x = int8_map_np(layer(x, w), sign, axis=axis)
        return x

    def run() -> np.ndarray:
        # |y| <= features * 127**2 < 2**53: float64 sums of integers are exact.
        y = spec.unit_vectors(layers()).astype(np.float64) @ sketch
        return y.astype(np.int64)

    return PreparedChain(spec, "numpy", run, layers, lambda: None)


def _int_mm(torch: Any, a: Any, b: Any) -> Any:
    """a . b for int8 matrices, exact in int32 (torch._int_mm). Its CUDA kernel needs more than
    16 rows and inner/outer sizes that are multiples of 8: zero padding leaves the product
    unchanged."""
    rows, inner = a.shape
    cols = b.shape[1]
    padded_rows = max(rows, 17) if a.device.type == "cuda" else rows
    padded_inner, padded_cols = -(-inner // 8) * 8, -(-cols // 8) * 8
    if (padded_rows, padded_inner, padded_cols) != (rows, inner, cols):
        a = torch.nn.functional.pad(a, (0, padded_inner - inner, 0, padded_rows - rows))
        b = torch.nn.functional.pad(b, (0, padded_cols - cols, 0, padded_inner - inner))
        return torch._int_mm(a, b)[:rows, :cols]
    return torch._int_mm(a, b)


def _prepare_torch_int8(spec: ChainSpec, seed: str, backend: str) -> PreparedChain:
    """Activations stay int8, (units, features): rows for matmul, channels-last pixels for
    conv, whose layer is an im2col of the k*k shifted taps times W as (k*k*C, C)."""
    import torch

    device = "cuda" if backend == "torch-cuda" else "cpu"
    first, second = inputs_int8(spec, seed)
    if isinstance(spec, MatmulChainSpec):
        x0 = torch.from_numpy(first).to(device)
        w = torch.from_numpy(second).to(device)

        def product(x: Any) -> Any:
            return _int_mm(torch, x, w)
    else:
        batch, channels, height, width = first.shape
        k, r = spec.kernel_size, spec.radius
        x0 = torch.from_numpy(first).to(device).permute(0, 2, 3, 1).contiguous()
        x0 = x0.reshape(batch * height * width, channels)
        # W (out, in, ky, kx) -> (ky, kx, in, out), matching the taps' order below.
        w = torch.from_numpy(second).to(device).permute(2, 3, 1, 0).reshape(-1, channels)
        w = w.contiguous()

        def product(x: Any) -> Any:
            image = x.reshape(batch, height, width, channels)
            padded = torch.nn.functional.pad(image, (0, 0, r, r, r, r))
            taps = [
                padded[:, dy : dy + height, dx : dx + width] for dy in range(k) for dx in range(k)
            ]
            cols = torch.cat(taps, dim=3).reshape(batch * height * width, k * k * channels)
            return _int_mm(torch, cols, w)

    signs = [torch.from_numpy(sign).to(device, torch.int32) for sign in spec.signs(seed)]
    sketch = torch.from_numpy(spec.sketch_matrix(seed)).to(device, torch.float64)

    def layers() -> Any:
        with torch.inference_mode():
            x = x0
            for sign in signs:
                z = product(x)
                z.abs_()
                # Per unit (a row of z): t = max(0, bit_length(max |z|) - 7), exactly (float64
                # holds every int32).
                _, bits = torch.frexp(z.amax(dim=1, keepdim=True).to(torch.float64))
                shift = (bits - 7).clamp_(min=0)
                z.add_(torch.bitwise_left_shift(torch.ones_like(shift), shift) >> 1)
                z.bitwise_right_shift_(shift)
                z.clamp_(max=INT8_MAX)
                z.mul_(sign)
                x = z.to(torch.int8)
            return x

    def run() -> np.ndarray:
        with torch.inference_mode():
            # |y| <= features * 127**2 < 2**53: float64 sums of integers are exact.
            y = layers().to(torch.float64) @ sketch
        return y.cpu().numpy().astype(np.int64)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return PreparedChain(spec, backend, run, layers, sync)


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
            y = _sketch_float(spec, layers().float(), sketch)
        return y.cpu().numpy()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return PreparedChain(spec, backend, run, layers, sync)


def chain_compute(spec: ChainSpec, seed: str, backend: str = "numpy") -> np.ndarray:
    """Y = sketch of X_L, (units, m): float32, or int64 for the exact chain, on `backend`."""
    return chain_prepare(spec, seed, backend).run()


__all__ = ["PreparedChain", "chain_backends", "chain_compute", "chain_prepare"]
