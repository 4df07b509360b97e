"""The cheap verifier (one pass over B, randomized row projections, Freivalds and the conv
projection on random subsets): exact arithmetic at the spec limits, and the cheats it must
still catch at sizes where the subsets are proper subsets."""

import random

import numpy as np
import pytest

from workers.kernels import Conv2dSpec, MatmulSpec, compute
from workers.kernels.generator import generate
from workers.kernels.specs import MAX_N, PRODUCT_BOUND
from workers.verification import (
    R_BOUND,
    answer_verify,
    challenge_answer,
    challenge_create,
    commitment_create,
    protocol,
)
from workers.verification.protocol import (
    _DIGITS,
    _S_BOUND,
    FREIVALDS_COORDINATES,
    PROJECTION_IMAGES,
    _b_times,
    _signed_digits,
)

# Larger than FREIVALDS_COORDINATES + k, so Freivalds really runs on a subset.
BIG = MatmulSpec(FREIVALDS_COORDINATES + 64)
# More images than sampled planes can touch plus PROJECTION_IMAGES.
WIDE_CONV = Conv2dSpec(PROJECTION_IMAGES + 8, 2, 2, 6, 6, 3, padding=1)


def run_job(spec, output, *, sample_count=8, rng=None):
    root, tree = commitment_create(spec, output)
    challenge = challenge_create(spec, sample_count=sample_count, rng=rng)
    return root, challenge, challenge_answer(spec, output, tree, challenge)


