"""Tests written to kill mutation-testing survivors in the verification scope (issue 14).

Each pins a behaviour that no other test of the scope checked: what a published report hash is
the SHA-256 of, the report's JSON form, the conv2d input tensors, the GPU (CuPy) generator's
elements, and the messages that tell a caller which argument was wrong. Expected values are
spelled out by hand here, not taken from the code under test.
"""

import hashlib
import json
import sys
import types

import numpy as np
import pytest

from workers.kernels import Conv2dSpec, MatmulSpec, compute
from workers.kernels import generator as generator_module
from workers.kernels.generator import (
    conv_inputs,
    generate,
    generate_cupy,
    generate_into,
    generate_torch,
    tensor_key,
)
from workers.verification import (
    answer_verify,
    challenge_answer,
    challenge_create,
    commitment_create,
)
from workers.verification.merkle import build_tree, build_tree_from_array
from workers.verification.protocol import (
    VerificationReport,
    document_hash,
    report_hash,
    throughput_flops_per_second,
)

SEED = "ab" * 32
MATMUL = MatmulSpec(16, "fp32")


def test_report_hash_is_the_sha256_of_the_documents_canonical_json():
    challenge = {"indices": [3, 1]}
    outcome = {"passed": True, "reason": None}
    root = "0f" * 32
    # Sorted keys, no spaces, ASCII only: the bytes anyone recomputing the hash would write.
    canonical = (
        '{"challenge":{"indices":[3,1]},'
        '"outcome":{"passed":true,"reason":null},'
        f'"root":"{root}",'
        f'"seed":"{SEED}",'
        '"spec":{"kind":"matmul","n":16,"precision":"fp32"},'
        '"version":1}'
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert report_hash(MATMUL, SEED, root, challenge, outcome) == expected


def test_report_hash_of_an_invalid_root_hashes_a_null_root():
    canonical = (
        '{"challenge":{},"outcome":{},"root":null,'
        f'"seed":"{SEED}",'
        '"spec":{"kind":"matmul","n":16,"precision":"fp32"},"version":1}'
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert report_hash(MATMUL, SEED, "not a root", {}, {}) == expected


def test_verification_report_to_dict_names_every_published_field():
    checks = {"proofs_verified": 4}
    report = VerificationReport(
        passed=False, reason="row_mismatch", detail="row 3", checks=checks, report_hash="cd" * 32
    )
    as_dict = report.to_dict()
    assert as_dict == {
        "passed": False,
        "reason": "row_mismatch",
        "detail": "row 3",
        "checks": {"proofs_verified": 4},
        "report_hash": "cd" * 32,
    }
    # A copy: the caller editing the dict leaves the frozen report as it was.
    as_dict["checks"]["proofs_verified"] = 0
    assert report.checks == {"proofs_verified": 4}
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_conv_inputs_are_the_x_and_w_streams_in_nchw_and_oihw_shape():
    spec = Conv2dSpec(2, 3, 4, 5, 6, 3, stride=1, padding=1)
    x, w = conv_inputs(spec, SEED)
    # X is (batch, in_channels, height, width), W is (out_channels, in_channels, k, k).
    assert x.shape == (2, 3, 5, 6)
    assert w.shape == (4, 3, 3, 3)
    assert x.dtype == np.int8 and w.dtype == np.int8
    # Row-major: element (b, c, h, w) of X is element ((b*3 + c)*5 + h)*6 + w of stream "X".
    assert x[1, 2, 4, 5] == generate(SEED, "X", 1, start=((1 * 3 + 2) * 5 + 4) * 6 + 5)[0]
    assert w[3, 1, 2, 0] == generate(SEED, "W", 1, start=((3 * 3 + 1) * 3 + 2) * 3 + 0)[0]
    np.testing.assert_array_equal(x.reshape(-1), generate(SEED, "X", 2 * 3 * 5 * 6))
    np.testing.assert_array_equal(w.reshape(-1), generate(SEED, "W", 4 * 3 * 3 * 3))
    assert not np.array_equal(x.reshape(-1)[:64], w.reshape(-1)[:64])


def test_the_cupy_generator_writes_the_same_elements_as_numpy(monkeypatch):
    # No GPU here: a module that is NumPy under another identity stands in for CuPy. It takes
    # the non-NumPy branch of the lookup table (xp.asarray), as CuPy does.
    fake_cupy = types.ModuleType("cupy")
    fake_cupy.__dict__.update({k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    for dtype in (np.int8, np.float32):
        got = generate_cupy(SEED, "A", 1000, dtype=dtype)
        assert got.dtype == dtype
        assert got.shape == (1000,)
        np.testing.assert_array_equal(got, generate(SEED, "A", 1000, dtype=dtype))
    assert not np.array_equal(generate_cupy(SEED, "B", 64, dtype=np.int8), generate(SEED, "A", 64))
    assert generator_module._LUT4.shape == (256, 4)


def test_an_empty_merkle_tree_is_refused_with_its_message():
    with pytest.raises(ValueError, match="^a Merkle tree needs at least one leaf$"):
        build_tree([])


def test_a_proof_of_a_leaf_outside_the_tree_names_the_range():
    tree = build_tree([b"a", b"b", b"c"])
    with pytest.raises(IndexError, match=r"^leaf 3 out of range 0\.\.2$"):
        tree.proof(3)


def test_a_tree_from_an_array_without_rows_is_refused_with_its_message():
    with pytest.raises(ValueError, match="^a Merkle tree needs at least one leaf$"):
        build_tree_from_array(np.zeros((0, 4), dtype=np.int64))


def test_a_tree_from_an_array_that_is_not_2d_is_refused_with_its_message():
    with pytest.raises(ValueError, match="^expected a 2-D array: one leaf per row$"):
        build_tree_from_array(np.zeros(4, dtype=np.int64))


def test_a_non_finite_json_constant_is_named_in_the_failure_detail():
    output = compute(MATMUL, SEED)
    root, _ = commitment_create(MATMUL, output)
    challenge = challenge_create(MATMUL, sample_count=4)
    report = answer_verify(MATMUL, SEED, root, challenge, b'{"y": [NaN], "rows": []}')
    assert (report.passed, report.reason) == (False, "malformed_answer")
    assert report.detail == "non-finite number NaN in JSON"


@pytest.mark.parametrize(
    "server, agent, message",
    [
        ("1", None, "^server_seconds must be a number of seconds$"),
        (True, None, "^server_seconds must be a number of seconds$"),
        (0.0, None, "^server_seconds must be a positive finite number of seconds, got 0.0$"),
        (1.0, "2", "^agent_seconds must be a number of seconds$"),
        (1.0, -2, "^agent_seconds must be a positive finite number of seconds, got -2$"),
    ],
)
def test_a_bad_time_names_the_argument_that_was_wrong(server, agent, message):
    with pytest.raises(ValueError, match=message):
        throughput_flops_per_second(MATMUL, server, agent)


def test_a_conv_answer_failing_the_projection_says_which_identity_failed():
    spec = Conv2dSpec(2, 3, 4, 9, 8, 3, stride=1, padding=1)
    output = compute(spec, SEED)
    root, tree = commitment_create(spec, output)
    challenge = challenge_create(spec, sample_count=2)
    answer = challenge_answer(spec, output, tree, challenge)
    answer["y"][-1] += 1
    report = answer_verify(spec, SEED, root, challenge, answer)
    assert (report.reason, report.detail) == (
        "projection_failed",
        "y != conv(X, sum_o r_o W[o])",
    )


@pytest.mark.parametrize("dtype_name", ["int8", "float16", "int32"])
def test_the_torch_generator_returns_the_dtype_asked_for(dtype_name):
    import torch

    dtype = getattr(torch, dtype_name)
    got = generate_torch(SEED, "A", 100, device="cpu", dtype=dtype)
    assert got.dtype == dtype
    assert got.shape == (100,)
    np.testing.assert_array_equal(got.to(torch.int64).numpy(), generate(SEED, "A", 100))


def test_the_tensor_key_is_the_first_8_digest_bytes_little_endian():
    digest = hashlib.sha256(
        b"gpu-marketplace/kernels/v2\x00" + bytes.fromhex(SEED) + b"\x00" + b"A"
    ).digest()
    assert tensor_key(SEED, "A") == int.from_bytes(digest[:8], "little")
    assert tensor_key(SEED, "A") != int.from_bytes(digest[:8], "big")


def test_generate_into_starts_at_element_0_unless_told():
    into = generate_into(SEED, "A", np.empty(8, dtype=np.int8))
    np.testing.assert_array_equal(into, generate(SEED, "A", 8))
    np.testing.assert_array_equal(
        generate_into(SEED, "A", np.empty(8, dtype=np.int8), start=1), generate(SEED, "A", 9)[1:]
    )


@pytest.mark.parametrize("start", [1, 2, 3, 5, 33])
def test_a_run_of_whole_bytes_starting_inside_a_byte_is_read_from_the_right_values(start):
    # 4 values per byte: a start that is not a multiple of 4 with a count that is must not
    # take the whole-byte shortcut.
    np.testing.assert_array_equal(
        generate(SEED, "A", 8, start=start), generate(SEED, "A", start + 8)[start:]
    )


def test_document_hashes_escape_non_ascii_text():
    expected = hashlib.sha256(b'{"detail":"caf\\u00e9"}').hexdigest()
    assert document_hash({"detail": "caf\u00e9"}) == expected


@pytest.mark.parametrize(
    "indices", [[0, 48], [0, -1], [0, True], [0, 1.0]], ids=["past", "negative", "bool", "float"]
)
def test_a_challenge_with_an_index_outside_the_leaves_is_refused(indices):
    spec = MatmulSpec(48, "fp32")
    output = compute(spec, SEED)
    _, tree = commitment_create(spec, output)
    challenge = {"r": [1] * spec.r_length, "indices": indices}
    with pytest.raises(ValueError, match="^challenge indices must be distinct leaf indices$"):
        challenge_answer(spec, output, tree, challenge)


def test_a_leaf_index_that_is_not_an_integer_is_named():
    output = compute(MATMUL, SEED)
    root, tree = commitment_create(MATMUL, output)
    challenge = challenge_create(MATMUL, sample_count=2)
    answer = challenge_answer(MATMUL, output, tree, challenge)
    answer["rows"][0]["index"] = str(answer["rows"][0]["index"])
    report = answer_verify(MATMUL, SEED, root, challenge, answer)
    assert (report.reason, report.detail) == ("malformed_answer", "leaf index must be an integer")


def test_y_inconsistent_with_a_sampled_row_names_the_row():
    output = compute(MATMUL, SEED)
    root, tree = commitment_create(MATMUL, output)
    challenge = challenge_create(MATMUL, sample_count=4)
    answer = challenge_answer(MATMUL, output, tree, challenge)
    i = challenge["indices"][0]
    answer["y"][i] += 1
    report = answer_verify(MATMUL, SEED, root, challenge, answer)
    assert (report.reason, report.detail) == (
        "y_inconsistent",
        f"y[{i}] differs from committed row {i} . r",
    )


# --- second sample (seed 20261201) ------------------------------------------------------------


def test_the_torch_generator_computes_every_tensor_on_the_device_asked_for():
    """On PyTorch's `meta` device (shapes, no data): one tensor left on the host makes torch
    refuse the mix, as it does on a GPU, so this runs the GPU's device handling on any
    machine."""
    import torch

    got = generate_torch(SEED, "A", 1_000, device="meta", dtype=torch.int8)
    assert (got.device.type, got.shape, got.dtype) == ("meta", (1_000,), torch.int8)


def test_challenge_weights_at_the_bound_are_accepted_and_beyond_it_refused():
    from workers.verification.protocol import R_BOUND

    output = compute(MATMUL, SEED)
    _, tree = commitment_create(MATMUL, output)
    assert R_BOUND == 2**20
    edge = [2**20, -(2**20)] + [0] * (MATMUL.r_length - 2)
    answer = challenge_answer(MATMUL, output, tree, {"r": edge, "indices": [0]})
    assert answer["y"][0] == int(output[0, 0]) * 2**20 - int(output[0, 1]) * 2**20
    for beyond in (2**20 + 1, -(2**20) - 1):
        challenge = {"r": [beyond] + [0] * (MATMUL.r_length - 1), "indices": [0]}
        with pytest.raises(ValueError, match=r"^challenge r entries must be ints in -1048576"):
            challenge_answer(MATMUL, output, tree, challenge)


def test_an_answers_integer_vector_is_bounded_inclusively_and_names_a_non_integer():
    from workers.verification.protocol import MalformedAnswer, _int_vector

    np.testing.assert_array_equal(_int_vector([-5, 5, 0], 3, 5, "y"), [-5, 5, 0])
    for beyond in ([-6, 0, 0], [0, 6, 0]):
        with pytest.raises(MalformedAnswer, match="^y has a value beyond the possible bound 5$"):
            _int_vector(beyond, 3, 5, "y")
    with pytest.raises(MalformedAnswer, match="^leaf values must contain only integers$"):
        _int_vector([1, 2.0, 3], 3, 5, "leaf values")


@pytest.mark.parametrize("root", ["AB" * 32, "ab" * 31, None], ids=["upper", "short", "null"])
def test_a_malformed_root_is_named_in_the_failure_detail(root):
    output = compute(MATMUL, SEED)
    _, tree = commitment_create(MATMUL, output)
    challenge = challenge_create(MATMUL, sample_count=2)
    answer = challenge_answer(MATMUL, output, tree, challenge)
    report = answer_verify(MATMUL, SEED, root, challenge, answer)
    assert (report.passed, report.reason, report.detail) == (
        False,
        "malformed_commitment",
        "root must be 64 lowercase hex characters",
    )


CONV = Conv2dSpec(2, 3, 4, 9, 8, 3, stride=1, padding=1)


def _honest_report(spec, challenge: dict):
    """The verifier's report on an honest machine's answer to `challenge` (job seed SEED)."""
    output = compute(spec, SEED)
    root, tree = commitment_create(spec, output)
    return answer_verify(
        spec, SEED, root, challenge, challenge_answer(spec, output, tree, challenge)
    )


def test_a_passing_report_counts_exactly_the_checks_its_kind_of_job_runs():
    # matmul, 4 rows sampled: 4 proofs, 4 rows recomputed, y checked against each, one
    # Freivalds check; none of conv2d's checks.
    report = _honest_report(MATMUL, challenge_create(MATMUL, sample_count=4))
    assert report.passed
    assert report.checks == {
        "proofs_verified": 4,
        "rows_recomputed": 4,
        "planes_recomputed": 0,
        "y_rows_consistent": 4,
        "y_images_consistent": 0,
        "freivalds": 1,
        "projection": 0,
    }
    # conv2d, planes 0 and 5 of 2 images x 4 output channels (no image has all 4 sampled):
    # 2 proofs, 2 planes recomputed, one projection check; none of matmul's.
    report = _honest_report(
        CONV, {"r": challenge_create(CONV, sample_count=2)["r"], "indices": [0, 5]}
    )
    assert report.passed
    assert report.checks == {
        "proofs_verified": 2,
        "rows_recomputed": 0,
        "planes_recomputed": 2,
        "y_rows_consistent": 0,
        "y_images_consistent": 0,
        "freivalds": 0,
        "projection": 1,
    }


def test_the_verifiers_own_draws_follow_the_verifier_seed_so_a_verdict_can_be_replayed():
    """A conv answer whose y is wrong for one image that holds no sampled plane: it is caught
    only when the verifier's own draw (4 of 16 images) includes that image. With the verifier's
    seed given, each verdict is the same every time it is replayed."""
    spec = Conv2dSpec(16, 2, 2, 5, 5, 3, stride=1, padding=1)
    output = compute(spec, SEED)
    root, tree = commitment_create(spec, output)
    challenge = {"r": challenge_create(spec, sample_count=1)["r"], "indices": [0]}  # image 0
    answer = challenge_answer(spec, output, tree, challenge)
    answer["y"][7 * 25] += 1  # image 7's first output pixel (5 x 5 pixels per image)

    def verdicts():
        return [
            answer_verify(spec, SEED, root, challenge, answer, verifier_seed=s).reason
            for s in range(40)
        ]

    first = verdicts()
    assert set(first) == {None, "projection_failed"}  # caught by some draws, not all
    assert verdicts() == first


@pytest.mark.parametrize("k", [True, 1.5, "3", -1])
def test_the_detection_probability_takes_only_a_non_negative_integer_sample_count(k):
    from workers.verification.protocol import detection_probability

    with pytest.raises(ValueError, match="^k must be a non-negative integer$"):
        detection_probability(0.5, k)


# --- whole functions of the second sample's survivors --------------------------------------


def test_a_passing_report_publishes_the_document_its_hash_is_of():
    output = compute(MATMUL, SEED)
    root, tree = commitment_create(MATMUL, output)
    challenge = {"r": [3] * 16, "indices": [5, 2]}
    report = answer_verify(
        MATMUL, SEED, root, challenge, challenge_answer(MATMUL, output, tree, challenge)
    )
    assert (report.passed, report.reason, report.detail) == (True, None, "all checks passed")
    checks = {
        "proofs_verified": 2,
        "rows_recomputed": 2,
        "planes_recomputed": 0,
        "y_rows_consistent": 2,
        "y_images_consistent": 0,
        "freivalds": 1,
        "projection": 0,
    }
    assert report.document == {
        "version": 1,
        "spec": {"kind": "matmul", "n": 16, "precision": "fp32"},
        "seed": SEED,
        "root": root,
        "challenge": {"r": [3] * 16, "indices": [5, 2]},
        "outcome": {"passed": True, "reason": None, "checks": checks},
    }
    canonical = json.dumps(report.document, sort_keys=True, separators=(",", ":"))
    assert report.report_hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_proof_that_does_not_verify_names_its_leaf():
    output = compute(MATMUL, SEED)
    root, tree = commitment_create(MATMUL, output)
    challenge = {"r": [1] * 16, "indices": [6, 9]}
    answer = challenge_answer(MATMUL, output, tree, challenge)
    answer["rows"][1]["proof"] = answer["rows"][0]["proof"]  # leaf 9 with leaf 6's proof
    report = answer_verify(MATMUL, SEED, root, challenge, answer)
    assert (report.reason, report.detail) == (
        "merkle_proof_invalid",
        "proof for leaf 9 does not verify",
    )


@pytest.mark.parametrize(
    "challenge, message",
    [
        (["r", "indices"], "^challenge must be \\{'r': \\[...\\], 'indices': \\[...\\]\\}$"),
        ({"r": [1] * 16}, "^challenge must be \\{'r': \\[...\\], 'indices': \\[...\\]\\}$"),
        ({"r": tuple([1] * 16), "indices": [0]}, "^challenge r must have 16 entries$"),
        ({"r": [1] * 15, "indices": [0]}, "^challenge r must have 16 entries$"),
        ({"r": [1] * 16, "indices": []}, "^challenge indices must be distinct leaf indices$"),
        ({"r": [1] * 16, "indices": (0, 1)}, "^challenge indices must be distinct leaf indices$"),
        ({"r": [1] * 16, "indices": [0, 0]}, "^challenge indices must be distinct leaf indices$"),
    ],
    ids=["list", "no-indices", "r-tuple", "r-short", "no-index", "indices-tuple", "repeated"],
)
def test_a_malformed_challenge_is_refused_with_what_is_wrong(challenge, message):
    output = compute(MATMUL, SEED)
    _, tree = commitment_create(MATMUL, output)
    with pytest.raises(ValueError, match=message):
        challenge_answer(MATMUL, output, tree, challenge)


def test_an_answer_vector_of_the_wrong_length_names_the_length():
    from workers.verification.protocol import MalformedAnswer, _int_vector

    with pytest.raises(MalformedAnswer, match="^y must be a list of 3 integers$"):
        _int_vector([1, 2], 3, 5, "y")
    with pytest.raises(MalformedAnswer, match="^y must be a list of 3 integers$"):
        _int_vector((1, 2, 3), 3, 5, "y")


@pytest.mark.parametrize("fraction", [-0.01, 1.01, 2.0])
def test_the_detection_probability_takes_a_fraction_between_0_and_1(fraction):
    from workers.verification.protocol import detection_probability

    with pytest.raises(ValueError, match=r"^skipped_fraction must be in \[0, 1\]$"):
        detection_probability(fraction, 4)


def test_the_detection_probability_of_no_samples_is_0_and_of_a_whole_cheat_is_1():
    from workers.verification.protocol import detection_probability

    assert detection_probability(0.5, 0) == 0.0
    assert detection_probability(1.0, 1) == 1.0
    assert detection_probability(0.5, 3) == 0.875  # 1 - 0.5**3


def test_the_torch_generator_refuses_a_big_endian_machine_and_says_why(monkeypatch):
    import torch

    monkeypatch.setattr(sys, "byteorder", "big")
    with pytest.raises(
        RuntimeError, match="^the torch generator reads int64 words as little-endian bytes$"
    ):
        generate_torch(SEED, "A", 8, device="cpu", dtype=torch.int8)


# --- third sample (seed 20261202) ---------------------------------------------------------------


def test_a_conv_image_with_every_plane_sampled_ties_y_to_the_commitment():
    # Planes 0-3 are all of image 0's 4 output channels: y[0] is checked against them.
    report = _honest_report(
        CONV, {"r": challenge_create(CONV, sample_count=4)["r"], "indices": [0, 1, 2, 3]}
    )
    assert report.passed
    assert report.checks == {
        "proofs_verified": 4,
        "rows_recomputed": 0,
        "planes_recomputed": 4,
        "y_rows_consistent": 0,
        "y_images_consistent": 1,
        "freivalds": 0,
        "projection": 1,
    }


def test_the_answer_size_limit_is_what_an_honest_answer_can_take():
    from workers.verification.protocol import answer_size_limit

    # n = 16: y has 16 integers, each row 16, each proof at most 4 siblings (16 leaves).
    # 20 characters an integer: y 320; a row 16 x 20 + 4 x 70 + 100 = 700; 2 rows 1,400;
    # plus 1,024 for the JSON around them: 2,744 bytes.
    assert answer_size_limit(MATMUL, {"indices": [0, 1]}) == 2_744
