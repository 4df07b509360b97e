"""Chain jobs: L layers of a GEMM (or a convolution) with an elementwise non-linearity between
them, answered by an O(units) sketch. The verification protocol is workers/verification/sketch.py.

matmul:  X_0 = A (rows x n),  X_{i+1} = f_i(X_i . B),  B n x n,  i < L
conv2d:  X_0 = X (batch, C, H, W),  X_{i+1} = f_i(conv2d(X_i, W, padding=k//2)),  W (C, C, k, k)
f_i(z) = s_i * |z| elementwise, s_i[j] = d_i[j] * 2**-t_i: a seeded sign per column (matmul) or
channel (conv2d), and a power of two that keeps each layer's output at the input's scale.
sketch:  Y = X_L . V per unit (a row of X_L, or an output pixel's C channels), V features x m.

Why this shape. Each unit (row / output pixel) is computed independently of the others, so the
server can recompute a few from the seed; |.| makes the chain non-linear, so no unit's sketch can
be had without all L products for it (for a linear chain, X_L . V = A . (B^L . V) costs O(n^2));
the seeded signs stop a fixed B from acting as a power iteration (a growing direction), and the
power-of-two scale is exact in every format, so the only rounding per layer is P's own.

Every size the protocol and the backends need (units, reduction length, sketch width, payload
bytes, scales) is a property of the spec: no code outside branches on the kind.

int8 (the exact integer chain). Inputs are int8 in [-127, 127], each layer's product is
accumulated exactly (int32), and the map back to int8 is

    f_i(z) = d_i * min(127, (|z| + 2**(t - 1)) >> t),  t = max(0, bit_length(max_unit |z|) - 7)

(|z| rounded to a multiple of 2**t, halves up; t per unit, from the largest |z| of that unit's
row or pixel, so that unit's largest value lands in 64..127): deterministic integer arithmetic,
so the agent's answer must equal the server's bit for bit and Y = X_L . V (V int8) is compared
exactly (computed in int64; it fits int32 on the wire). The shift is per unit (block floating
point), not a schedule fixed in advance: a fixed schedule lets the activations' scale wander as
a random walk in log space (measured: rms 1.4 with 28% zeros after 128 layers at n = 64), and a
unit that rounds to zero is a guessable answer; per unit, a unit's largest value is always
64..127. It reads only the unit's own values, so units stay independent.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from .floatgen import (
    MANTISSA_BITS,
    generate_floats,
    generate_floats_at,
    generate_floats_torch,
    generate_ints,
    generate_ints_at,
)
from .specs import MAX_BATCH, MAX_CHANNELS, MAX_SPATIAL, SpecError, _int_field

FLOAT_CHAIN_PRECISIONS = tuple(MANTISSA_BITS)
EXACT_CHAIN_PRECISIONS = ("int8",)
CHAIN_PRECISIONS = FLOAT_CHAIN_PRECISIONS + EXACT_CHAIN_PRECISIONS
INT8_MAX = 127
# The int8 chain accumulates in int32: a reduction of r products is at most r * 127**2.
MAX_INT8_REDUCTION = (2**31 - 1) // INT8_MAX**2
# An fp32 sum of at most this many int8 products is exact in any order (every partial sum is an
# integer below 2**24, with room for the rounding offset): BLAS sgemm computes such a product
# exactly, and longer reductions are cut into chunks of this length.
FP32_EXACT_TERMS = 1024
MAX_LAYERS = 1024
# The tolerance model (verification/precision.py) treats each layer's rounding errors as many
# small independent terms and a random error vector as keeping its norm through a layer; both
# need a real reduction. Below these sizes an honest half-precision job can fail.
MIN_REDUCTION = 64
MIN_FEATURES = 8
# The server recomputes a sampled pixel's cone of radius layers * (kernel_size // 2).
MAX_CONE_RADIUS = 32
_IM2COL_ELEMENTS = 1 << 24
MAX_WIDTH = 16384
MAX_ROWS = 65536
MAX_CHAIN_ELEMENTS = 2**29  # one activation tensor: 2 GiB in fp32
# The sketch travels as float32: at most this many bytes of values (base64 adds a third). The
# width m (values per unit) is the largest of 1..MAX_SKETCH_WIDTH that fits; more values per
# unit make a guessed unit less likely to pass (guess_probability ** m).
SKETCH_BUDGET_BYTES = 160 * 1024
MAX_SKETCH_WIDTH = 4
MAX_UNITS = SKETCH_BUDGET_BYTES // 4


def _second_moment(precision: str) -> Fraction:
    """E[value^2] of floatgen's distribution in `precision`, exactly (discrete mantissa)."""
    q = 2 ** MANTISSA_BITS[precision]
    mean_m = Fraction(q - 1, 2 * q)
    mean_m2 = Fraction((q - 1) * (2 * q - 1), 6 * q * q)
    significand = 1 + 2 * mean_m + mean_m2
    exponent = sum(Fraction(1, 4**e) for e in range(8)) / 8
    return significand * exponent


