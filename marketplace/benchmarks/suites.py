"""What a machine is asked to compute, and how fast its claimed device must be.

Sizes. A job's throughput is measured by the server from dispatch to commitment, so it includes
the HTTP round trip, input generation and the agent's Merkle hashing of the output, all O(n^2)
against the kernel's O(n^3). CPU jobs are small (a 2-core box finishes each in well under a
second: onboarding must not take minutes on a laptop); GPU jobs are large enough that the kernel
is a visible part of the span without making the server's O(k n^2) verification slow.

Precisions. A machine is asked for every precision its reported backends can run exactly (the
kernels package decides which): NumPy gives fp32; torch adds bf16, fp16 and int8 (matmul only);
tf32 is asked for only from CUDA backends, since on a CPU it is fp32 under another name.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from workers.kernels import Conv2dSpec, MatmulSpec, Spec, supported_precisions

CPU_MATMUL = {"n": 512}
CPU_CONV = {
    "batch": 2,
    "in_channels": 32,
    "out_channels": 32,
    "height": 32,
    "width": 32,
    "kernel_size": 3,
    "stride": 1,
    "padding": 1,
}
# fp32/tf32 at n = 8192 (1.1 TFLOP) is the device probe; half precisions and int8 at 4096.
GPU_MATMUL = {"fp32": {"n": 8192}, "tf32": {"n": 8192}}
GPU_MATMUL_DEFAULT = {"n": 4096}
GPU_CONV = {
    "batch": 8,
    "in_channels": 256,
    "out_channels": 256,
    "height": 64,
    "width": 64,
    "kernel_size": 3,
    "stride": 1,
    "padding": 1,
}
# Half-precision convolutions are run as channel chunks whose outputs stay exact; a 1x1 kernel
# keeps the chunk wide (64 channels in bf16) so the job is not thousands of tiny launches.
GPU_CONV_HALF = {**GPU_CONV, "in_channels": 512, "kernel_size": 1, "padding": 0}

# Dense (no sparsity) per-device peaks in TFLOP/s from the vendors' data sheets, rough on
# purpose: they only need to tell an order of magnitude apart. "fp32" is plain FP32 (no TF32).
DEVICE_PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    (r"\bH100\b", {"fp32": 67.0, "bf16": 989.0}),
    (r"\bH200\b", {"fp32": 67.0, "bf16": 989.0}),
    (r"\bA100\b", {"fp32": 19.5, "bf16": 312.0}),
    (r"\bL4\b", {"fp32": 30.3, "bf16": 121.0}),
    (r"\b4090\b", {"fp32": 82.6, "bf16": 165.0}),
]

_PRECISION_FAMILY = {"fp32": "fp32", "tf32": "fp32", "bf16": "bf16", "fp16": "bf16", "int8": ""}


def device_peak(model: str, precision: str) -> float | None:
    family = _PRECISION_FAMILY.get(precision, "")
    for pattern, peaks in DEVICE_PEAK_TFLOPS:
        if re.search(pattern, model or "", re.IGNORECASE):
            return peaks.get(family)
    return None


def device_floor_tflops(*, accelerator_kind: str, model: str, precision: str, flops: int) -> float:
    """The least a job must measure on the claimed device; 0 where no floor applies.

    The floor is BENCHMARK_DEVICE_MIN_FRACTION (1%) of the device's fp32 peak, checked on fp32
    and tf32 jobs of at least BENCHMARK_DEVICE_PROBE_MIN_FLOPS (the GPU suite's n = 8192
    matmul). 1% because the server's span includes the agent's hashing of a 512 MiB output and
    the network, which an honest H100 spends most of its ~0.6 s on; a CPU or a card two orders
    of magnitude slower than claimed still falls far below it. Half precisions are not held to
    a floor: at sizes the server can afford to verify, an H100's bf16 kernel takes a few
    milliseconds, below the fixed overheads, so any floor there would hit honest machines.
    CPUs and unknown models have no floor.
    """
    if accelerator_kind == "cpu" or precision not in ("fp32", "tf32"):
        return 0.0
    if flops < settings.BENCHMARK_DEVICE_PROBE_MIN_FLOPS:
        return 0.0
    peak = device_peak(model, precision)
    return peak * settings.BENCHMARK_DEVICE_MIN_FRACTION if peak else 0.0


def _backend_precisions(backends: list[str], *, on_gpu: bool, kind: str) -> set[str]:
    names = set()
    for backend in backends or ["numpy"]:
        if backend == "torch":
            names.add("torch-cuda" if on_gpu else "torch-cpu")
        elif backend in ("numpy", "torch-cuda", "cupy"):
            names.add(backend)
    names.add("numpy")  # every agent has NumPy: fp32 is always possible
    precisions: set[str] = set()
    for name in names:
        precisions.update(supported_precisions(name, kind))
    if not on_gpu or not names & {"torch-cuda"}:
        precisions.discard("tf32")
    return precisions


def suite_specs(
    *, accelerator_kind: str, backends: list[str], small: bool | None = None
) -> list[dict[str, Any]]:
    """The onboarding suite: matmul and conv2d at every precision the machine's backends run."""
    gpu_backends = {"torch", "torch-cuda", "cupy"}
    on_gpu = accelerator_kind != "cpu" and bool(gpu_backends & set(backends))
    small = settings.BENCHMARK_SMALL_SUITES if small is None else small
    specs: list[Spec] = []
    order = ("fp32", "tf32", "bf16", "fp16", "int8")
    for precision in order:
        if precision in _backend_precisions(backends, on_gpu=on_gpu, kind="matmul"):
            if small or not on_gpu:
                size = CPU_MATMUL
            else:
                size = GPU_MATMUL.get(precision, GPU_MATMUL_DEFAULT)
            specs.append(MatmulSpec(precision=precision, **size))
    for precision in order:
        if precision in _backend_precisions(backends, on_gpu=on_gpu, kind="conv2d"):
            if small or not on_gpu:
                size = CPU_CONV
            else:
                size = GPU_CONV if precision in ("fp32", "tf32") else GPU_CONV_HALF
            specs.append(Conv2dSpec(precision=precision, **size))
    return [spec.to_dict() for spec in specs]
