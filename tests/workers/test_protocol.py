"""The verification protocol against an honest provider (bob) and a cheating one (mallory)."""

import copy
import json
import math
import random

import numpy as np
import pytest

from workers.kernels import PRECISIONS, Conv2dSpec, MatmulSpec, compute, supports
from workers.verification import (
    MAX_ANSWER_BYTES,
    answer_verify,
    challenge_answer,
    challenge_create,
    commitment_create,
    detection_probability,
    throughput_flops_per_second,
)

MATMUL = MatmulSpec(48, "fp32")
CONV = Conv2dSpec(2, 3, 4, 9, 8, 3, stride=1, padding=1)


def run_job(spec, output, *, sample_count=32, rng=None):
    """Commit, get challenged, answer: returns (root, challenge, answer)."""
    root, tree = commitment_create(spec, output)
    challenge = challenge_create(spec, sample_count=sample_count, rng=rng)
    return root, challenge, challenge_answer(spec, output, tree, challenge)


@pytest.fixture(params=["matmul", "conv2d"])
def spec(request):
    return MATMUL if request.param == "matmul" else CONV


def leaf_key(spec):
    return "rows" if spec.kind == "matmul" else "planes"


# --- honest providers -------------------------------------------------------------------------


def test_bob_honest_answer_passes(spec, seed):
    root, challenge, answer = run_job(spec, compute(spec, seed))
    report = answer_verify(spec, seed, root, challenge, answer)
    assert report.passed, report
    assert report.reason is None
    assert report.checks["proofs_verified"] == len(challenge["indices"])
    assert len(report.report_hash) == 64


def test_honest_answer_passes_as_raw_json_bytes(spec, seed):
    root, challenge, answer = run_job(spec, compute(spec, seed))
    assert answer_verify(spec, seed, root, challenge, json.dumps(answer).encode()).passed


def honest_sweep_jobs():
    rng = random.Random(20240601)
    jobs = []
    for i in range(1000):
        precision = PRECISIONS[i % len(PRECISIONS)]
        backend = "numpy" if i % 2 and precision in ("fp32", "tf32") else "torch-cpu"
        if i % 3:
            spec = MatmulSpec(rng.randint(1, 24), precision)
        else:
            if precision == "int8":
                precision = "bf16"
            k = rng.choice([1, 2, 3])
            spec = Conv2dSpec(
                batch=rng.randint(1, 3),
                in_channels=rng.randint(1, 4),
                out_channels=rng.randint(1, 4),
                height=rng.randint(k, 7),
                width=rng.randint(k, 7),
                kernel_size=k,
                stride=rng.randint(1, 2),
                padding=rng.randint(0, k - 1),
                precision=precision,
            )
        jobs.append((spec, backend))
    return jobs


@pytest.mark.slow
def test_one_thousand_honest_jobs_are_never_rejected():
    rng = random.Random(7)
    rejected = []
    jobs = honest_sweep_jobs()
    for spec, backend in jobs:
        assert supports(backend, spec)
        seed = f"{rng.getrandbits(256):064x}"
        root, challenge, answer = run_job(spec, compute(spec, seed, backend), rng=rng)
        report = answer_verify(spec, seed, root, challenge, answer)
        if not report.passed:
            rejected.append((spec, backend, report))
    assert len(jobs) >= 1000
    assert {spec.kind for spec, _ in jobs} == {"matmul", "conv2d"}
    assert {spec.precision for spec, _ in jobs} == set(PRECISIONS)
    assert {backend for _, backend in jobs} == {"numpy", "torch-cpu"}
    assert rejected == []


# --- mallory's cheats -------------------------------------------------------------------------


def test_mallory_random_output_is_caught(spec, seed):
    rng = np.random.default_rng(1)
    fake = rng.integers(-50, 50, size=spec.output_shape)
    root, challenge, answer = run_job(spec, fake)
    report = answer_verify(spec, seed, root, challenge, answer)
    assert not report.passed
    assert report.reason in ("row_mismatch", "plane_mismatch")


def test_mallory_all_zero_output_is_caught(spec, seed):
    root, challenge, answer = run_job(spec, np.zeros(spec.output_shape, dtype=np.int64))
    assert answer_verify(spec, seed, root, challenge, answer).reason in (
        "row_mismatch",
        "plane_mismatch",
    )