def _floor_log2(numerator: int, denominator: int) -> int:
    """floor(log2(numerator / denominator)) for positive integers, exactly."""
    e = numerator.bit_length() - denominator.bit_length()
    if (numerator << max(0, -e)) < (denominator << max(0, e)):
        e -= 1
    return e


@functools.cache
def layer_shifts(precision: str, gain_terms: Fraction, layers: int) -> tuple[int, ...]:
    """t_0..t_{L-1}: powers of two such that prod_i sqrt(G) 2**-t_i, G = terms * E[b^2] the
    expected energy gain of a layer, stays within a factor sqrt(2) of 1: sum_{j<=i} t_j is
    round(i * log2(G) / 2), the integer T with 2**(2T-1) <= G**i < 2**(2T+1).

    Exact rational arithmetic (no float log2, whose last bit depends on the C library): the
    agent and the server must agree on every shift, or every later value is off by 2x."""
    gain = Fraction(gain_terms) * _second_moment(precision)
    shifts, total = [], 0
    numerator, denominator = 1, 1
    for _ in range(layers):
        numerator *= gain.numerator
        denominator *= gain.denominator
        target = (_floor_log2(numerator, denominator) + 1) // 2
        shifts.append(target - total)
        total = target
    return tuple(shifts)


def _mean_taps(size: int, radius: int) -> Fraction:
    """Average over positions of the kernel taps along one axis that fall inside the image."""
    inside = sum(min(i, radius) + min(size - 1 - i, radius) + 1 for i in range(size))
    return Fraction(inside, size)


