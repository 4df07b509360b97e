"""The chain jobs' float inputs: reproducible on every path, exact in P, and using all of P's
mantissa (so a cheaper format has to round them)."""

import numpy as np
import pytest
import torch

from workers.kernels.floatgen import (
    MANTISSA_BITS,
    generate_floats,
    generate_floats_at,
    generate_floats_torch,
)

from .conftest import cuda_available
from .laundering import round_mantissa, to_format

TORCH_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}
TORCH_DTYPES["fp16"] = torch.float16


@pytest.mark.parametrize("precision", list(MANTISSA_BITS))
def test_slices_indices_and_torch_give_the_same_values(seed, precision):
    whole = generate_floats(seed, "B", 10_001, precision)
    assert np.array_equal(
        generate_floats(seed, "B", 4_000, precision, start=3_333), whole[3_333:7_333]
    )
    picks = np.array([10_000, 0, 1, 7, 5_000, 2])
    assert np.array_equal(generate_floats_at(seed, "B", picks, precision), whole[picks])
    on_torch = generate_floats_torch(
        seed, "B", 10_001, precision, device="cpu", dtype=TORCH_DTYPES[precision]
    )
    assert np.array_equal(on_torch.float().numpy(), whole)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="no CUDA device")
@pytest.mark.parametrize("precision", list(MANTISSA_BITS))
def test_cuda_generation_matches_numpy_bit_for_bit(seed, precision):
    whole = generate_floats(seed, "A", 300_001, precision)
    on_gpu = generate_floats_torch(
        seed, "A", 300_001, precision, device="cuda", dtype=TORCH_DTYPES[precision]
    )
    assert np.array_equal(on_gpu.float().cpu().numpy(), whole)


def test_tensors_and_seeds_are_independent(seed):
    a = generate_floats(seed, "A", 1000, "fp32")
    assert not np.array_equal(a, generate_floats(seed, "B", 1000, "fp32"))
    assert not np.array_equal(a, generate_floats("ab" * 32, "A", 1000, "fp32"))


@pytest.mark.parametrize("precision", ["bf16", "fp16", "tf32"])
def test_values_are_exact_in_their_precision(seed, precision):
    values = generate_floats(seed, "X", 100_000, precision)
    assert np.array_equal(to_format(values, precision), values)


def test_values_span_eight_binades_and_are_normal_in_fp16(seed):
    values = np.abs(generate_floats(seed, "X", 200_000, "fp16"))
    assert values.min() >= 2.0**-7 and values.max() < 2.0
    exponents = np.unique(np.floor(np.log2(values)))
    assert exponents.tolist() == list(range(-7, 1))


@pytest.mark.parametrize(
    ("precision", "cheaper"),
    [("fp32", "tf32"), ("fp32", "bf16"), ("fp32", "fp16"), ("fp16", "bf16"), ("tf32", "bf16")],
)
def test_a_cheaper_format_must_round_almost_every_input(seed, precision, cheaper):
    # A value survives only if all its dropped mantissa bits are zero: 2**-dropped of them.
    values = generate_floats(seed, "B", 100_000, precision)
    dropped = MANTISSA_BITS[precision] - MANTISSA_BITS[cheaper]
    changed = np.mean(to_format(values, cheaper) != values)
    assert changed > 1 - 2.0**-dropped - 0.01


def test_the_full_mantissa_is_random(seed):
    # Every stored mantissa bit of fp32 inputs is set about half the time: none is left at zero
    # (which would let tf32/bf16 hold the values exactly).
    bits = generate_floats(seed, "A", 200_000, "fp32").view(np.uint32)
    for bit in range(23):
        share = np.mean((bits >> bit) & 1)
        assert 0.48 < share < 0.52, bit


def test_round_mantissa_matches_torch_bfloat16(seed):
    values = generate_floats(seed, "A", 50_000, "fp32")
    assert np.array_equal(round_mantissa(values, 7), to_format(values, "bf16"))
