"""The tolerance and detection arithmetic at exact, hand-computed values (mutation testing, issue
14): the other tests check these formulas against the targets they must meet, which a changed
constant or operator can still meet. Every expected number here was computed by hand from the
formula in the docstring beside it, not by calling the code under test.

    layer_sigma(P, r)  = sqrt(u_P^2 / 3 + 2 * (2^-24)^2 * r / 6)
    chain_sigma        = sqrt(L) * layer_sigma            (KAPPA = 1)
    value_tolerance    = 8 * chain_sigma                  (ROW_LAMBDA = 8)
    rms_tau(N)         = sqrt(x), (N / 2)(x - 1 - ln x) = ln(1e12)
    guess_probability  = min(1, 2 * value_tolerance / sqrt(2 pi)) ** width
    detection          = 1 - (1 - s (1 - g)) ** k
    samples_needed     = ceil(ln(miss) / ln(1 - s (1 - g)))
    EV                 = q**J * revenue * s / (1 - s) - (1 - q**J) * collateral, q = 1 - detection
"""

import pytest

from workers.verification import precision
from workers.verification.sketch import (
    cheating_expected_value,
    detection_probability,
    samples_needed,
)

# bf16: u = 2^-8; u^2 / 3 = 5.0862630208e-6, accumulation 2 * 2^-48 * 64 / 6 = 7.58e-14:
# sqrt(5.0862630966e-6) = 0.00225527450582508.
BF16_R64_LAYER = 0.00225527450582508
# fp32, r = 4096: u = 2^-24, u^2 (1/3 + 2 * 4096 / 6) = u^2 * 1365.6667; sqrt -> u * 36.9549.
FP32_R4096_LAYER = 2.2026853264478225e-06


def test_layer_and_chain_sigma_at_hand_computed_values():
    assert precision.layer_sigma("bf16", 64) == pytest.approx(BF16_R64_LAYER, rel=1e-12)
    assert precision.layer_sigma("fp32", 4096) == pytest.approx(FP32_R4096_LAYER, rel=1e-12)
    # sqrt(4) = 2 layers' worth, sqrt(9) = 3.
    assert precision.chain_sigma("bf16", 64, 4) == pytest.approx(0.00451054901165016, rel=1e-12)
    assert precision.chain_sigma("fp32", 4096, 9) == pytest.approx(6.608055979343468e-06, rel=1e-12)


def test_value_and_rms_tolerances_at_hand_computed_values():
    # 8 * 0.00451054901165016
    assert precision.value_tolerance("bf16", 64, 4) == pytest.approx(0.03608439209320128, rel=1e-12)
    # rms_tau(48) * chain_sigma = 1.8342852346064284 * 0.00451054901165016
    assert precision.rms_tolerance("bf16", 64, 4, 48) == pytest.approx(
        1.8342852346064284 * 0.00451054901165016, rel=1e-9
    )
    assert precision.rms_tolerance("fp32", 4096, 9, 192) == pytest.approx(
        1.4005593710007824 * 6.608055979343468e-06, rel=1e-9
    )


@pytest.mark.parametrize(
    ("values", "tau"),
    # Newton's method on (N / 2)(x - 1 - ln x) = 27.631021115928547, done separately.
    [
        (1, 7.769324859453054),
        (4, 4.205760429560856),
        (48, 1.8342852346064284),
        (192, 1.4005593710007824),
    ],
)
def test_rms_tau_solves_the_chernoff_bound(values, tau):
    assert precision.rms_tau(values) == pytest.approx(tau, rel=1e-9)


@pytest.mark.parametrize("values", [0, -3])
def test_rms_tau_refuses_no_values(values):
    with pytest.raises(ValueError) as refused:
        precision.rms_tau(values)
    assert str(refused.value) == "values must be positive"


def test_guess_probability_at_hand_computed_values():
    # One value: 2 * 0.03608439209320128 / sqrt(2 pi) = 0.028791179337122292; three: its cube.
    assert precision.guess_probability("bf16", 64, 4, 1) == pytest.approx(
        0.028791179337122292, rel=1e-12
    )
    assert precision.guess_probability("bf16", 64, 4, 3) == pytest.approx(
        2.3865930089735545e-05, rel=1e-9
    )
    # A tolerance wider than the density bound: each value is capped at probability 1.
    assert precision.guess_probability("fp32", 10**20, 1, 3) == 1.0


def test_the_stated_constants():
    assert precision.UNIT_ROUNDOFF == {
        "fp32": 2.0**-24,
        "tf32": 2.0**-11,
        "bf16": 2.0**-8,
        "fp16": 2.0**-11,
    }
    assert precision.ACCUMULATOR_ROUNDOFF == 2.0**-24
    assert (precision.KAPPA, precision.ROW_LAMBDA, precision.GROSS_ERROR) == (1.0, 8.0, 0.25)
    assert precision.FALSE_REJECTION == 1e-12


def test_detection_probability_at_exact_values():
    # 1 - 0.75^3
    assert detection_probability(0.25, 3) == 0.578125
    # s (1 - g) = 0.25: 1 - 0.75^2
    assert detection_probability(0.5, 2, 0.5) == 0.4375
    # A guess that always lands catches nothing; the bounds 0 and 1 are allowed.
    assert detection_probability(0.5, 4, 1.0) == 0.0
    assert detection_probability(1.0, 3, 0.0) == 1.0


@pytest.mark.parametrize(("skipped", "guess"), [(-0.1, 0.0), (1.1, 0.0), (0.5, -0.1), (0.5, 1.1)])
def test_detection_probability_refuses_out_of_range(skipped, guess):
    with pytest.raises(ValueError) as refused:
        detection_probability(skipped, 10, guess)
    assert str(refused.value) == "skipped and guess must be in [0, 1]"


def test_samples_needed_at_hand_computed_values():
    # ln 0.2 / ln 0.5 = 2.32 -> 3;  ln 0.2 / ln 0.75 = 5.59 -> 6 (s (1 - g) = 0.25).
    assert samples_needed(0.5, 0.2) == 3
    assert samples_needed(0.5, 0.2, 0.5) == 6


def test_cheating_expected_value_at_hand_computed_values():
    # k = 1, s = 1/2: q = 1/2, survive q^2 = 1/4; 1/4 * 40 * 1 - 3/4 * 100 = 10 - 75.
    assert cheating_expected_value(0.5, k=1, collateral=100, revenue=40, checks=2) == -65.0
    # g = 1/2: q = 0.75^2 = 9/16; 9/16 * 12 * 1 - 7/16 * 8 = 6.75 - 3.5.
    ev = cheating_expected_value(0.5, k=2, collateral=8, revenue=12, checks=1, guess=0.5)
    assert ev == 3.25
    # s = 3/4, k = 1: q = 1/4; 1/4 * 4 * 3 - 3/4 * 2 = 3 - 1.5.
    assert cheating_expected_value(0.75, k=1, collateral=2, revenue=4, checks=1) == 1.5
    # Skipping everything is always caught: the collateral is lost, nothing is earned.
    assert cheating_expected_value(1.0, k=1, collateral=7, revenue=1000, checks=1) == -7
