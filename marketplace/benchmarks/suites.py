"""What a machine is asked to compute, and how fast the device it claims must be.

The suite comes from the claim. A machine that registered as a GPU, TPU, NeuronCore, FPGA or
IPU gets its device class's suite (large sizes, the class's precisions) whatever backends its
agent says it has: an agent that reports only NumPy while claiming an H100 is asked for the H100
suite and fails it. Only a machine that claims to be a CPU is asked what its backends can run
(NumPy gives fp32; torch adds bf16, fp16 and int8), because that is all a CPU claim promises.

Every job has a floor and a ceiling (TFLOP/s, server-timed) from DEVICE_CLASSES, a table of
vendor data-sheet peaks (dense, no sparsity, per device) for each class of device:

    ceiling = ceiling_peak x BENCHMARK_CEILING_FACTOR
    floor   = flops / (flops / (floor_peak x FLOOR_EFFICIENCY[family, protocol]) + overhead)
    overhead = base(protocol) + transferred MB x BENCHMARK_FLOOR_SECONDS_PER_MB

The ceiling is what the claimed silicon cannot beat: the server-timed span covers at least the
kernel, so a figure above peak (times a margin for boost clocks and clock skew) means more or
faster silicon answered than was claimed. The floor is the slowest an honest device of the class
can be: its kernel at the low end of the efficiency band, plus the plumbing its protocol puts
inside the span: for a chain-sketch job (every floating-point precision) dispatch, input
generation and a sketch of at most 175 KB (BENCHMARK_CHAIN_FLOOR_BASE_SECONDS); for a Merkle job
(int8) also hashing every output cell. On the GPU suites' large jobs the floor sits one to two
orders of magnitude above any CPU. A known model has
floor_peak = ceiling_peak = its data-sheet figure; a class default (an unknown model) takes the
slowest plausible member for the floor and the fastest for the ceiling.

CPU jobs are sized for the machine (cpu_job_sized, applied by the server when it dispatches the
job): the suite's sizes are the least a job may have, and a machine whose verified figures say
it is faster gets more layers (or, for conv, a larger batch), so that its kernel runs about
BENCHMARK_CPU_JOB_SECONDS (1 s) and the ~40 ms of dispatch and HTTP in the server-timed span
stay under 5%.
The agent has no say: the rate comes from the machine's own verified jobs, the size is written
into the job's spec before the seed is revealed, and floors and ceilings apply to that spec.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from workers.kernels import (
    CHAIN_PRECISIONS,
    FLOAT_CHAIN_PRECISIONS,
    Conv2dSpec,
    ConvChainSpec,
    JobSpec,
    MatmulChainSpec,
    MatmulSpec,
    job_spec_from_dict,
    supported_precisions,
)

# Every precision is a chain-sketch job (workers/kernels/chain.py): L layers of the kernel,
# answered by an O(units) sketch, so the server-timed span is the kernel's; int8 is the exact
# integer chain (int32 accumulation, compared for equality). The Merkle kernels
# (workers/kernels/specs.py) still verify jobs created before the int8 chain existed; no suite
# creates them.
#
# CPU sizes: the fp32 matmul (the listing's figure) 51 GFLOP, ~0.27 s on an idle 2-core AVX-512
# box, so that the kernel dominates the ~40 ms of dispatch, input generation and HTTP in its
# span; half precisions have fewer layers (fp16 on a CPU runs at a hundredth of fp32, bf16 at
# anything from a tenth to twice, with or without AMX).
CPU_MATMUL_CHAIN = {"n": 512, "rows": 1024}
CPU_MATMUL_LAYERS = {"fp32": 96, "tf32": 96, "bf16": 16, "fp16": 2, "int8": 16}
# Conv: the verifier recomputes each sampled pixel's cone (sum over j < L of (2j+1)^2 pixels), a
# share 48 * cone / (L * units) of the job: 2.9% at L = 2 and 8,192 pixels; 256 channels make it
# 19 GFLOP (~0.2-0.8 s in fp32); fp16 has 64 (a CPU without fp16 arithmetic runs it at a
# hundredth of fp32). bf16 has 256 like fp32: with AVX512-BF16 or AMX it runs at 2-4x fp32, and
# only a wide layer lets the sized job (at most CPU_MAX_CONV_BATCH x CPU_MAX_CONV_LAYERS) last
# long enough on such a machine.
CPU_CONV_CHAIN = {"batch": 8, "height": 32, "width": 32, "kernel_size": 3, "layers": 2}
CPU_CONV_CHANNELS = {"fp32": 256, "tf32": 256, "bf16": 256, "fp16": 64, "int8": 64}
# Sizing a CPU job for the machine (cpu_job_sized). The kernel should run about this long; the
# rate is the machine's own verified figure for the kernel and precision, else one derived from
# its other verified figures, else its fp32 figure times CPU_RATE_GUESS, the ratio of precision
# P to fp32 on a current server CPU (measured here, an AVX512-BF16/VNNI EPYC with one thread:
# bf16 ~4x, int8 through torch._int_mm ~6x, fp16 ~1/60; AMX parts are faster still). A CPU
# without bf16 or int8 dot-product units runs those at 1/20 to 1 of fp32, so a guess too high
# costs it one job of up to ~40 s (bf16), never minutes; every later job of that precision uses
# the measured figure. The caps bound the verifier's cost (a sampled row costs L vector-matrix
# products; a pixel's cone grows as L^3) and the worst case.
CPU_RATE_GUESS = {"fp32": 1.0, "tf32": 1.0, "bf16": 2.0, "fp16": 1 / 32, "int8": 4.0}
CPU_CONV_RATE_GUESS = 1.0  # a conv layer's rate against a matmul's, before either is measured
CPU_MAX_MATMUL_LAYERS = {"fp32": 1024, "tf32": 1024, "bf16": 1024, "fp16": 1024, "int8": 512}
# Conv grows its batch first, then its channels (the verifier's share, k * cone / (L * units),
# depends on neither), and its layers last: the cone of a sampled pixel grows as L^3, so the
# share is 1.4% at L = 3 and 2.5% at L = 4 for 40 images of 32 x 32, but 40% at L = 16.
CPU_MAX_CONV_LAYERS = 4
CPU_MAX_CONV_CHANNELS = 512
CPU_MAX_CONV_BATCH = {"fp32": 40, "tf32": 40, "bf16": 40, "fp16": 40, "int8": 40}
# A device claim in small-suite mode (demo, tests) gets this probe instead of its GPU sizes: 51
# GFLOP, about a second on a small CPU, large enough that the claimed device's floor (with the
# floor's plumbing allowance) sits above what a CPU does; conv keeps the CPU size.
# Half precisions run at a tenth of fp32 or less on a CPU, so their probes are shorter; the fp32
# probe is the one that separates a CPU from a device claim.
PROBE_MATMUL_CHAIN = {"n": 1024, "rows": 1024}
PROBE_MATMUL_LAYERS = {"fp32": 24, "tf32": 24, "bf16": 8, "fp16": 2, "int8": 8}
# Device sizes: rows = 4n, so that the server's k sampled rows are under 0.5% of a recompute;
# half precisions run ~15x faster than fp32 on tensor cores, hence 4x the layers.
GPU_MATMUL_CHAIN = {"n": 8192, "rows": 32768}
# int8 runs at about twice bf16 on tensor cores; its verifier recomputes exactly (float64 sums of
# fp32-exact chunks), so 32 layers keeps a check to a few CPU-seconds.
GPU_MATMUL_LAYERS = {"fp32": 16, "tf32": 32, "bf16": 64, "fp16": 64, "int8": 32}
GPU_CONV_CHAIN = {"batch": 8, "channels": 1024, "height": 64, "width": 64, "kernel_size": 3}
GPU_CONV_LAYERS = 3
# The Merkle protocol's int8 sizes: no suite creates these jobs any more (see above).
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
GPU_MATMUL_INT8 = {"n": 4096}
GPU_CONV_INT8 = {
    "batch": 8,
    "in_channels": 512,
    "out_channels": 256,
    "height": 64,
    "width": 64,
    "kernel_size": 1,
    "stride": 1,
    "padding": 0,
}

PRECISION_ORDER = ("fp32", "tf32", "bf16", "fp16", "int8")
# fp16 runs at the bf16 rate on every device in the table.
_PEAK_KEY = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "fp16": "bf16", "int8": "int8"}
# Low end of the kernel's efficiency band (achieved / peak) for an honest, stock agent, by kernel
# family and protocol. Matmul reaches 50-80% of peak in cuBLAS/MKL; a 'same' 3x3 convolution in
# cuDNN 20-50%; the exact-integer conv2d path (im2col, channel chunks) far less.
FLOOR_EFFICIENCY = {
    ("matmul", "chain-sketch"): 0.25,
    ("conv2d", "chain-sketch"): 0.1,
    ("matmul", "merkle"): 0.25,
    ("conv2d", "merkle"): 0.05,
}


@dataclass(frozen=True)
class DeviceClass:
    name: str
    kind: str  # Machine.AcceleratorKind
    patterns: tuple[str, ...]  # regexes on the claimed model; () for a kind's default
    ceiling_peak: dict[str, float]  # TFLOP/s (TOP/s for int8) per device
    floor_peak: dict[str, float] = field(default_factory=dict)  # defaults to ceiling_peak
    memory_bandwidth_gbps: int = 0
    source: str = ""

    def peak(self, precision: str, *, ceiling: bool) -> float | None:
        peaks = self.ceiling_peak if ceiling else (self.floor_peak or self.ceiling_peak)
        return peaks.get(_PEAK_KEY.get(precision, precision))

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(p for p in PRECISION_ORDER if self.peak(p, ceiling=True))


def _nv(fp32: float, tf32: float, bf16: float, int8: float) -> dict[str, float]:
    return {"fp32": fp32, "tf32": tf32, "bf16": bf16, "int8": int8}


# Dense per-device peaks from the vendors' data sheets (SXM/OAM parts where there are two).
DEVICE_CLASSES: tuple[DeviceClass, ...] = (
    # NVIDIA datacenter
    DeviceClass(
        "nvidia-h100",
        "gpu",
        (r"\bH100\b",),
        _nv(67, 494, 989, 1979),
        {},
        3350,
        "NVIDIA H100 SXM5 data sheet",
    ),
    DeviceClass(
        "nvidia-h200",
        "gpu",
        (r"\bH200\b", r"\bGH200\b"),
        _nv(67, 494, 989, 1979),
        {},
        4800,
        "NVIDIA H200 SXM data sheet",
    ),
    DeviceClass(
        "nvidia-b200",
        "gpu",
        (r"\bB200\b", r"\bGB200\b"),
        _nv(80, 1100, 2250, 4500),
        {},
        8000,
        "NVIDIA B200 (HGX) data sheet",
    ),
    DeviceClass(
        "nvidia-a100",
        "gpu",
        (r"\bA100\b",),
        _nv(19.5, 156, 312, 624),
        {},
        2039,
        "NVIDIA A100 80GB SXM data sheet",
    ),
    DeviceClass(
        "nvidia-l40s",
        "gpu",
        (r"\bL40S\b",),
        _nv(91.6, 183, 362, 733),
        {},
        864,
        "NVIDIA L40S data sheet",
    ),
    DeviceClass(
        "nvidia-l4", "gpu", (r"\bL4\b",), _nv(30.3, 60, 121, 242), {}, 300, "NVIDIA L4 data sheet"
    ),
    DeviceClass(
        "nvidia-t4",
        "gpu",
        (r"\bT4\b",),
        {"fp32": 8.1, "bf16": 65, "int8": 130},
        {},
        320,
        "NVIDIA T4 data sheet (fp16 tensor cores; no bf16/tf32 units)",
    ),
    # NVIDIA consumer
    DeviceClass(
        "nvidia-rtx-4090",
        "gpu",
        (r"\b4090\b",),
        _nv(82.6, 82.6, 165, 660),
        {},
        1008,
        "NVIDIA Ada whitepaper, RTX 4090 (fp16/bf16 with fp32 accumulate)",
    ),
    DeviceClass(
        "nvidia-rtx-3090",
        "gpu",
        (r"\b3090\b",),
        _nv(35.6, 35.6, 71, 284),
        {},
        936,
        "NVIDIA Ampere GA102 whitepaper, RTX 3090",
    ),
    # AMD
    DeviceClass(
        "amd-mi300x",
        "gpu",
        (r"\bMI300X?\b", r"\bMI325X\b"),
        {"fp32": 163.4, "bf16": 1307, "int8": 2615},
        {},
        5300,
        "AMD Instinct MI300X",
    ),
    DeviceClass(
        "amd-mi250x",
        "gpu",
        (r"\bMI250X?\b",),
        {"fp32": 95.7, "bf16": 383, "int8": 383},
        {},
        3200,
        "AMD Instinct MI250X",
    ),
    DeviceClass(
        "amd-rx-7900",
        "gpu",
        (r"\b7900\s*XTX?\b",),
        {"fp32": 61.4, "bf16": 123, "int8": 123},
        {},
        960,
        "AMD Radeon RX 7900 XTX",
    ),
    # Class defaults: the slowest plausible member for the floor, the fastest for the ceiling.
    DeviceClass(
        "gpu-default",
        "gpu",
        (),
        _nv(163.4, 1100, 2250, 4500),
        {"fp32": 4.0, "tf32": 4.0, "bf16": 8.0, "int8": 16.0},
        0,
        "floor: a 2016-era consumer card (GTX 1070 class); ceiling: B200 / MI300X",
    ),
    DeviceClass(
        "tpu-default",
        "tpu",
        (r"\bTPU\b",),
        {"fp32": 150, "bf16": 918, "int8": 1836},
        {"fp32": 15, "bf16": 123, "int8": 123},
        0,
        "Google Cloud TPU v2 (floor) to v6e (ceiling); fp32 is emulated, about 1/6 of bf16",
    ),
    DeviceClass(
        "neuron-default",
        "inference_asic",
        (r"Inferentia|Trainium|Neuron",),
        {"fp32": 181, "bf16": 667, "fp16": 667, "int8": 1300},
        {"fp32": 2.0, "bf16": 16, "int8": 32},
        0,
        "AWS Inferentia1 NeuronCore (floor) to Trainium2 chip (ceiling)",
    ),
    DeviceClass(
        "fpga-default",
        "fpga",
        (),
        {"fp32": 40, "bf16": 80, "int8": 150},
        {"fp32": 0.5, "bf16": 0.5, "int8": 5},
        0,
        "AMD Alveo U50 (floor) to Intel Agilex 7 M-series DSP peaks (ceiling)",
    ),
    DeviceClass(
        "ipu-default",
        "ipu",
        (r"\bIPU\b|GC200|Bow",),
        {"fp32": 87.5, "bf16": 350},
        {"fp32": 31, "bf16": 125},
        0,
        "Graphcore Colossus MK1 (floor) to Bow (ceiling)",
    ),
)

# CPUs are sized by their reported cores. Ceiling per core: 2 AVX-512 FMA units x 16 fp32 lanes
# x 2 FLOP x 4 GHz = 0.256 TFLOP/s; AMX tiles give about 4x that in bf16 and 8x in int8. Floor
# for the whole machine: one slow core without wide SIMD (0.5 GFLOP/s), whatever it reports,
# since the reported core count is the owner's word and the CPU also runs all the plumbing.
CPU_CORE_CEILING = {"fp32": 0.256, "bf16": 1.0, "fp16": 1.0, "int8": 2.0}
CPU_MACHINE_FLOOR = 0.0005
CPU_CORES_UNKNOWN = 256


def device_class_for(*, accelerator_kind: str, model: str) -> DeviceClass | None:
    """The class whose patterns match the claimed model, else the kind's default; None for CPU."""
    if accelerator_kind == "cpu":
        return None
    default = None
    for device_class in DEVICE_CLASSES:
        if device_class.kind != accelerator_kind:
            continue
        if any(re.search(p, model or "", re.IGNORECASE) for p in device_class.patterns):
            return device_class
        if device_class.name.endswith("-default"):
            default = device_class
    return default