def _sketch_width(units: int, value_bytes: int = 4) -> int:
    return max(1, min(MAX_SKETCH_WIDTH, SKETCH_BUDGET_BYTES // (value_bytes * units)))


def _chain_precision(value: Any) -> str:
    if not isinstance(value, str) or value not in CHAIN_PRECISIONS:
        raise SpecError(f"precision must be one of {', '.join(CHAIN_PRECISIONS)}, got {value!r}")
    return value


class _ChainSizes:
    """Sizes shared by both kinds, from the per-kind `units`, `features`, `reduction_length` and
    `gain_terms`."""

    units: int
    features: int
    layers: int
    precision: str
    reduction_length: int
    gain_terms: Fraction

    @property
    def exact(self) -> bool:
        """An integer chain: exact arithmetic, compared for equality."""
        return self.precision in EXACT_CHAIN_PRECISIONS

    @property
    def value_bytes(self) -> int:
        """Bytes of one sketch value on the wire: float32, or int32 for the exact chain (a
        value is computed in int64, and |y| <= features * 127**2 < 2**31 because features is
        at most the reduction length, which MAX_INT8_REDUCTION bounds)."""
        return 4

    @property
    def sketch_dtype(self) -> str:
        return "<i4" if self.exact else "<f4"

    @property
    def sketch_width(self) -> int:
        return _sketch_width(self.units, self.value_bytes)

    @property
    def sketch_values(self) -> int:
        return self.units * self.sketch_width

    @property
    def sketch_bytes(self) -> int:
        return self.value_bytes * self.sketch_values

    @property
    def transfer_bytes(self) -> int:
        """What the agent sends back inside the timed span: the sketch, whatever n or L."""
        return self.sketch_bytes

    @property
    def shifts(self) -> tuple[int, ...]:
        """The float chain's t_i (the int8 chain's shift is per unit, see int8_map_np)."""
        return layer_shifts(self.precision, self.gain_terms, self.layers)

    def signs(self, seed: str) -> np.ndarray:
        """d_i as an (L, features) float32 array of +-1, seeded."""
        signs = np.sign(generate_floats(seed, "D", self.layers * self.features, "fp32"))
        return signs.reshape(self.layers, self.features)

    def scales(self, seed: str) -> np.ndarray:
        """s_i as an (L, features) float32 array: seeded sign times 2**-t_i (exact in every
        format)."""
        powers = np.ldexp(np.float32(1), -np.array(self.shifts, dtype=np.int32))
        return (self.signs(seed) * powers[:, None]).astype(np.float32)

    def sketch_matrix(self, seed: str) -> np.ndarray:
        """V (features x m): float32, or int8 for the exact chain."""
        count = self.features * self.sketch_width
        if self.exact:
            values = generate_ints(seed, "V", count)
        else:
            values = generate_floats(seed, "V", count, "fp32")
        return values.reshape(self.features, self.sketch_width)

    def _check_exact(self) -> None:
        if not self.exact:
            return
        if self.reduction_length > MAX_INT8_REDUCTION:
            raise SpecError(
                f"an int8 chain's reduction must be at most {MAX_INT8_REDUCTION} (int32 "
                "accumulation)"
            )

    def to_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {"kind": self.kind, **fields}  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class MatmulChainSpec(_ChainSizes):
    """X_0 (rows x n), L layers of X . B with B n x n; units are rows."""

    n: int
    layers: int
    rows: int = 0  # 0: square, rows = n
    precision: str = "fp32"

    kind: ClassVar[str] = "matmul_chain"
    family: ClassVar[str] = "matmul"
    protocol: ClassVar[str] = "chain-sketch"

    def __post_init__(self) -> None:
        _int_field("n", self.n, MIN_REDUCTION, MAX_WIDTH)
        _int_field("layers", self.layers, 1, MAX_LAYERS)
        _int_field("rows", self.rows, 0, MAX_ROWS)
        if self.rows == 0:
            object.__setattr__(self, "rows", self.n)
        _chain_precision(self.precision)
        if self.rows * self.n > MAX_CHAIN_ELEMENTS or self.n * self.n > MAX_CHAIN_ELEMENTS:
            raise SpecError(f"{self.rows} x {self.n} exceeds {MAX_CHAIN_ELEMENTS} elements")
        if self.rows > MAX_UNITS:
            raise SpecError(f"{self.rows} rows exceed the sketch's {MAX_UNITS} units")
        self._check_exact()

    @property
    def units(self) -> int:
        return self.rows

    @property
    def features(self) -> int:
        return self.n

    @property
    def reduction_length(self) -> int:
        return self.n

    @property
    def gain_terms(self) -> Fraction:
        return Fraction(self.n)

    @property
    def flops(self) -> int:
        return 2 * self.rows * self.n * self.n * self.layers

    @property
    def unit_flops(self) -> int:
        """What the server spends to recompute one unit."""
        return 2 * self.n * self.n * self.layers

    def input_shapes(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return ("A", (self.rows, self.n)), ("B", (self.n, self.n))

    def broadcast_scale(self, scale: np.ndarray) -> np.ndarray:
        return scale  # one per column of (rows, n)

    def layer_numpy(self, x: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.matmul(x, b)

    def layer_torch(self, torch: Any, x: Any, b: Any) -> Any:
        return torch.mm(x, b)

    def unit_vectors(self, x: Any) -> Any:
        return x

    def reference_units(self, seed: str, units: np.ndarray) -> np.ndarray:
        """X_L at the sampled rows, fp32: k rows of A, all of B, L (k x n) . (n x n) GEMMs.
        For the exact chain, the integers (held exactly in float32)."""
        n = self.n
        if self.exact:
            x = np.stack([generate_ints(seed, "A", n, start=int(r) * n) for r in units])
            b = generate_ints(seed, "B", n * n).reshape(n, n).astype(np.float32)
            x = x.astype(np.float32)
            for sign in self.signs(seed):
                x = int8_map_np(exact_matmul_np(x, b), sign, axis=-1)
            return x
        rows = [generate_floats(seed, "A", n, self.precision, start=int(r) * n) for r in units]
        x = np.stack(rows)
        b = generate_floats(seed, "B", n * n, self.precision).reshape(n, n)
        for scale in self.scales(seed):
            x = _abs_scale_np(x @ b, scale)
        return x


@dataclasses.dataclass(frozen=True)
class ConvChainSpec(_ChainSizes):
    """X_0 (batch, C, H, W), L layers of a 'same' k x k convolution C -> C; units are output
    pixels (b, h, w), each sketched over its C channels."""

    batch: int
    channels: int
    height: int
    width: int
    kernel_size: int
    layers: int
    precision: str = "fp32"

    kind: ClassVar[str] = "conv2d_chain"
    family: ClassVar[str] = "conv2d"
    protocol: ClassVar[str] = "chain-sketch"

    def __post_init__(self) -> None:
        _int_field("batch", self.batch, 1, MAX_BATCH)
        _int_field("channels", self.channels, MIN_FEATURES, MAX_CHANNELS)
        _int_field("height", self.height, 1, MAX_SPATIAL)
        _int_field("width", self.width, 1, MAX_SPATIAL)
        _int_field("kernel_size", self.kernel_size, 1, 11)
        _int_field("layers", self.layers, 1, 64)
        _chain_precision(self.precision)
        if self.kernel_size % 2 == 0:
            raise SpecError("kernel_size must be odd ('same' padding keeps the shape per layer)")
        if self.reduction_length < MIN_REDUCTION:
            raise SpecError(f"channels * kernel_size^2 must be at least {MIN_REDUCTION}")
        if self.layers * self.radius > MAX_CONE_RADIUS:
            raise SpecError(f"layers * (kernel_size // 2) must be at most {MAX_CONE_RADIUS}")
        if self.batch * self.channels * self.height * self.width > MAX_CHAIN_ELEMENTS:
            raise SpecError(f"activations exceed {MAX_CHAIN_ELEMENTS} elements")
        if self.units > MAX_UNITS:
            raise SpecError(f"{self.units} output pixels exceed the sketch's {MAX_UNITS} units")
        self._check_exact()

    @property
    def units(self) -> int:
        return self.batch * self.height * self.width

    @property
    def features(self) -> int:
        return self.channels

    @property
    def radius(self) -> int:
        return self.kernel_size // 2

    @property
    def reduction_length(self) -> int:
        return self.channels * self.kernel_size**2

    @property
    def gain_terms(self) -> Fraction:
        """Channels times the average number of taps inside the image ('same' padding drops
        the rest), so that the scale schedule keeps small images from decaying."""
        return (
            self.channels
            * _mean_taps(self.height, self.radius)
            * _mean_taps(self.width, self.radius)
        )

    @property
    def flops(self) -> int:
        return 2 * self.units * self.channels * self.reduction_length * self.layers

    @property
    def unit_flops(self) -> int:
        """The cone of one output pixel: layer L - j needs (2 j r + 1)^2 pixels (interior)."""
        pixels = sum((2 * j * self.radius + 1) ** 2 for j in range(self.layers))
        return 2 * pixels * self.channels * self.reduction_length

    def input_shapes(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        k = self.kernel_size
        return (
            ("X", (self.batch, self.channels, self.height, self.width)),
            ("W", (self.channels, self.channels, k, k)),
        )

    def broadcast_scale(self, scale: np.ndarray) -> np.ndarray:
        return scale[:, None, None]  # one per channel of (batch, C, H, W)

    def layer_numpy(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        r = self.radius
        return _conv_valid_np(np.pad(x, ((0, 0), (0, 0), (r, r), (r, r))) if r else x, w)

    def layer_torch(self, torch: Any, x: Any, w: Any) -> Any:
        return torch.nn.functional.conv2d(x, w, padding=self.radius)

    def unit_vectors(self, x: Any) -> Any:
        """(batch, C, H, W) -> (batch * H * W, C): unit u = (b * H + h) * W + w."""
        if isinstance(x, np.ndarray):
            return x.transpose(0, 2, 3, 1).reshape(-1, self.channels)
        return x.permute(0, 2, 3, 1).reshape(-1, self.channels)

    def reference_units(self, seed: str, units: np.ndarray) -> np.ndarray:
        """X_L at the sampled pixels: each pixel's cone, layer by layer, zeroed outside the
        image after every layer (the 'same' padding applies at every layer)."""
        shape = (self.batch, self.height, self.width)
        pixels = np.stack(np.unravel_index(np.asarray(units), shape), axis=1)
        x = _cone_inputs(self, seed, pixels)
        k = self.kernel_size
        count = self.channels * self.reduction_length
        if self.exact:
            w = generate_ints(seed, "W", count).astype(np.float32).reshape(self.channels, -1, k, k)
            for layer, sign in enumerate(self.signs(seed), start=1):
                x = int8_map_np(exact_conv_valid_np(x, w), sign[:, None, None], axis=1)
                x *= _inside(self, pixels, (self.layers - layer) * self.radius)[:, None]
            return x.reshape(len(pixels), self.channels)
        w = generate_floats(seed, "W", count, self.precision)
        w = w.reshape(self.channels, self.channels, k, k)
        for layer, scale in enumerate(self.scales(seed), start=1):
            x = _abs_scale_np(_conv_valid_np(x, w), scale[:, None, None])
            x *= _inside(self, pixels, (self.layers - layer) * self.radius)[:, None]
        return x.reshape(len(pixels), self.channels)


ChainSpec = MatmulChainSpec | ConvChainSpec
_CHAIN_TYPES: dict[str, type[MatmulChainSpec] | type[ConvChainSpec]] = {
    "matmul_chain": MatmulChainSpec,
    "conv2d_chain": ConvChainSpec,
}


def chain_spec_from_dict(data: Any) -> ChainSpec:
    """Build and validate a chain spec from its `to_dict()` form; every field must be present."""
    if not isinstance(data, dict):
        raise SpecError(f"spec must be a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    spec_type = _CHAIN_TYPES.get(kind) if isinstance(kind, str) else None
    if spec_type is None:
        raise SpecError(f"unknown chain kind {kind!r}; expected one of {sorted(_CHAIN_TYPES)}")
    expected = {f.name for f in dataclasses.fields(spec_type)}
    given = set(data) - {"kind"}
    if given != expected:
        raise SpecError(f"spec fields must be exactly {sorted(expected)}")
    return spec_type(**{name: data[name] for name in expected})


# --- inputs and helpers -------------------------------------------------------------------------


def inputs_numpy(spec: ChainSpec, seed: str) -> tuple[np.ndarray, np.ndarray]:
    """The two generated tensors (X_0 and the layer weights) as float32 NumPy arrays (the
    exact chain's integers are exact in float32)."""
    if spec.exact:
        first, second = (
            generate_ints(seed, name, math.prod(shape)).astype(np.float32).reshape(shape)
            for name, shape in spec.input_shapes()
        )
        return first, second
    first, second = (
        generate_floats(seed, name, math.prod(shape), spec.precision).reshape(shape)
        for name, shape in spec.input_shapes()
    )
    return first, second


def inputs_int8(spec: ChainSpec, seed: str) -> tuple[np.ndarray, np.ndarray]:
    """The exact chain's two tensors as int8 NumPy arrays."""
    first, second = (
        generate_ints(seed, name, math.prod(shape)).reshape(shape)
        for name, shape in spec.input_shapes()
    )
    return first, second


def inputs_torch(spec: ChainSpec, seed: str, *, device: Any, dtype: Any) -> tuple[Any, Any]:
    """The same tensors on `device` in `dtype` (exact: the values are P's)."""
    import torch

    tensors = []
    for name, shape in spec.input_shapes():
        count = math.prod(shape)
        if torch.device(device).type == "cpu":
            # NumPy's uint64 arithmetic is far faster than torch's int64 emulation on a CPU.
            # It writes into torch's own (64-byte aligned) buffer: a GEMM on NumPy's 16-byte
            # aligned memory measured 1.7x slower.
            flat = torch.empty(count, dtype=torch.float32)
            generate_floats(seed, name, count, spec.precision, out=flat.numpy())
            flat = flat.to(dtype)
        else:
            flat = generate_floats_torch(
                seed, name, count, spec.precision, device=device, dtype=dtype
            )
        tensors.append(flat.reshape(shape).contiguous())
    return tensors[0], tensors[1]


def int8_map_np(z: np.ndarray, sign: np.ndarray, *, axis: int) -> np.ndarray:
    """f(z) = sign * min(127, (|z| + 2**(t-1)) >> t), t = max(0, bit_length(m) - 7), m the
    largest |z| of each unit (along `axis`, the features), on exact integers held in a float
    array (float32 or float64): frexp gives the bit length of an integer exactly, and adding an
    integer below 2**24 (2**53), scaling by a power of two and flooring are exact, so this is
    the integer map. Returns float32."""
    np.abs(z, out=z)
    _, bits = np.frexp(z.max(axis=axis, keepdims=True))
    shift = np.maximum(bits - 7, 0)
    z += np.where(shift > 0, np.ldexp(0.5, shift), 0).astype(z.dtype)
    z *= np.ldexp(1.0, -shift).astype(z.dtype)
    np.floor(z, out=z)
    np.minimum(z, INT8_MAX, out=z)
    z *= sign
    return z.astype(np.float32, copy=False)


def exact_matmul_np(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x . b for integer-valued float32 arrays, exactly: one sgemm when the reduction is at
    most FP32_EXACT_TERMS, else chunks of that length summed in float64."""
    terms = x.shape[-1]
    if terms <= FP32_EXACT_TERMS:
        return np.matmul(x, b)
    out = np.zeros((*x.shape[:-1], b.shape[-1]), dtype=np.float64)
    for lo in range(0, terms, FP32_EXACT_TERMS):
        out += np.matmul(x[..., lo : lo + FP32_EXACT_TERMS], b[lo : lo + FP32_EXACT_TERMS])
    return out


def exact_conv_valid_np(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """_conv_valid_np for integer-valued inputs, exactly: input channels in groups whose
    reduction (channels * k * k) is at most FP32_EXACT_TERMS, summed in float64."""
    k = w.shape[-1]
    group = max(1, FP32_EXACT_TERMS // (k * k))
    if x.shape[1] <= group:
        return _conv_valid_np(x, w)
    out = _conv_valid_np(x[:, :group], w[:, :group]).astype(np.float64)
    for lo in range(group, x.shape[1], group):
        out += _conv_valid_np(x[:, lo : lo + group], w[:, lo : lo + group])
    return out


def _abs_scale_np(z: np.ndarray, scale: np.ndarray) -> np.ndarray:
    np.abs(z, out=z)
    z *= scale
    return z


def _conv_valid_np(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Valid cross-correlation (N, C, H, W) x (O, C, k, k) -> (N, O, H-k+1, W-k+1) as fp32 GEMMs
    over an im2col copy, a few images at a time so the copy (k*k times the input) stays under
    _IM2COL_ELEMENTS (per-tap GEMMs without the copy measured 2x slower on the CPU suites)."""
    count, channels, height, width = x.shape
    out_channels, _, k, _ = w.shape
    out_h, out_w = height - k + 1, width - k + 1
    terms = channels * k * k
    weights = w.reshape(out_channels, terms)
    out = np.empty((count, out_channels, out_h * out_w), dtype=np.float32)
    step = max(1, _IM2COL_ELEMENTS // (terms * out_h * out_w))
    for lo in range(0, count, step):
        windows = np.lib.stride_tricks.sliding_window_view(x[lo : lo + step], (k, k), axis=(2, 3))
        cols = windows.transpose(0, 1, 4, 5, 2, 3).reshape(-1, terms, out_h * out_w)
        np.matmul(weights, cols, out=out[lo : lo + step])
    return out.reshape(count, out_channels, out_h, out_w)


def _inside(spec: ConvChainSpec, pixels: np.ndarray, span: int) -> np.ndarray:
    """(count, 2 span + 1, 2 span + 1): 1 where the window around each pixel is in the image."""
    offsets = np.arange(-span, span + 1)
    hh = pixels[:, 1][:, None] + offsets[None, :]
    ww = pixels[:, 2][:, None] + offsets[None, :]
    rows = (hh >= 0) & (hh < spec.height)
    cols = (ww >= 0) & (ww < spec.width)
    return (rows[:, :, None] & cols[:, None, :]).astype(np.float32)


def _cone_inputs(spec: ConvChainSpec, seed: str, pixels: np.ndarray) -> np.ndarray:
    """X_0 around each pixel (b, h, w): (count, C, 2Lr+1, 2Lr+1), zero outside the image."""
    span = spec.layers * spec.radius
    offsets = np.arange(-span, span + 1)
    hh = np.clip(pixels[:, 1][:, None] + offsets[None, :], 0, spec.height - 1)
    ww = np.clip(pixels[:, 2][:, None] + offsets[None, :], 0, spec.width - 1)
    channels = np.arange(spec.channels)
    plane = (pixels[:, 0][:, None] * spec.channels + channels[None, :]) * spec.height
    flat = (plane[:, :, None, None] + hh[:, None, :, None]) * spec.width + ww[:, None, None, :]
    if spec.exact:
        values = generate_ints_at(seed, "X", flat).astype(np.float32)
    else:
        values = generate_floats_at(seed, "X", flat, spec.precision)
    return values * _inside(spec, pixels, span)[:, None]


__all__ = [
    "CHAIN_PRECISIONS",
    "EXACT_CHAIN_PRECISIONS",
    "FLOAT_CHAIN_PRECISIONS",
    "ChainSpec",
    "ConvChainSpec",
    "MatmulChainSpec",
    "chain_spec_from_dict",
    "exact_conv_valid_np",
    "exact_matmul_np",
    "inputs_int8",
    "inputs_numpy",
    "inputs_torch",
    "int8_map_np",
    "layer_shifts",
]
