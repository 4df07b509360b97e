"""Chain job specs and their computation: sizes come from the spec, the server's per-unit
recompute agrees with the agent's full run, every backend agrees, and half precisions stay in
range through many layers."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from workers.kernels import SpecError
from workers.kernels.chain import (
    SKETCH_BUDGET_BYTES,
    ConvChainSpec,
    MatmulChainSpec,
    chain_spec_from_dict,
    layer_shifts,
)
from workers.kernels.chain_run import chain_backends, chain_compute, chain_prepare

from .conftest import cuda_available

MATMUL = MatmulChainSpec(n=96, layers=3, rows=40)
CONV = ConvChainSpec(batch=2, channels=8, height=9, width=7, kernel_size=3, layers=2)


@pytest.fixture(params=["matmul", "conv"])
def spec(request):
    return MATMUL if request.param == "matmul" else CONV


def test_spec_round_trips_and_refuses_hostile_fields():
    for spec in (MATMUL, CONV, MatmulChainSpec(n=64, layers=1)):
        assert chain_spec_from_dict(spec.to_dict()) == spec
    bad = [
        None,
        {"kind": "matmul_chain", "n": 8, "layers": 1, "rows": 8},  # precision missing
        {**MATMUL.to_dict(), "extra": 1},
        {**MATMUL.to_dict(), "n": True},
        {**MATMUL.to_dict(), "n": 2**40},
        {**MATMUL.to_dict(), "n": 16},  # too short a reduction for the tolerance model
        {**CONV.to_dict(), "channels": 4},
        {**CONV.to_dict(), "channels": 16, "kernel_size": 1},
        {**MATMUL.to_dict(), "layers": 0},
        {**MATMUL.to_dict(), "precision": "int4"},
        {**MATMUL.to_dict(), "rows": 10**6},
        {**CONV.to_dict(), "kernel_size": 4},
        {**CONV.to_dict(), "layers": 10**6},
        {**CONV.to_dict(), "layers": 40},  # a 81x81 cone per sampled pixel
        {"kind": "conv2d", "n": 8},
    ]
    for data in bad:
        with pytest.raises(SpecError):
            chain_spec_from_dict(data)


def test_sizes_are_the_specs_own(spec):
    assert spec.sketch_bytes == 4 * spec.units * spec.sketch_width <= SKETCH_BUDGET_BYTES
    assert spec.flops == spec.units * spec.unit_flops or spec.kind == "conv2d_chain"
    big = MatmulChainSpec(n=8192, layers=4, rows=16384)
    assert big.sketch_width == 2 and big.sketch_bytes <= SKETCH_BUDGET_BYTES
    conv = ConvChainSpec(batch=8, channels=256, height=64, width=64, kernel_size=3, layers=3)
    assert conv.units == 32768 and conv.sketch_width == 1
    # An interior pixel's cone at L = 3, r = 1: 5x5 + 3x3 + 1 pixels, each a C*k*k dot per channel.
    assert conv.unit_flops == 2 * (25 + 9 + 1) * 256 * 256 * 9


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "tf32"])
@pytest.mark.parametrize("terms", [Fraction(64), Fraction(2304), Fraction(16384), Fraction(7, 3)])
def test_layer_shifts_keep_the_cumulative_gain_near_one(precision, terms):
    from workers.kernels.chain import _second_moment

    gain = 0.5 * math.log2(terms * _second_moment(precision))
    total = 0
    for i, shift in enumerate(layer_shifts(precision, terms, 300), start=1):
        total += shift
        assert abs(i * gain - total) <= 0.5 + 1e-9


def test_layer_shifts_are_exact_at_a_tie():
    # G = 2 per layer: log2(G^i) / 2 = i / 2 sits exactly on a rounding tie for odd i; the
    # integer rule (2T - 1 <= log2 G^i < 2T + 1) settles it the same way everywhere.
    from workers.kernels import chain

    terms = 2 / chain._second_moment("fp32")
    assert chain.layer_shifts("fp32", terms, 4) == (1, 0, 1, 0)


def test_server_recompute_of_units_matches_the_full_run(spec, seed):
    x_full = chain_prepare(spec, seed, "numpy").layers_only()
    vectors = spec.unit_vectors(x_full)
    units = np.arange(spec.units)  # conv: border and corner pixels included
    reference = spec.reference_units(seed, units)
    np.testing.assert_allclose(reference, vectors, rtol=1e-4, atol=1e-5)


def test_conv_matches_torch_conv2d_with_same_padding(seed):
    y_numpy = chain_compute(CONV, seed, "numpy")
    y_torch = chain_compute(CONV, seed, "torch-cpu")
    np.testing.assert_allclose(y_numpy, y_torch, rtol=1e-4, atol=1e-5)


def test_backends_agree_on_fp32(spec, seed):
    results = [chain_compute(spec, seed, b) for b in chain_backends("fp32")]
    assert len(results) >= 2
    for other in results[1:]:
        np.testing.assert_allclose(results[0], other, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="no CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_cuda_runs_the_same_code_path(spec, seed, precision):
    from workers.verification.sketch import sketch_commitment, sketch_verify

    job = chain_spec_from_dict({**spec.to_dict(), "precision": precision})
    report = sketch_verify(job, seed, sketch_commitment(job, seed, "torch-cuda"))
    assert report.passed, report


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("kind", ["matmul", "conv"])
def test_half_precision_values_stay_in_range_through_many_layers(seed, precision, kind):
    # No overflow to inf, no underflow collapse to zero: the rms of every unit stays near the
    # inputs' (0.62). The layer gain is 1 in expectation; what remains is a random walk of the
    # log-scale with steps ~ sqrt(2 / reduction length), about 0.43 over these 48 layers.
    if kind == "matmul":
        spec = MatmulChainSpec(n=512, layers=48, rows=16, precision=precision)
    else:
        spec = ConvChainSpec(
            batch=1, channels=16, height=16, width=16, kernel_size=3, layers=12, precision=precision
        )
    x = chain_prepare(spec, seed, "torch-cpu").layers_only()
    units = spec.unit_vectors(x).float()
    assert torch.isfinite(units).all()
    rms = units.pow(2).mean(dim=1).sqrt()
    # Conv pixels spread more (a reduction of 144 terms walks further; border pixels see fewer
    # taps): measured 0.09-4.7 over 24 seeds, matmul 0.33-1.07. The bounds are far inside
    # fp16's range (normal from 6e-5, finite to 65504): nothing collapses or overflows.
    low, high = (0.02, 32.0) if kind == "conv" else (0.15, 4.0)
    assert low < rms.min() and rms.max() < high
    zeros = (units == 0).float().mean()
    assert zeros < 0.01