def smart_partial_job(spec, honest, partial, *, sample_count, rng):
    """Mallory commits to `partial` but sends the true y = C.r, which costs her only O(n^2)
    (y = A.(B.r)): Freivalds then passes, and only the row sampling can catch her."""
    root, challenge, answer = run_job(spec, partial, sample_count=sample_count, rng=rng)
    answer["y"] = (honest @ np.array(challenge["r"], dtype=np.int64)).tolist()
    return root, challenge, answer


def test_mallory_computing_only_a_fraction_of_rows_is_caught_with_k_32(seed):
    spec = MatmulSpec(256)
    honest = compute(spec, seed)
    skipped = 0.5
    partial = honest.copy()
    partial[int(spec.n * (1 - skipped)) :] = 0
    caught = 0
    trials = 40
    for trial in range(trials):
        root, challenge, answer = smart_partial_job(
            spec, honest, partial, sample_count=32, rng=random.Random(trial)
        )
        caught += not answer_verify(spec, seed, root, challenge, answer).passed
    # 1 - 0.5**32 is 1 - 2.3e-10: every trial must catch it.
    assert detection_probability(skipped, 32) > 1 - 1e-9
    assert caught == trials


def test_skipping_few_rows_escapes_as_often_as_the_bound_says(seed):
    spec = MatmulSpec(200)
    honest = compute(spec, seed)
    partial = honest.copy()
    partial[:10] = 0  # f = 0.05
    k, trials = 8, 300
    escaped = 0
    for trial in range(trials):
        root, challenge, answer = smart_partial_job(
            spec, honest, partial, sample_count=k, rng=random.Random(trial)
        )
        report = answer_verify(spec, seed, root, challenge, answer)
        assert report.passed or report.reason in ("row_mismatch", "y_inconsistent")
        escaped += report.passed
    bound = 1 - detection_probability(0.05, k)  # escape probability <= (1 - f)**k ~ 0.66
    # Without replacement the true escape rate is C(190, 8) / C(200, 8) ~ 0.66; allow noise.
    assert escaped / trials == pytest.approx(bound, abs=0.1)
    assert escaped < trials


def test_naive_partial_cheat_with_y_from_its_own_rows_fails_freivalds(seed):
    spec = MatmulSpec(64)
    partial = compute(spec, seed)
    partial[-1] = 0
    root, challenge, answer = run_job(spec, partial, sample_count=1, rng=random.Random(3))
    assert challenge["indices"] != [spec.n - 1]
    assert answer_verify(spec, seed, root, challenge, answer).reason == "freivalds_failed"


def test_mallory_using_a_different_seed_is_caught(spec, seed):
    root, challenge, answer = run_job(spec, compute(spec, "cd" * 32))
    assert answer_verify(spec, seed, root, challenge, answer).reason in (
        "row_mismatch",
        "plane_mismatch",
    )


def test_y_not_matching_committed_rows_is_caught(seed):
    output = compute(MATMUL, seed)
    root, challenge, answer = run_job(MATMUL, output)
    i = challenge["indices"][0]
    answer["y"][i] += 1
    assert answer_verify(MATMUL, seed, root, challenge, answer).reason == "y_inconsistent"


def test_y_wrong_outside_sampled_rows_fails_freivalds(seed):
    output = compute(MATMUL, seed)
    root, challenge, answer = run_job(MATMUL, output, sample_count=4)
    unsampled = next(i for i in range(MATMUL.n) if i not in challenge["indices"])
    answer["y"][unsampled] -= 3
    assert answer_verify(MATMUL, seed, root, challenge, answer).reason == "freivalds_failed"


def test_conv_y_wrong_fails_the_projection_check(seed):
    root, challenge, answer = run_job(CONV, compute(CONV, seed), sample_count=2)
    answer["y"][-1] += 1
    assert answer_verify(CONV, seed, root, challenge, answer).reason == "projection_failed"


def test_conv_y_inconsistent_with_a_fully_sampled_image_is_caught(seed):
    spec = Conv2dSpec(1, 2, 2, 5, 5, 3)
    root, challenge, answer = run_job(spec, compute(spec, seed))  # both planes sampled
    answer["y"][0] += 1
    assert answer_verify(spec, seed, root, challenge, answer).reason == "y_inconsistent"


def test_valid_proof_for_a_different_row_index_is_caught(spec, seed):
    output = compute(spec, seed)
    root, tree = commitment_create(spec, output)
    challenge = challenge_create(spec, sample_count=2)
    answer = challenge_answer(spec, output, tree, challenge)
    entries = answer[leaf_key(spec)]
    # Mallory answers leaf i with leaf j's values and j's (valid) proof.
    entries[0]["values"], entries[0]["proof"] = entries[1]["values"], entries[1]["proof"]
    assert answer_verify(spec, seed, root, challenge, answer).reason == "merkle_proof_invalid"