def test_exactness_bounds_hold_at_the_spec_limits():
    n = MAX_N
    # float32 B . d with signed base-256 digits: every partial sum below 2**24.
    assert 2 * n * 128 < 2**24
    # The digits cover the verifier's s and the challenge's r.
    assert _S_BOUND <= 128 * 256 ** (_DIGITS - 1) and R_BOUND < _S_BOUND
    # int64 after recombination: A[i].(B.s), row . s, A[j].(B.r).
    bs = 2 * n * _S_BOUND
    assert 2 * n * bs < 2**63
    assert PRODUCT_BOUND * n * n * _S_BOUND < 2**63
    assert 2 * n * (2 * n * R_BOUND) < 2**53
    # conv projection digits in float64: 2 * terms * 256 * out_channels with terms*4 < 2**24.
    assert 2 * (2**24 // PRODUCT_BOUND) * 256 * 4096 < 2**53


@pytest.mark.parametrize("bound", [R_BOUND, _S_BOUND])
def test_signed_digits_reconstruct_the_extremes(bound):
    v = np.array([-bound, -bound + 1, -129, -128, -1, 0, 1, 127, 128, 255, 256, bound - 1])
    digits = _signed_digits(v, _DIGITS)
    assert np.abs(digits).max() <= 128
    assert np.array_equal(digits @ (256 ** np.arange(_DIGITS)), v)


def test_b_times_is_exact_for_extreme_vectors(seed):
    n = 300  # not a multiple of the block size
    b = generate(seed, "B", n * n).astype(np.int64).reshape(n, n)
    vectors = np.stack(
        [
            np.full(n, _S_BOUND - 1),
            np.full(n, -_S_BOUND),
            np.where(b[0] > 0, _S_BOUND - 1, -_S_BOUND),  # same signs as row 0: the maximum
            np.random.default_rng(1).integers(-R_BOUND, R_BOUND + 1, n),
        ],
        axis=1,
    )
    assert np.array_equal(_b_times(seed, n, vectors), b @ vectors)


def test_b_times_blocks_cover_every_row(seed, monkeypatch):
    # A block size that leaves a short last block.
    monkeypatch.setattr(protocol, "_BLAS_BLOCK_ELEMENTS", 7 * 50 * 9)
    n = 50
    b = generate(seed, "B", n * n).astype(np.int64).reshape(n, n)
    v = np.random.default_rng(2).integers(-_S_BOUND, _S_BOUND, (n, 3))
    assert np.array_equal(_b_times(seed, n, v), b @ v)


def test_honest_answer_passes_for_many_verifier_seeds(seed):
    root, challenge, answer = run_job(BIG, compute(BIG, seed))
    for verifier_seed in range(5):
        report = answer_verify(BIG, seed, root, challenge, answer, verifier_seed=verifier_seed)
        assert report.passed, report


@pytest.mark.parametrize("delta", [1, -1, 37])
def test_sampled_row_off_by_one_anywhere_is_a_row_mismatch(seed, delta):
    output = compute(BIG, seed)
    rng = random.Random(5)
    challenge = challenge_create(BIG, sample_count=8, rng=random.Random(6))
    i = challenge["indices"][3]
    output[i, rng.randrange(BIG.n)] += delta  # committed and answered consistently
    root, tree = commitment_create(BIG, output)
    answer = challenge_answer(BIG, output, tree, challenge)
    for verifier_seed in range(10):
        report = answer_verify(BIG, seed, root, challenge, answer, verifier_seed=verifier_seed)
        assert report.reason == "row_mismatch"


def test_naive_partial_cheat_is_caught_by_freivalds_on_a_subset(seed):
    partial = compute(BIG, seed)
    partial[::4] = 0  # a quarter of the rows skipped; y derived from the committed rows
    rng = random.Random(11)
    while True:
        root, challenge, answer = run_job(BIG, partial, sample_count=2, rng=rng)
        if all(i % 4 for i in challenge["indices"]):  # row sampling missed: Freivalds' turn
            break
    for verifier_seed in range(5):
        report = answer_verify(BIG, seed, root, challenge, answer, verifier_seed=verifier_seed)
        assert report.reason == "freivalds_failed"


def test_smart_partial_cheat_is_caught_by_the_sampled_rows_as_before(seed):
    """y = A.(B.r) exactly (what the full Freivalds check would accept too) with a skipped
    row: only the row sampling can catch it, and it does when the row is sampled."""
    honest = compute(BIG, seed)
    partial = honest.copy()
    partial[7] = 0
    root, tree = commitment_create(BIG, partial)
    challenge = challenge_create(BIG, sample_count=4, rng=random.Random(1))
    challenge["indices"][0] = 7 if 7 not in challenge["indices"] else challenge["indices"][0]
    answer = challenge_answer(BIG, partial, tree, challenge)
    answer["y"] = (honest.astype(np.int64) @ np.array(challenge["r"])).tolist()
    assert answer_verify(BIG, seed, root, challenge, answer).reason == "row_mismatch"


def test_y_wrong_on_one_unsampled_coordinate_is_caught_when_it_is_checked(seed):
    root, challenge, answer = run_job(BIG, compute(BIG, seed))
    j = next(i for i in range(BIG.n) if i not in challenge["indices"])
    answer["y"][j] += 1
    reasons = {
        answer_verify(BIG, seed, root, challenge, answer, verifier_seed=v).reason for v in range(40)
    }
    # Each verifier seed checks j with probability 256/320: over 40 seeds both outcomes occur.
    assert reasons == {None, "freivalds_failed"}


def test_conv_projection_on_a_subset_catches_a_wrong_image(seed):
    root, challenge, answer = run_job(WIDE_CONV, compute(WIDE_CONV, seed), sample_count=1)
    plane = WIDE_CONV.out_height * WIDE_CONV.out_width
    for image in range(WIDE_CONV.batch):
        answer["y"][image * plane] += 1  # every image wrong: any subset catches it
    report = answer_verify(WIDE_CONV, seed, root, challenge, answer, verifier_seed=3)
    assert report.reason == "projection_failed"


def test_conv_wrong_plane_and_honest_conv_pass(seed):
    output = compute(WIDE_CONV, seed)
    root, challenge, answer = run_job(WIDE_CONV, output, sample_count=6)
    for v in range(3):
        assert answer_verify(WIDE_CONV, seed, root, challenge, answer, verifier_seed=v).passed
    answer["planes"][0]["values"][5] += 1
    report = answer_verify(WIDE_CONV, seed, root, challenge, answer)
    assert report.reason in ("merkle_proof_invalid", "plane_mismatch")
    bad = output.copy()
    p = challenge["indices"][0]
    bad[p // WIDE_CONV.out_channels, p % WIDE_CONV.out_channels, 0, 0] += 1
    root, tree = commitment_create(WIDE_CONV, bad)
    answer = challenge_answer(WIDE_CONV, bad, tree, challenge)
    assert answer_verify(WIDE_CONV, seed, root, challenge, answer).reason == "plane_mismatch"