def _overhead_seconds(spec: JobSpec) -> float:
    # What the protocol puts inside the span besides the kernel: the chain sends a sketch of at
    # most 175 KB; the Merkle job hashes every output cell as an 8-byte integer.
    megabytes = spec.transfer_bytes / 1e6
    base = (
        settings.BENCHMARK_CHAIN_FLOOR_BASE_SECONDS
        if spec.protocol == "chain-sketch"
        else settings.BENCHMARK_FLOOR_BASE_SECONDS
    )
    return base + megabytes * settings.BENCHMARK_FLOOR_SECONDS_PER_MB


def job_bounds(
    *, accelerator_kind: str, model: str, vcpu_count: int, spec: dict[str, Any] | JobSpec
) -> tuple[float, float]:
    """(floor, ceiling) in TFLOP/s for one job on one claimed device; every job has both."""
    parsed = spec if not isinstance(spec, dict) else job_spec_from_dict(spec)
    device_class = device_class_for(accelerator_kind=accelerator_kind, model=model)
    key = _PEAK_KEY.get(parsed.precision, parsed.precision)
    if device_class is None:
        cores = vcpu_count if vcpu_count > 0 else CPU_CORES_UNKNOWN
        ceiling_peak = CPU_CORE_CEILING.get(key, CPU_CORE_CEILING["fp32"]) * cores
        floor_peak = CPU_MACHINE_FLOOR
    else:
        # A precision the class has no figure for is held to its fp32 figures.
        ceiling_peak = device_class.peak(parsed.precision, ceiling=True) or device_class.peak(
            "fp32", ceiling=True
        )
        floor_peak = device_class.peak(parsed.precision, ceiling=False) or device_class.peak(
            "fp32", ceiling=False
        )
    flops = parsed.flops
    efficiency = FLOOR_EFFICIENCY[(parsed.family, parsed.protocol)]
    kernel_seconds = flops / (floor_peak * 1e12 * efficiency)
    floor = flops / (kernel_seconds + _overhead_seconds(parsed)) / 1e12
    return floor, ceiling_peak * settings.BENCHMARK_CEILING_FACTOR