def test_leaf_changed_after_commitment_is_caught(spec, seed):
    root, challenge, answer = run_job(spec, compute(spec, seed))
    answer[leaf_key(spec)][0]["values"][0] += 1
    assert answer_verify(spec, seed, root, challenge, answer).reason == "merkle_proof_invalid"


def test_replayed_answer_from_another_job_is_caught(spec, seed):
    other_seed = "ef" * 32
    old_root, old_challenge, old_answer = run_job(spec, compute(spec, other_seed))
    new_challenge = challenge_create(spec)
    # Replaying the old root and answer to a new job: the indices may not even match.
    report = answer_verify(spec, seed, old_root, new_challenge, old_answer)
    assert not report.passed
    # Same challenge re-sent with the other job's commitment: rows are for the wrong seed.
    report = answer_verify(spec, seed, old_root, old_challenge, old_answer)
    assert report.reason in ("row_mismatch", "plane_mismatch")


# --- malformed payloads -----------------------------------------------------------------------


def _mutations():
    def y(fn):
        return lambda a, key: a.__setitem__("y", fn(a["y"]))

    def first(field, fn):
        return lambda a, key: a[key][0].__setitem__(field, fn(a[key][0][field]))

    return {
        "not_a_dict": lambda a, key: "nope",
        "missing_y": lambda a, key: a.pop("y"),
        "extra_key": lambda a, key: a.__setitem__("bonus", 1),
        "y_short": y(lambda v: v[:-1]),
        "y_long": y(lambda v: v + [0]),
        "y_float": y(lambda v: [float(v[0])] + v[1:]),
        "y_nan": y(lambda v: [math.nan] + v[1:]),
        "y_inf": y(lambda v: [math.inf] + v[1:]),
        "y_bool": y(lambda v: [True] + v[1:]),
        "y_string": y(lambda v: ["1"] + v[1:]),
        "y_huge": y(lambda v: [2**80] + v[1:]),
        "y_none": y(lambda v: None),
        "leaves_missing": lambda a, key: a[key].pop(),
        "leaf_duplicated": lambda a, key: a[key].__setitem__(-1, copy.deepcopy(a[key][0])),
        "leaf_not_dict": lambda a, key: a[key].__setitem__(0, [1, 2, 3]),
        "index_string": first("index", str),
        "index_bool": first("index", lambda v: True),
        "index_out_of_range": first("index", lambda v: 10**9),
        "values_short": first("values", lambda v: v[:-1]),
        "values_float": first("values", lambda v: [0.5] + v[1:]),
        "values_huge": first("values", lambda v: [-(2**70)] + v[1:]),
        "values_nested": first("values", lambda v: [[x] for x in v]),
        "proof_not_list": first("proof", lambda v: "00" * 32),
        "proof_too_long": first("proof", lambda v: v + ["00" * 32] * 64),
        "proof_bad_hex_length": first("proof", lambda v: ["abc"] + v[1:]),
        "proof_int": first("proof", lambda v: [7] + v[1:]),
    }


MUTATIONS = _mutations()


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_malformed_answer_is_rejected_without_raising(spec, seed, mutation):
    root, challenge, answer = run_job(spec, compute(spec, seed), sample_count=3)
    mutated = MUTATIONS[mutation](answer, leaf_key(spec))
    if mutated is not None and not isinstance(mutated, dict | list | int):
        answer = mutated
    report = answer_verify(spec, seed, root, challenge, answer)
    assert not report.passed
    assert report.reason == "malformed_answer", report


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b'{"y": [NaN], "rows": []}',
        b'{"y": [Infinity], "rows": []}',
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
        b" " * (MAX_ANSWER_BYTES + 1),
    ],
    ids=["empty", "truncated", "list", "nan", "inf", "not_utf8", "deep", "oversized"],
)
def test_malformed_raw_payload_is_rejected_without_raising(seed, raw):
    root, challenge, _ = run_job(MATMUL, compute(MATMUL, seed))
    report = answer_verify(MATMUL, seed, root, challenge, raw)
    assert (report.passed, report.reason) == (False, "malformed_answer")


def test_payload_above_the_per_job_limit_is_rejected_before_parsing(seed):
    root, challenge, answer = run_job(MATMUL, compute(MATMUL, seed))
    body = json.dumps(answer) + " " * 10_000_000
    report = answer_verify(MATMUL, seed, root, challenge, body)
    assert report.reason == "malformed_answer" and "exceeds" in report.detail


