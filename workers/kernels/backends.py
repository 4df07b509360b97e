"""Run a benchmark spec on a backend and return the exact int64 result.

Backends: "numpy" (CPU BLAS), "torch-cpu", "torch-cuda", "cupy" (CUDA); "torch" means
torch-cuda when CUDA is usable, else torch-cpu.

Exactness. Inputs are integers in -2..2, so every precision holds them and each product (at most
4 in magnitude) exactly. A sum of integers is exact in any order as long as every partial sum
stays below the accumulator's exact-integer limit; spec validation guarantees that for fp32
(4 * terms < 2**24) and int8 (int32 accumulator). fp16/bf16 kernels accumulate in fp32 (with
reduced-precision reductions switched off) but *round their output* to half precision, which
holds integers exactly only up to 2048 / 256. So a half-precision reduction is either asked for
an fp32 output (`torch.mm(..., out_dtype=torch.float32)`, where the device offers it: CUDA) or
split into chunks of `spec.reduction_chunk` terms whose half outputs are exact, summed in fp32.
The chunked form is also exact under fp16 accumulation, since no partial sum can pass 2048.

tf32 is a CUDA tensor-core input mode. Where it does not exist (CPU) tf32 jobs run in fp32: the
result is identical and the run can only be slower, so this never inflates a score.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import generator
from .specs import Conv2dSpec, MatmulSpec, Spec

BACKENDS = ("numpy", "torch-cpu", "torch-cuda", "cupy")

# Measured on the 2-core CI box (see benchmarks/kernels.py): NumPy's BLAS and torch's CPU sgemm
# are within ~20% of each other either way, and NumPy generates inputs 2.5x faster, so NumPy is
# preferred for fp32 on CPU; torch-cpu is still chosen for bf16/fp16/int8, which NumPy lacks.
PREFERENCE = ("torch-cuda", "cupy", "numpy", "torch-cpu")

_PRECISIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "numpy": {"matmul": ("fp32", "tf32"), "conv2d": ("fp32", "tf32")},
    "torch-cpu": {
        "matmul": ("fp32", "tf32", "bf16", "fp16", "int8"),
        # torch.nn.functional.conv2d on int8 returns int8 (it wraps), so no exact int8 conv.
        "conv2d": ("fp32", "tf32", "bf16", "fp16"),
    },
    "torch-cuda": {
        "matmul": ("fp32", "tf32", "bf16", "fp16", "int8"),
        "conv2d": ("fp32", "tf32", "bf16", "fp16"),
    },
    # CuPy is the fallback for CUDA machines without torch; it has no bfloat16 and no exact
    # integer GEMM, so it runs fp32 only.
    "cupy": {"matmul": ("fp32",), "conv2d": ("fp32",)},
}


class BackendError(RuntimeError):
    """The backend is missing, or cannot run this spec exactly."""


def resolve_backend(backend: str) -> str:
    if backend == "torch":
        return "torch-cuda" if _torch_cuda_ok() else "torch-cpu"
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; expected one of {BACKENDS} or 'torch'")
    return backend


def supported_precisions(backend: str, kind: str) -> tuple[str, ...]:
    return _PRECISIONS[resolve_backend(backend)].get(kind, ())


def supports(backend: str, spec: Spec) -> bool:
    return spec.precision in supported_precisions(backend, spec.kind)


@functools.cache
def _torch_ok() -> bool:
    try:
        import torch

        return bool(torch.ones(2).sum().item() == 2)
    except Exception:
        return False


@functools.cache
def _torch_cuda_ok() -> bool:
    if not _torch_ok():
        return False
    import torch

    try:
        return bool(torch.cuda.is_available() and torch.ones(2, device="cuda").sum().item() == 2)
    except Exception:
        return False


@functools.cache
def _cupy_ok() -> bool:
    try:
        import cupy

        return bool(int(cupy.ones(2).sum().get()) == 2)
    except Exception:
        return False


def available_backends() -> list[str]:
    """Backends that import and complete a tiny computation here, most preferred first."""
    ok = {
        "numpy": True,
        "torch-cpu": _torch_ok(),
        "torch-cuda": _torch_cuda_ok(),
        "cupy": _cupy_ok(),
    }
    return [name for name in PREFERENCE if ok[name]]


def best_backend(spec: Spec | None = None) -> str:
    """The most preferred available backend (that can run `spec`, when given)."""
    for name in available_backends():
        if spec is None or supports(name, spec):
            return name
    raise BackendError(f"no available backend runs {spec.kind} in {spec.precision}")


def backend_device_name(backend: str) -> str:
    backend = resolve_backend(backend)
    if backend == "torch-cuda" and _torch_cuda_ok():
        import torch

        return torch.cuda.get_device_name(0)
    if backend == "cupy" and _cupy_ok():
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    return platform.processor() or platform.machine() or "cpu"


# --- torch ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _torch_flags(torch: Any, precision: str) -> Iterator[None]:
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (
        matmul.allow_tf32,
        cudnn.allow_tf32,
        matmul.allow_fp16_reduced_precision_reduction,
        matmul.allow_bf16_reduced_precision_reduction,
    )
    matmul.allow_tf32 = cudnn.allow_tf32 = precision == "tf32"
    # Reduced-precision split-K reductions would sum partial results in half precision and
    # break exactness for outputs above 2048 / 256.
    matmul.allow_fp16_reduced_precision_reduction = False
    matmul.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        (
            matmul.allow_tf32,
            cudnn.allow_tf32,
            matmul.allow_fp16_reduced_precision_reduction,
            matmul.allow_bf16_reduced_precision_reduction,
        ) = saved


_TORCH_DTYPES = {
    "fp32": "float32",
    "tf32": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "int8": "int8",
}


@functools.cache
def _torch_out_dtype_exact(device_type: str, dtype_name: str) -> bool:
    """Whether torch.mm(..., out_dtype=float32) works here and keeps an fp32 output.

    The probe sums 2049 ones: 2049 is not representable in fp16 or bf16, so only a genuine fp32
    output gives it back.
    """
    import torch

    dtype = getattr(torch, dtype_name)
    try:
        with _torch_flags(torch, "fp32"):
            a = torch.ones((16, 2049), dtype=dtype, device=device_type)
            out = torch.mm(a, a.T.contiguous(), out_dtype=torch.float32)
        return out.dtype == torch.float32 and bool((out == 2049).all().item())
    except Exception:
        return False


def _torch_matmul(torch: Any, spec: MatmulSpec, a: Any, b: Any) -> Any:
    if spec.precision in ("fp32", "tf32"):
        return torch.mm(a, b)
    if spec.precision == "int8":
        return _torch_int8_mm(torch, a, b)
    if _torch_out_dtype_exact(a.device.type, str(a.dtype).removeprefix("torch.")):
        return torch.mm(a, b, out_dtype=torch.float32)
    chunk = spec.reduction_chunk
    acc = torch.mm(a[:, :chunk], b[:chunk]).float()
    for lo in range(chunk, spec.n, chunk):
        acc += torch.mm(a[:, lo : lo + chunk], b[lo : lo + chunk])
    return acc


def _torch_int8_mm(torch: Any, a: Any, b: Any) -> Any:
    # torch._int_mm (int8 x int8 -> int32) on CUDA needs more than 16 rows and dimensions that
    # are multiples of 8; zero padding leaves the product unchanged.
    n = a.shape[0]
    size = max(32, -(-n // 8) * 8)
    if size != n:
        pad = (0, size - n, 0, size - n)
        a = torch.nn.functional.pad(a, pad)
        b = torch.nn.functional.pad(b, pad)
    return torch._int_mm(a, b)[:n, :n]


def _torch_conv(torch: Any, spec: Conv2dSpec, x: Any, w: Any) -> Any:
    conv = functools.partial(torch.nn.functional.conv2d, stride=spec.stride, padding=spec.padding)
    if spec.precision in ("fp32", "tf32"):
        return conv(x, w)
    # Convolution is linear in the input channels: summing convolutions over channel groups in
    # fp32 gives the full result, and each group's half-precision output is exact.
    chunk = spec.reduction_chunk
    acc = conv(x[:, :chunk], w[:, :chunk]).float()
    for lo in range(chunk, spec.in_channels, chunk):
        acc += conv(x[:, lo : lo + chunk], w[:, lo : lo + chunk])
    return acc


# --- numpy / cupy -----------------------------------------------------------------------------


def _xp_conv(xp: Any, spec: Conv2dSpec, x: Any, w: Any) -> Any:
    """Convolution as k*k shifted GEMMs accumulated in fp32.

    This is im2col done one kernel tap at a time: a full im2col matrix is k*k times the input,
    which for an 11x11 kernel would be 121x the memory; per tap it is one input-sized copy.
    Exact because every partial sum is bounded by 4 * in_channels * k * k < 2**24.
    """
    k, s, p = spec.kernel_size, spec.stride, spec.padding
    oh, ow = spec.out_height, spec.out_width
    if p:
        x = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    batch, channels = x.shape[0], x.shape[1]
    out = xp.zeros((batch, spec.out_channels, oh * ow), dtype=xp.float32)
    for dy in range(k):
        for dx in range(k):
            tap = x[:, :, dy : dy + s * (oh - 1) + 1 : s, dx : dx + s * (ow - 1) + 1 : s]
            out += xp.matmul(w[:, :, dy, dx], tap.reshape(batch, channels, oh * ow))
    return out.reshape(batch, spec.out_channels, oh, ow)


# --- prepared jobs ----------------------------------------------------------------------------


@dataclass
class Prepared:
    """A spec's inputs generated on a backend's device, ready to run (and re-run, for timing)."""

    spec: Spec
    backend: str
    inputs: tuple[Any, Any]
    kernel: Callable[[], Any]
    sync: Callable[[], None]
    to_host: Callable[[Any], np.ndarray]

    def run(self) -> Any:
        return self.kernel()

    def result(self, raw: Any) -> np.ndarray:
        out = self.to_host(raw)
        if out.shape != self.spec.output_shape:
            raise BackendError(f"backend returned shape {out.shape}, not {self.spec.output_shape}")
        return out.astype(np.int64, copy=False)


def _shapes(spec: Spec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if isinstance(spec, MatmulSpec):
        return (spec.n, spec.n), (spec.n, spec.n)
    k = spec.kernel_size
    return (
        (spec.batch, spec.in_channels, spec.height, spec.width),
        (spec.out_channels, spec.in_channels, k, k),
    )


def prepare(spec: Spec, seed: str, backend: str = "numpy") -> Prepared:
    backend = resolve_backend(backend)
    if not supports(backend, spec):
        raise BackendError(
            f"backend {backend} cannot run {spec.kind} in {spec.precision} exactly; "
            f"it supports {', '.join(supported_precisions(backend, spec.kind))}"
        )
    if backend not in available_backends():
        raise BackendError(f"backend {backend} is not available on this machine")
    names = generator.input_names(spec.kind)
    shapes = _shapes(spec)
    if backend == "numpy":
        return _prepare_xp(np, spec, backend, seed, names, shapes, lambda: None, np.asarray)
    if backend == "cupy":
        import cupy

        return _prepare_xp(
            cupy,
            spec,
            backend,
            seed,
            names,
            shapes,
            cupy.cuda.Device().synchronize,
            cupy.asnumpy,
        )
    return _prepare_torch(spec, backend, seed, names, shapes)


def _prepare_xp(
    xp: Any, spec: Any, backend: str, seed: str, names: Any, shapes: Any, sync: Any, to_host: Any
) -> Prepared:
    inputs = []
    for name, shape in zip(names, shapes, strict=True):
        count = int(np.prod(shape))
        if xp is np:
            flat = generator.generate(seed, name, count, dtype=np.float32)
        else:
            flat = generator.generate_cupy(seed, name, count, dtype=xp.float32)
        inputs.append(flat.reshape(shape))
    a, b = inputs
    if isinstance(spec, MatmulSpec):
        kernel = functools.partial(xp.matmul, a, b)
    else:
        kernel = functools.partial(_xp_conv, xp, spec, a, b)
    return Prepared(spec, backend, (a, b), kernel, sync, to_host)


def _prepare_torch(spec: Any, backend: str, seed: str, names: Any, shapes: Any) -> Prepared:
    import torch

    device = "cuda" if backend == "torch-cuda" else "cpu"
    dtype = getattr(torch, _TORCH_DTYPES[spec.precision])
    a, b = (
        generator.generate_torch(seed, name, int(np.prod(shape)), device=device, dtype=dtype)
        .reshape(shape)
        .contiguous()
        for name, shape in zip(names, shapes, strict=True)
    )
    op = _torch_matmul if isinstance(spec, MatmulSpec) else _torch_conv

    def kernel() -> Any:
        with _torch_flags(torch, spec.precision), torch.inference_mode():
            return op(torch, spec, a, b)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def to_host(raw: Any) -> np.ndarray:
        # Copy in the kernel's own (4-byte) type and widen on the host: half the PCIe traffic.
        return raw.cpu().numpy()

    return Prepared(spec, backend, (a, b), kernel, sync, to_host)


def compute(spec: Spec, seed: str, backend: str = "numpy") -> np.ndarray:
    """The exact output of `spec` under `seed` as int64: (n, n) or (batch, out, out_h, out_w)."""
    prepared = prepare(spec, seed, backend)
    return prepared.result(prepared.run())


# --- timing -----------------------------------------------------------------------------------


def _best_of(fn: Callable[[], Any], sync: Callable[[], None], repeats: int) -> list[float]:
    fn()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def bench(spec: Spec, backend: str, repeats: int = 3, seed: str | None = None) -> dict[str, Any]:
    """Time our kernel (after one warm-up run) and the phases around it.

    `seconds` is the best kernel time; `generate_seconds` (inputs on the device) and
    `output_seconds` (copy back and widen to int64) are reported apart, since the server's own
    dispatch-to-commit timing includes them anyway.
    """
    import secrets

    seed = seed or secrets.token_hex(32)
    backend = resolve_backend(backend)
    if getattr(spec, "protocol", "merkle") == "chain-sketch":
        return _bench_chain(spec, backend, repeats, seed)
    start = time.perf_counter()
    prepared = prepare(spec, seed, backend)
    prepared.sync()
    generate_seconds = time.perf_counter() - start
    times = _best_of(prepared.run, prepared.sync, repeats)
    start = time.perf_counter()
    prepared.result(prepared.run())
    output_seconds = time.perf_counter() - start - min(times)
    return _bench_figures(spec, backend, times, generate_seconds, output_seconds)


def _bench_chain(spec: Any, backend: str, repeats: int, seed: str) -> dict[str, Any]:
    """A chain job's kernel alone: its L layers on inputs already on the device (what the
    server-timed figure of the same job is compared with)."""
    from .chain_run import chain_prepare

    start = time.perf_counter()
    prepared = chain_prepare(spec, seed, backend)
    prepared.sync()
    generate_seconds = time.perf_counter() - start
    times = _best_of(prepared.layers_only, prepared.sync, repeats)
    return _bench_figures(spec, backend, times, generate_seconds, 0.0)


def _bench_figures(
    spec: Any, backend: str, times: list[float], generate_seconds: float, output_seconds: float
) -> dict[str, Any]:
    best = min(times)
    return {
        "kind": spec.kind,
        "precision": spec.precision,
        "backend": backend,
        "device": backend_device_name(backend),
        "flops": spec.flops,
        "repeats": len(times),
        "seconds": best,
        "median_seconds": float(np.median(times)),
        "tflops": spec.flops / best / 1e12,
        "generate_seconds": generate_seconds,
        "output_seconds": max(0.0, output_seconds),
    }


def reference_call_seconds(
    spec: Spec, backend: str, repeats: int = 3, prepared: Prepared | None = None
) -> float:
    """Best time of the backend's own library call on inputs of the same shape and dtype.

    torch: torch.mm / torch._int_mm / torch.nn.functional.conv2d in the job's dtype (whose
    half-precision output is not exact: it is the speed we compare against, not a result).
    numpy / cupy: matmul; for conv, which they lack, the single GEMM of the same FLOPs
    (out_ch x in_ch*k*k) @ (in_ch*k*k x batch*out_h*out_w), a bound no conv can beat.
    """
    backend = resolve_backend(backend)
    prepared = prepared or prepare(spec, "00" * 32, backend)
    a, b = prepared.inputs
    if backend.startswith("torch"):
        import torch

        if isinstance(spec, MatmulSpec):
            mm = torch._int_mm if spec.precision == "int8" else torch.mm
            if spec.precision == "int8" and (spec.n % 8 or spec.n <= 16):
                # _int_mm's shape rules; compare on the padded size our kernel really runs.
                return min(_best_of(prepared.run, prepared.sync, repeats))
            call = functools.partial(mm, a, b)
        else:
            call = functools.partial(
                torch.nn.functional.conv2d, a, b, stride=spec.stride, padding=spec.padding
            )

        def run() -> Any:
            with _torch_flags(torch, spec.precision), torch.inference_mode():
                return call()

        return min(_best_of(run, prepared.sync, repeats))
    xp = np if backend == "numpy" else __import__("cupy")
    if isinstance(spec, MatmulSpec):
        return min(_best_of(functools.partial(xp.matmul, a, b), prepared.sync, repeats))
    k2c = spec.in_channels * spec.kernel_size**2
    cols = spec.batch * spec.out_height * spec.out_width
    w = xp.ones((spec.out_channels, k2c), dtype=xp.float32)
    x = xp.ones((k2c, cols), dtype=xp.float32)
    return min(_best_of(functools.partial(xp.matmul, w, x), prepared.sync, repeats))