def _cpu_precisions(backends: list[str], kind: str) -> set[str]:
    precisions = {"fp32"} | set(supported_precisions("numpy", kind))  # every agent has NumPy
    if set(backends or []) & {"torch", "torch-cuda"}:
        precisions.update({"bf16", "fp16"} | set(supported_precisions("torch-cpu", kind)))
    precisions.discard("tf32")  # on a CPU tf32 is fp32 under another name
    return precisions


def _kernel_precisions(kind: str) -> set[str]:
    """What a suite asks for this kernel: every floating-point chain precision, and int8 where
    an agent's backends have an int8 kernel (matmul; the int8 chain runs conv too, on any
    backend, but no suite asks for it yet)."""
    names = set(FLOAT_CHAIN_PRECISIONS)
    for backend in ("numpy", "torch-cpu", "torch-cuda", "cupy"):
        names.update(supported_precisions(backend, kind))
    return names


def suite_precisions(
    *, accelerator_kind: str, model: str, backends: list[str], kind: str
) -> set[str]:
    device_class = device_class_for(accelerator_kind=accelerator_kind, model=model)
    if device_class is None:
        return _cpu_precisions(backends, kind)
    return set(device_class.precisions) & _kernel_precisions(kind)


def _matmul_spec(precision: str, *, cpu: bool, small: bool) -> JobSpec:
    if precision not in CHAIN_PRECISIONS:  # no such precision today; kept for the Merkle kernels
        return MatmulSpec(precision=precision, **(CPU_MATMUL if cpu or small else GPU_MATMUL_INT8))
    if cpu:
        return MatmulChainSpec(
            precision=precision, layers=CPU_MATMUL_LAYERS[precision], **CPU_MATMUL_CHAIN
        )
    if small:
        return MatmulChainSpec(
            precision=precision, layers=PROBE_MATMUL_LAYERS[precision], **PROBE_MATMUL_CHAIN
        )
    return MatmulChainSpec(
        precision=precision, layers=GPU_MATMUL_LAYERS[precision], **GPU_MATMUL_CHAIN
    )


