"""The detection and cost arithmetic the design note states, checked against the specs the
benchmark uses (the largest suites) rather than restated by hand."""

import math

import pytest

from workers.kernels.chain import ConvChainSpec, MatmulChainSpec
from workers.verification import precision
from workers.verification.sketch import (
    DEFAULT_SAMPLE_COUNT,
    cheating_expected_value,
    detection_probability,
    payload_size_limit,
    samples_needed,
)

LARGEST = [
    MatmulChainSpec(n=8192, rows=32768, layers=16, precision=p) for p in ("fp32", "bf16", "fp16")
] + [
    ConvChainSpec(batch=8, channels=256, height=64, width=64, kernel_size=3, layers=3, precision=p)
    for p in ("fp32", "bf16", "fp16")
]


def guess(spec):
    return precision.guess_probability(
        spec.precision, spec.reduction_length, spec.layers, spec.sketch_width
    )


@pytest.mark.parametrize("spec", LARGEST, ids=lambda s: f"{s.kind}-{s.precision}")
def test_targets_hold_with_k_48_including_lucky_guesses(spec):
    k = DEFAULT_SAMPLE_COUNT
    assert detection_probability(0.10, k, guess(spec)) >= 0.95
    assert 1 - detection_probability(0.50, k, guess(spec)) <= 2.0**-40
    assert payload_size_limit(spec) <= 256 * 1024
    # The server's recompute share is k / units of the job, plus generating the weights once.
    assert k * spec.unit_flops / spec.flops <= (0.005 if spec.kind == "matmul_chain" else 0.05)


def test_the_least_sample_counts_match_the_formula():
    assert samples_needed(0.10, 0.05) == 29
    assert samples_needed(0.50, 2.0**-40) == 40
    assert 0.9**29 <= 0.05 < 0.9**28


def test_detection_probability_refuses_nonsense():
    with pytest.raises(ValueError):
        detection_probability(1.5, 48)
    assert detection_probability(0.0, 48) == 0.0
    assert detection_probability(1.0, 1) == 1.0


@pytest.mark.parametrize("checks", [1, 4, 30])
def test_cheating_never_pays_once_collateral_covers_revenue_over_checks_times_k(checks):
    k, revenue = DEFAULT_SAMPLE_COUNT, 1_000.0
    collateral = 2 * revenue / (checks * k)
    for skipped in [i / 1000 for i in range(1, 1000)]:
        ev = cheating_expected_value(
            skipped, k=k, collateral=collateral, revenue=revenue, checks=checks
        )
        assert ev < 0, skipped


def test_without_collateral_a_small_skip_would_pay():
    # The check above is not vacuous: with nothing at stake, skipping 1% has positive EV.
    ev = cheating_expected_value(0.01, k=48, collateral=0.0, revenue=1_000.0, checks=1)
    assert ev > 0
    assert math.isclose(ev, (0.99**48) * 1_000.0 * 0.01 / 0.99)
