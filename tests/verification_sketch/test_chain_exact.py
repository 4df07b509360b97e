"""Chain specs at their limits and their sizes at hand-computed values (mutation testing, issue
14). The other tests check that sizes agree with each other and that the agent's run matches the
server's recompute; a bound moved by one, a refusal with the wrong words, or a size formula
changed on both sides at once passes those. Every expected value here is worked out by hand in
the comment beside it."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from workers.kernels import SpecError
from workers.kernels.chain import (
    ConvChainSpec,
    MatmulChainSpec,
    _floor_log2,
    _mean_taps,
    _second_moment,
    chain_spec_from_dict,
    inputs_numpy,
    inputs_torch,
    layer_shifts,
)
from workers.kernels.floatgen import generate_floats

SEED = "0123456789abcdef" * 4


def conv(**changes):
    fields = dict(batch=1, channels=8, height=4, width=4, kernel_size=3, layers=1)
    return ConvChainSpec(**{**fields, **changes})


# --- refusals, each at the first value past its bound, with its words ------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch": 0}, "batch must be in 1..256, got 0"),
        ({"batch": 257}, "batch must be in 1..256, got 257"),
        ({"channels": 7}, "channels must be in 8..4096, got 7"),
        ({"channels": 4097}, "channels must be in 8..4096, got 4097"),
        ({"height": 0}, "height must be in 1..1024, got 0"),
        ({"height": 1025}, "height must be in 1..1024, got 1025"),
        ({"width": 0}, "width must be in 1..1024, got 0"),
        ({"width": 1025}, "width must be in 1..1024, got 1025"),
        ({"kernel_size": 0}, "kernel_size must be in 1..11, got 0"),
        ({"kernel_size": 12}, "kernel_size must be in 1..11, got 12"),
        ({"layers": 0}, "layers must be in 1..64, got 0"),
        ({"kernel_size": 1, "channels": 64, "layers": 65}, "layers must be in 1..64, got 65"),
        ({"batch": True}, "batch must be an integer, got bool"),
        (
            {"precision": "int4"},
            "precision must be one of fp32, tf32, bf16, fp16, int8, got 'int4'",
        ),
        ({"kernel_size": 4}, "kernel_size must be odd ('same' padding keeps the shape per layer)"),
        # 7 channels * 3^2 = 63 < 64; with 8 channels it is 72.
        ({"kernel_size": 1, "channels": 63}, "channels * kernel_size^2 must be at least 64"),
        # 33 layers of radius 1 reach 33 pixels out.
        ({"layers": 33}, "layers * (kernel_size // 2) must be at most 32"),
        ({"layers": 11, "kernel_size": 7}, "layers * (kernel_size // 2) must be at most 32"),
        # 65 * 8 * 1024 * 1024 = 545,259,520 > 2^29 = 536,870,912.
        ({"batch": 65, "height": 1024, "width": 1024}, "activations exceed 536870912 elements"),
        # 64 * 8 * 1024 * 1024 is exactly 2^29 (allowed), but 2^26 pixels exceed 40,960 units.
        (
            {"batch": 64, "height": 1024, "width": 1024},
            "67108864 output pixels exceed the sketch's 40960 units",
        ),
        # 40,961 = 1 x 1 x 40,961 is not possible (width <= 1024): 41 x 1000 = 41,000.
        (
            {"batch": 41, "height": 1, "width": 1000},
            "41000 output pixels exceed the sketch's 40960 units",
        ),
    ],
)
def test_conv_spec_refusals_name_the_bound(changes, message):
    with pytest.raises(SpecError) as refused:
        conv(**changes)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "changes",
    [
        {"height": 1, "width": 1},
        {"batch": 256, "height": 10, "width": 16},  # 40,960 units exactly
        {"batch": 40, "height": 1, "width": 1024},  # 40,960 units exactly
        {"layers": 32},  # a cone of radius 32 exactly
        {"kernel_size": 1, "channels": 64, "layers": 64},
        {"kernel_size": 11, "channels": 8},
        {"channels": 4096, "kernel_size": 1},
    ],
)
def test_conv_specs_at_their_bounds_are_accepted(changes):
    spec = conv(**changes)
    for name, value in changes.items():
        assert getattr(spec, name) == value


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n": 63}, "n must be in 64..16384, got 63"),
        ({"n": 16385}, "n must be in 64..16384, got 16385"),
        ({"layers": 0}, "layers must be in 1..1024, got 0"),
        ({"layers": 1025}, "layers must be in 1..1024, got 1025"),
        ({"rows": -1}, "rows must be in 0..65536, got -1"),
        ({"rows": 65537}, "rows must be in 0..65536, got 65537"),
        ({"n": 64.0}, "n must be an integer, got float"),
        ({"precision": "fp8"}, "precision must be one of fp32, tf32, bf16, fp16, int8, got 'fp8'"),
        ({"rows": 40961}, "40961 rows exceed the sketch's 40960 units"),
        # 40,960 x 16,384 = 671,088,640 > 2^29.
        ({"rows": 40960, "n": 16384}, "40960 x 16384 exceeds 536870912 elements"),
    ],
)
def test_matmul_spec_refusals_name_the_bound(changes, message):
    with pytest.raises(SpecError) as refused:
        MatmulChainSpec(**{"n": 64, "layers": 1, **changes})
    assert str(refused.value) == message


def test_matmul_specs_at_their_bounds_are_accepted():
    assert MatmulChainSpec(n=64, layers=1).rows == 64  # rows 0 means square
    assert MatmulChainSpec(n=64, layers=1024, rows=40960).rows == 40960
    # 32,768 x 16,384 is exactly 2^29 elements.
    assert MatmulChainSpec(n=16384, layers=1, rows=32768).units == 32768


# --- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "width"),
    # min(4, 163,840 bytes // (4 bytes * rows)), at least 1.
    [(64, 4), (10240, 4), (10241, 3), (13653, 3), (13654, 2), (20480, 2), (20481, 1), (40960, 1)],
)
def test_sketch_width_is_the_widest_that_fits_the_budget(rows, width):
    spec = MatmulChainSpec(n=64, layers=1, rows=rows)
    assert spec.sketch_width == width
    assert spec.sketch_values == rows * width
    assert spec.sketch_bytes == 4 * rows * width


def test_matmul_sizes_at_hand_computed_values():
    spec = MatmulChainSpec(n=64, layers=3, rows=8)
    assert (spec.units, spec.features, spec.reduction_length) == (8, 64, 64)
    assert spec.gain_terms == Fraction(64)
    assert spec.flops == 196_608  # 2 * 8 * 64 * 64 * 3
    assert spec.unit_flops == 24_576  # 2 * 64 * 64 * 3
    assert spec.input_shapes() == (("A", (8, 64)), ("B", (64, 64)))
    assert spec.to_dict() == {
        "kind": "matmul_chain",
        "n": 64,
        "layers": 3,
        "rows": 8,
        "precision": "fp32",
    }


def test_conv_sizes_at_hand_computed_values():
    spec = conv(batch=2, height=3, width=5, layers=2)
    assert (spec.units, spec.features, spec.radius) == (30, 8, 1)
    assert spec.reduction_length == 72  # 8 * 3^2
    # Taps inside a 3-pixel axis: 2, 3, 2 (mean 7/3); a 5-pixel axis: 2, 3, 3, 3, 2 (13/5).
    assert spec.gain_terms == Fraction(8 * 7 * 13, 3 * 5)
    assert spec.flops == 69_120  # 2 * 30 pixels * 8 * 72 * 2 layers
    # The cone: layer L (1 pixel) and layer L-1 (3 x 3): 10 pixels * 2 * 8 * 72.
    assert spec.unit_flops == 11_520
    assert spec.input_shapes() == (("X", (2, 8, 3, 5)), ("W", (8, 8, 3, 3)))
    assert spec.to_dict() == {
        "kind": "conv2d_chain",
        "batch": 2,
        "channels": 8,
        "height": 3,
        "width": 5,
        "kernel_size": 3,
        "layers": 2,
        "precision": "fp32",
    }
    assert conv(kernel_size=5, layers=3).unit_flops == 2 * (1 + 25 + 81) * 8 * 200


def test_mean_taps_and_floor_log2_at_hand_computed_values():
    assert _mean_taps(1, 1) == 1
    assert _mean_taps(3, 1) == Fraction(7, 3)
    assert _mean_taps(5, 2) == Fraction(3 + 4 + 5 + 4 + 3, 5)
    assert _mean_taps(4, 0) == 1
    cases = {(8, 1): 3, (7, 1): 2, (1, 8): -3, (1, 7): -3, (1, 9): -4, (3, 2): 0, (2, 3): -1}
    # Same leading bit position after the shift, but smaller: 4/3 = 1.33, 9/5 = 1.8, 6/3 = 2.
    cases |= {(4, 3): 0, (9, 5): 0, (6, 3): 1, (3, 6): -1, (5, 9): -1}
    for (numerator, denominator), expected in cases.items():
        assert _floor_log2(numerator, denominator) == expected, (numerator, denominator)
    assert _floor_log2(5, 5) == 0


def test_second_moment_of_the_generated_values_exactly():
    # q = 2^mantissa: E[m] = (q - 1) / 2q, E[m^2] = (q - 1)(2q - 1) / 6q^2 for m = j / q,
    # E[(1 + m)^2] = 1 + 2 E[m] + E[m^2]; the exponent term is mean over e < 8 of 4^-e
    # = (65535 / 65536) * (4 / 3) / 8 = 21845 / 131072. bf16 (q = 128):
    # 1 + 127/128 + 10795/32768 = 76075/32768, times 21845/131072.
    assert _second_moment("bf16") == Fraction(1661858375, 4294967296)
    assert _second_moment("fp32") == Fraction(7173623794204242375, 2**64)
    assert _second_moment("fp16") == Fraction(106828232135, 2**38)


def test_layer_shifts_at_hand_computed_values():
    # fp32, 64 terms: G = 24.8885; G^1 = 24.9 in [2^4, 2^5) -> T = 2; G^2 = 619 in [2^9, 2^10)
    # -> T = 5; G^3 = 15,417 in [2^13, 2^14) -> T = 7: shifts 2, 3, 2.
    assert layer_shifts("fp32", Fraction(64), 3) == (2, 3, 2)
    assert layer_shifts("bf16", Fraction(64), 5) == (2, 3, 2, 2, 3)
    assert conv(batch=2, height=3, width=5, layers=4).shifts == (2, 2, 2, 2)


def test_scales_are_seeded_signs_times_the_shifts_powers_of_two():
    spec = MatmulChainSpec(n=64, layers=3, rows=8)
    scales = spec.scales(SEED)
    assert scales.dtype == np.float32 and scales.shape == (3, 64)
    assert np.array_equal(np.abs(scales), np.array([[0.25] * 64, [0.125] * 64, [0.25] * 64]))
    signs = np.sign(generate_floats(SEED, "D", 3 * 64, "fp32")).reshape(3, 64)
    assert np.array_equal(np.sign(scales), signs)
    sketch = spec.sketch_matrix(SEED)
    assert sketch.shape == (64, 4)
    assert np.array_equal(sketch.ravel(), generate_floats(SEED, "V", 256, "fp32"))


def test_conv_units_are_pixels_in_batch_row_column_order():
    spec = conv(batch=2, height=3, width=5)
    x = np.arange(2 * 8 * 3 * 5, dtype=np.float32).reshape(2, 8, 3, 5)
    for vectors in (spec.unit_vectors(x), spec.unit_vectors(torch.from_numpy(x)).numpy()):
        assert vectors.shape == (30, 8)
        for b, h, w in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 2, 4), (1, 0, 3)]:
            assert np.array_equal(vectors[(b * 3 + h) * 5 + w], x[b, :, h, w])


def test_a_one_by_one_kernel_is_a_per_pixel_product():
    # radius 0: no padding; each output pixel is W[:, :, 0, 0] . x[:, h, w].
    spec = conv(kernel_size=1, channels=64, height=2, width=3)
    x = np.arange(64 * 6, dtype=np.float32).reshape(1, 64, 2, 3) / 100
    w = np.eye(64, dtype=np.float32)[:, :, None, None] * 2
    out = spec.layer_numpy(x, w)
    assert out.dtype == np.float32  # the numpy backend's GEMMs write fp32, as P = fp32 says
    assert np.array_equal(out, 2 * x)


def test_images_too_large_to_batch_are_convolved_one_by_one():
    # 8 channels x 3 x 3 taps x 512 x 512 output pixels = 18.9 million im2col elements, over the
    # 2^24 budget: one image per GEMM. The second image must be computed like the first. (The
    # layer reads only the kernel's radius from the spec; a sketched job this large would have
    # too many units.)
    spec = conv()
    x = np.ones((2, 8, 512, 512), dtype=np.float32)
    x[1] *= 2
    w = np.ones((8, 8, 3, 3), dtype=np.float32)
    out = spec.layer_numpy(x, w)
    # An interior pixel sums 8 channels x 9 taps of 1 (image 0) or 2 (image 1); a corner, 4 taps.
    assert out[0, :, 100, 100].tolist() == [72.0] * 8
    assert out[1, :, 100, 100].tolist() == [144.0] * 8
    assert out[1, :, 0, 0].tolist() == [64.0] * 8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "spec must be a JSON object, got list"),
        (
            {"kind": "conv"},
            "unknown chain kind 'conv'; expected one of ['conv2d_chain', 'matmul_chain']",
        ),
        (
            {"kind": ["matmul_chain"]},
            "unknown chain kind ['matmul_chain']; expected one of ['conv2d_chain', 'matmul_chain']",
        ),
        (
            {"kind": "matmul_chain", "n": 64, "layers": 1, "rows": 0},
            "spec fields must be exactly ['layers', 'n', 'precision', 'rows']",
        ),
    ],
)
def test_spec_documents_that_are_not_specs_are_refused_with_their_words(data, message):
    with pytest.raises(SpecError) as refused:
        chain_spec_from_dict(data)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)]
)
def test_torch_inputs_on_the_cpu_are_the_numpy_inputs_in_the_jobs_dtype(precision, dtype):
    spec = MatmulChainSpec(n=64, layers=1, rows=8, precision=precision)
    first, second = inputs_torch(spec, SEED, device="cpu", dtype=dtype)
    expected_first, expected_second = inputs_numpy(spec, SEED)
    assert (first.dtype, second.dtype) == (dtype, dtype)
    assert (tuple(first.shape), tuple(second.shape)) == ((8, 64), (64, 64))
    assert np.array_equal(first.float().numpy(), expected_first)
    assert np.array_equal(second.float().numpy(), expected_second)
