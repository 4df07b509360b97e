"""Benchmark job specifications.

A spec arrives from the server (on the agent) or from the database (on the server), so every
field is validated as if it were hostile: the bounds below keep allocations and integer ranges
small enough that generation, compute and the exact int64 verification can never blow up.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "int8")

# Inputs are integers in -VALUE_BOUND..VALUE_BOUND, so one product is at most VALUE_BOUND**2.
VALUE_BOUND = 2
PRODUCT_BOUND = VALUE_BOUND * VALUE_BOUND

# The largest integer each accumulator/output format represents exactly: 2**(mantissa bits + 1).
# fp32/tf32 accumulate in fp32; int8 accumulates in int32.
EXACT_LIMIT = {
    "fp32": 2**24,
    "tf32": 2**24,
    "fp16": 2**11,
    "bf16": 2**8,
    "int8": 2**31 - 1,
}

MAX_N = 16384
# Per-tensor element cap. At 2**28 the int64 result is 2 GiB; n = 16384 is exactly this cap.
# 32768 would need an 8 GiB int64 output and 8 GiB of Merkle hashing on the agent, which the
# protocol gains nothing from.
MAX_TENSOR_ELEMENTS = 2**28

MAX_BATCH = 256
MAX_CHANNELS = 4096
MAX_SPATIAL = 1024
MAX_KERNEL = 11
MAX_STRIDE = 8
# One conv leaf (an output plane) travels in the challenge answer; keep it at most 256x256.
MAX_PLANE_ELEMENTS = 65536


class SpecError(ValueError):
    """A job spec (or seed) that must not be run."""


def _int_field(name: str, value: Any, lo: int, hi: int) -> int:
    # bool is an int subclass; True as a matrix size is always a caller bug or an attack.
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{name} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise SpecError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def _precision_field(value: Any) -> str:
    if not isinstance(value, str) or value not in PRECISIONS:
        raise SpecError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


def exact_chunk(precision: str, terms_per_output: int) -> int:
    """How many products may be summed in one reduction whose *output* is in `precision`.

    fp16/bf16 kernels write half-precision outputs, which hold integers exactly only up to
    2048 / 256. Splitting the reduction into chunks of this many terms keeps every chunk's
    output exact; the chunks are then summed in fp32 (exact below 2**24). For fp32, tf32 and
    int8 the whole reduction fits, so this returns `terms_per_output`.
    """
    limit = EXACT_LIMIT[precision] // PRODUCT_BOUND
    return max(0, min(terms_per_output, limit))


def _check_accumulator(precision: str, terms: int, what: str) -> None:
    # Any summation order is exact when every partial sum is an integer below the format's
    # exact limit; the worst partial sum is terms * PRODUCT_BOUND, reached by no order worse.
    if terms * PRODUCT_BOUND >= EXACT_LIMIT["fp32"]:
        raise SpecError(f"{what}: {terms} terms per output overflow an exact fp32 accumulator")
    if exact_chunk(precision, terms) < 1:
        raise SpecError(f"{what}: {precision} cannot hold even one product chunk exactly")


@dataclasses.dataclass(frozen=True)
class MatmulSpec:
    """C = A @ B with A, B of shape (n, n)."""

    n: int
    precision: str = "fp32"

    kind: ClassVar[str] = "matmul"
    family: ClassVar[str] = "matmul"  # the kernel, whatever the protocol around it
    protocol: ClassVar[str] = "merkle"

    def __post_init__(self) -> None:
        _int_field("n", self.n, 1, MAX_N)
        _precision_field(self.precision)
        if self.n * self.n > MAX_TENSOR_ELEMENTS:
            raise SpecError(f"n={self.n} exceeds the element cap {MAX_TENSOR_ELEMENTS}")
        _check_accumulator(self.precision, self.n, "matmul")

    @property
    def reduction_chunk(self) -> int:
        """Columns of A (rows of B) per exactly-representable partial product."""
        return exact_chunk(self.precision, self.n)

    @property
    def flops(self) -> int:
        return 2 * self.n**3

    @property
    def output_shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def transfer_bytes(self) -> int:
        """What the agent hashes inside the timed span: every output cell as 8 bytes."""
        return 8 * self.n * self.n

    # The Merkle protocol's sizes (workers/verification/protocol.py): leaves are C's rows, the
    # challenge vector r has one entry per column, y = C.r one per row.
    leaf_key: ClassVar[str] = "rows"

    @property
    def leaf_count(self) -> int:
        return self.n

    @property
    def leaf_length(self) -> int:
        return self.n

    @property
    def r_length(self) -> int:
        return self.n

    @property
    def y_length(self) -> int:
        return self.n

    @property
    def terms_per_output(self) -> int:
        return self.n

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "precision": self.precision}


@dataclasses.dataclass(frozen=True)
class Conv2dSpec:
    """Y = conv2d(X, W), NCHW, cross-correlation as in torch.nn.functional.conv2d."""

    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    precision: str = "fp32"

    kind: ClassVar[str] = "conv2d"
    family: ClassVar[str] = "conv2d"
    protocol: ClassVar[str] = "merkle"

    def __post_init__(self) -> None:
        _int_field("batch", self.batch, 1, MAX_BATCH)
        _int_field("in_channels", self.in_channels, 1, MAX_CHANNELS)
        _int_field("out_channels", self.out_channels, 1, MAX_CHANNELS)
        _int_field("height", self.height, 1, MAX_SPATIAL)
        _int_field("width", self.width, 1, MAX_SPATIAL)
        _int_field("kernel_size", self.kernel_size, 1, MAX_KERNEL)
        _int_field("stride", self.stride, 1, MAX_STRIDE)
        # Padding of kernel_size or more only adds outputs that see nothing but zeros.
        _int_field("padding", self.padding, 0, self.kernel_size - 1)
        _precision_field(self.precision)
        if self.kernel_size > self.height + 2 * self.padding:
            raise SpecError("kernel_size exceeds the padded height")
        if self.kernel_size > self.width + 2 * self.padding:
            raise SpecError("kernel_size exceeds the padded width")
        out_h, out_w = self.out_height, self.out_width
        if out_h * out_w > MAX_PLANE_ELEMENTS:
            raise SpecError(f"output plane {out_h}x{out_w} exceeds {MAX_PLANE_ELEMENTS} elements")
        sizes = {
            "input": self.batch * self.in_channels * self.height * self.width,
            "weight": self.out_channels * self.in_channels * self.kernel_size**2,
            "output": self.batch * self.out_channels * out_h * out_w,
        }
        for name, size in sizes.items():
            if size > MAX_TENSOR_ELEMENTS:
                raise SpecError(f"{name} tensor has {size} elements, cap {MAX_TENSOR_ELEMENTS}")
        _check_accumulator(self.precision, self.terms_per_output, "conv2d")
        if self.reduction_chunk < 1:
            raise SpecError(
                f"conv2d: a {self.kernel_size}x{self.kernel_size} kernel of one channel already "
                f"exceeds what {self.precision} holds exactly; use a smaller kernel"
            )

    @property
    def reduction_chunk(self) -> int:
        """Input channels per exactly-representable partial convolution."""
        return exact_chunk(self.precision, self.terms_per_output) // self.kernel_size**2

    @property
    def out_height(self) -> int:
        return (self.height + 2 * self.padding - self.kernel_size) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width + 2 * self.padding - self.kernel_size) // self.stride + 1

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, self.out_height, self.out_width)

    @property
    def transfer_bytes(self) -> int:
        return 8 * self.batch * self.out_channels * self.out_height * self.out_width

    # The Merkle protocol's sizes: leaves are output planes (image, channel), r has one entry
    # per output channel, y = sum_o r_o Y[:, o] one per output pixel.
    leaf_key: ClassVar[str] = "planes"

    @property
    def leaf_count(self) -> int:
        return self.batch * self.out_channels

    @property
    def leaf_length(self) -> int:
        return self.out_height * self.out_width

    @property
    def r_length(self) -> int:
        return self.out_channels

    @property
    def y_length(self) -> int:
        return self.batch * self.out_height * self.out_width

    @property
    def terms_per_output(self) -> int:
        return self.in_channels * self.kernel_size**2

    @property
    def flops(self) -> int:
        return (
            2
            * self.batch
            * self.out_channels
            * self.out_height
            * self.out_width
            * self.in_channels
            * self.kernel_size**2
        )

    def to_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"kind": self.kind, **fields}


Spec = MatmulSpec | Conv2dSpec
_SPEC_TYPES: dict[str, type[MatmulSpec] | type[Conv2dSpec]] = {
    "matmul": MatmulSpec,
    "conv2d": Conv2dSpec,
}


def spec_from_dict(data: Any) -> Spec:
    """Build and validate a spec from its `to_dict()` form; unknown or missing keys are errors."""
    if not isinstance(data, dict):
        raise SpecError(f"spec must be a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    spec_type = _SPEC_TYPES.get(kind) if isinstance(kind, str) else None
    if spec_type is None:
        raise SpecError(f"unknown kernel kind {kind!r}; expected one of {sorted(_SPEC_TYPES)}")
    expected = {f.name for f in dataclasses.fields(spec_type)}
    given = set(data) - {"kind"}
    if given - expected:
        raise SpecError(f"unknown spec fields: {sorted(given - expected)}")
    # Defaults exist for Python callers; a spec that crossed the wire must be complete so both
    # sides cannot silently disagree on a default.
    if expected - given:
        raise SpecError(f"missing spec fields: {sorted(expected - given)}")
    return spec_type(**{name: data[name] for name in expected})