@pytest.mark.parametrize("root", [None, 5, "", "AB" * 32, "zz" * 32, "ab" * 31, ["ab" * 32]])
def test_malformed_commitment_is_rejected(seed, root):
    _, challenge, answer = run_job(MATMUL, compute(MATMUL, seed))
    report = answer_verify(MATMUL, seed, root, challenge, answer)
    assert (report.passed, report.reason) == (False, "malformed_commitment")


def test_report_hash_depends_on_outcome_and_inputs(seed):
    root, challenge, answer = run_job(MATMUL, compute(MATMUL, seed))
    good = answer_verify(MATMUL, seed, root, challenge, answer)
    assert good.report_hash == answer_verify(MATMUL, seed, root, challenge, answer).report_hash
    answer["y"][0] += 1
    bad = answer_verify(MATMUL, seed, root, challenge, answer)
    assert bad.report_hash != good.report_hash


# --- challenges and scoring -------------------------------------------------------------------


def test_challenge_has_distinct_indices_and_bounded_r(spec):
    challenge = challenge_create(spec, sample_count=5)
    assert len(set(challenge["indices"])) == len(challenge["indices"]) == 5
    assert json.loads(json.dumps(challenge)) == challenge
    assert max(abs(v) for v in challenge["r"]) <= 2**20


def test_challenge_sample_count_is_capped_by_leaf_count():
    spec = MatmulSpec(5)
    assert sorted(challenge_create(spec, sample_count=32)["indices"]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("bad", [0, -1, 10**6, True, 2.0])
def test_challenge_rejects_bad_sample_count(bad):
    with pytest.raises(ValueError):
        challenge_create(MATMUL, sample_count=bad)


def test_throughput_uses_the_slower_of_server_and_agent_times():
    spec = MatmulSpec(1024)
    assert throughput_flops_per_second(spec, 2.0) == spec.flops / 2.0
    assert throughput_flops_per_second(spec, 2.0, 1.0) == spec.flops / 2.0
    assert throughput_flops_per_second(spec, 2.0, 4.0) == spec.flops / 4.0


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "1", None])
def test_throughput_rejects_bad_times(bad):
    with pytest.raises(ValueError):
        throughput_flops_per_second(MATMUL, bad)
    if bad is not None:
        with pytest.raises(ValueError):
            throughput_flops_per_second(MATMUL, 1.0, bad)


def test_detection_probability_formula():
    assert detection_probability(0.0, 32) == 0.0
    assert detection_probability(1.0, 1) == 1.0
    assert detection_probability(0.1, 32) == pytest.approx(1 - 0.9**32)


def test_mallory_answering_her_own_computed_rows_instead_of_the_challenged_ones_is_caught(seed):
    # Mallory computes 8 of 64 rows and commits to them (zeros elsewhere); y costs her only
    # O(n^2), so Freivalds passes. Her answer holds 8 correct rows with valid proofs, but they
    # are her rows, not the challenged ones: only the index check stands between her and a pass.
    spec = MatmulSpec(64)
    honest = compute(spec, seed)
    computed = list(range(8))
    partial = np.zeros_like(honest)
    partial[computed] = honest[computed]
    root, tree = commitment_create(spec, partial)
    challenge = challenge_create(spec, sample_count=8, rng=random.Random(5))
    assert set(challenge["indices"]) != set(computed)
    answer = challenge_answer(spec, partial, tree, {**challenge, "indices": computed})
    answer["y"] = (honest @ np.array(challenge["r"], dtype=np.int64)).tolist()
    report = answer_verify(spec, seed, root, challenge, answer)
    assert (report.passed, report.reason) == (False, "malformed_answer")
    assert "differ from the challenged" in report.detail


def test_challenges_are_unpredictable_without_a_given_rng():
    # A fixed generator would let a provider compute only the rows it will be asked for.
    spec = MatmulSpec(64)
    drawn = [challenge_create(spec, sample_count=8) for _ in range(5)]
    assert len({tuple(c["indices"]) for c in drawn}) == 5
    assert len({tuple(c["r"]) for c in drawn}) == 5


def test_a_deeply_nested_raw_answer_is_rejected_without_parsing_it(seed):
    root, challenge, _ = run_job(MATMUL, compute(MATMUL, seed))
    nested = b"[" * 20_000 + b"]" * 20_000  # under the size cap, far past the depth cap
    report = answer_verify(MATMUL, seed, root, challenge, nested)
    assert (report.passed, report.reason) == (False, "malformed_answer")
    assert "nested" in report.detail