def _conv_spec(precision: str, *, cpu: bool, small: bool) -> JobSpec:
    if precision not in CHAIN_PRECISIONS:
        return Conv2dSpec(precision=precision, **(CPU_CONV if cpu or small else GPU_CONV_INT8))
    if cpu or small:
        return ConvChainSpec(
            precision=precision, channels=CPU_CONV_CHANNELS[precision], **CPU_CONV_CHAIN
        )
    return ConvChainSpec(precision=precision, layers=GPU_CONV_LAYERS, **GPU_CONV_CHAIN)


def suite_specs(
    *,
    accelerator_kind: str,
    backends: list[str],
    model: str = "",
    small: bool | None = None,
) -> list[dict[str, Any]]:
    """One device's onboarding suite: matmul and conv2d at every precision of the claim."""
    small = settings.BENCHMARK_SMALL_SUITES if small is None else small
    cpu = accelerator_kind == "cpu"
    specs: list[JobSpec] = []
    for kind, make in (("matmul", _matmul_spec), ("conv2d", _conv_spec)):
        precisions = suite_precisions(
            accelerator_kind=accelerator_kind, model=model, backends=backends, kind=kind
        )
        specs += [make(p, cpu=cpu, small=small) for p in PRECISION_ORDER if p in precisions]
    return [spec.to_dict() for spec in specs]


# --- sizing a CPU job for the machine ----------------------------------------------------------


def _cpu_base_specs() -> dict[tuple, dict[str, Any]]:
    """Every CPU suite job (each precision a CPU can be asked for), keyed by its spec without
    `layers`, as the suite creates it."""
    specs = [_matmul_spec(p, cpu=True, small=False) for p in CHAIN_PRECISIONS]
    specs += [_conv_spec(p, cpu=True, small=False) for p in CHAIN_PRECISIONS]
    return {_shape_key(spec.to_dict()): spec.to_dict() for spec in specs}


def _shape_key(spec: dict[str, Any]) -> tuple:
    return tuple(sorted((k, v) for k, v in spec.items() if k != "layers"))


def cpu_rate_estimate(
    family: str, precision: str, rates: dict[tuple[str, str], float]
) -> float | None:
    """FLOP/s to expect from the machine on (family, precision), from `rates`, its verified
    figures (FLOP/s) by (family, precision); None when it has none that says anything."""
    other = "conv2d" if family == "matmul" else "matmul"
    if rates.get((family, precision)):
        return rates[(family, precision)]
    if rates.get((other, precision)) and rates.get((other, "fp32")) and rates.get((family, "fp32")):
        # The precision's speed-up as measured on the other kernel.
        return rates[(family, "fp32")] * rates[(other, precision)] / rates[(other, "fp32")]
    guess = CPU_RATE_GUESS.get(precision, 1.0)
    if rates.get((family, "fp32")):
        return rates[(family, "fp32")] * guess
    if rates.get((other, precision)):
        factor = CPU_CONV_RATE_GUESS if family == "conv2d" else 1 / CPU_CONV_RATE_GUESS
        return rates[(other, precision)] * factor
    if rates.get((other, "fp32")):
        factor = CPU_CONV_RATE_GUESS if family == "conv2d" else 1 / CPU_CONV_RATE_GUESS
        return rates[(other, "fp32")] * guess * factor
    return None


def cpu_job_sized(spec: dict[str, Any], rates: dict[tuple[str, str], float]) -> dict[str, Any]:
    """The CPU suite job `spec` sized so that its kernel runs about BENCHMARK_CPU_JOB_SECONDS
    at the rate the machine's verified figures predict: more layers for matmul; a larger batch,
    then more channels (multiples of 64), then more layers for conv (see CPU_MAX_CONV_LAYERS). Never
    below the suite's own size, never above the caps. Any other spec (a GPU suite's, one a
    test made up) is returned unchanged."""
    seconds = settings.BENCHMARK_CPU_JOB_SECONDS
    base = _cpu_base_specs().get(_shape_key(spec))
    if base is None or spec.get("layers") != base["layers"]:
        return spec
    parsed = job_spec_from_dict(spec)
    rate = cpu_rate_estimate(parsed.family, parsed.precision, rates)
    if rate is None:
        return spec
    wanted = seconds * rate
    if isinstance(parsed, MatmulChainSpec):
        per_layer = parsed.flops / parsed.layers
        cap = CPU_MAX_MATMUL_LAYERS[parsed.precision]
        layers = min(cap, max(parsed.layers, math.ceil(wanted / per_layer)))
        return {**spec, "layers": layers}
    per_image_layer = parsed.flops / (parsed.layers * parsed.batch)
    max_batch = CPU_MAX_CONV_BATCH[parsed.precision]
    batch = min(max_batch, max(parsed.batch, math.ceil(wanted / (per_image_layer * parsed.layers))))
    channels, layers = parsed.channels, parsed.layers
    if batch == max_batch:
        # A layer's FLOPs grow as channels^2.
        widen = math.sqrt(wanted / (per_image_layer * batch * layers))
        channels = min(CPU_MAX_CONV_CHANNELS, max(channels, 64 * math.ceil(channels * widen / 64)))
        per_image_layer *= (channels / parsed.channels) ** 2
        if channels == CPU_MAX_CONV_CHANNELS:
            layers = min(
                CPU_MAX_CONV_LAYERS, max(layers, math.ceil(wanted / (per_image_layer * batch)))
            )
    return {**spec, "batch": batch, "channels": channels, "layers": layers}
