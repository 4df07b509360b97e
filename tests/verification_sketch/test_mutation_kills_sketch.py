"""Tests written to kill mutation-testing survivors in the sketch scope (issue 14): the int8
elements read at arbitrary indices, the exact (grouped) integer convolution, and what a sketch
report's hash is the SHA-256 of. Expected values come from plain int64 / hashlib arithmetic
written here, not from the code under test."""

import hashlib

import numpy as np
import pytest

from workers.kernels.chain import ConvChainSpec, MatmulChainSpec, exact_conv_valid_np
from workers.kernels.floatgen import generate_ints, generate_ints_at
from workers.verification.sketch import report_hash

SEED = "0123456789abcdef" * 4


def test_ints_read_at_indices_are_the_streams_elements_there():
    stream = generate_ints(SEED, "X", 64)
    # Even and odd indices (the low and high half of one 64-bit word), out of order, repeated.
    indices = np.array([0, 1, 2, 3, 63, 31, 30, 5, 5], dtype=np.int64)
    got = generate_ints_at(SEED, "X", indices)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, stream[indices])
    # Far into the stream, and in a 2-d shape that is kept.
    far = np.array([[1_000_000_001, 1_000_000_000], [7, 8]], dtype=np.int64)
    got = generate_ints_at(SEED, "X", far)
    assert got.shape == (2, 2)
    assert got[0, 0] == generate_ints(SEED, "X", 1, start=1_000_000_001)[0]
    assert got[0, 1] == generate_ints(SEED, "X", 1, start=1_000_000_000)[0]
    np.testing.assert_array_equal(got[1], stream[[7, 8]])
    # Another tensor name is another stream.
    assert not np.array_equal(generate_ints_at(SEED, "W", indices[:8]), stream[indices[:8]])


def _conv_int64(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Valid cross-correlation in exact int64, one output element at a time."""
    count, _, height, width = x.shape
    out_channels, _, k, _ = w.shape
    out = np.zeros((count, out_channels, height - k + 1, width - k + 1), dtype=np.int64)
    for n in range(count):
        for o in range(out_channels):
            for i in range(height - k + 1):
                for j in range(width - k + 1):
                    window = x[n, :, i : i + k, j : j + k].astype(np.int64)
                    out[n, o, i, j] = int((window * w[o].astype(np.int64)).sum())
    return out


@pytest.mark.parametrize("channels", [250, 226, 113, 114])
def test_the_exact_conv_is_exact_past_what_one_float32_sum_holds(channels):
    # k = 3: a group holds 1024 // 9 = 113 channels (1,017 terms of at most 127 x 127 = 16,129:
    # 16,403,193 < 2**24, exact in float32). 250 channels of 127s sum 2,250 x 16,129 =
    # 36,290,250 > 2**24, which float32 cannot hold (a multiple of 4 there); 113 and 114 sit
    # on either side of one group, 226 is exactly two.
    rng = np.random.default_rng(channels)
    x = np.full((2, channels, 4, 5), 127, dtype=np.int8)
    w = np.full((3, channels, 3, 3), 127, dtype=np.int8)
    x[1] = rng.integers(-127, 128, size=x[1].shape, dtype=np.int8)
    w[2] = rng.integers(-127, 128, size=w[2].shape, dtype=np.int8)
    w[1, ::2] = -127
    got = exact_conv_valid_np(x.astype(np.float32), w.astype(np.float32))
    assert got.shape == (2, 3, 2, 3)
    expected = _conv_int64(x, w)
    assert expected[0, 0, 0, 0] == channels * 9 * 16_129
    np.testing.assert_array_equal(got, expected.astype(np.float64))
    if channels > 113:  # more than one group: summed in float64
        assert got.dtype == np.float64
    if channels >= 226:
        assert expected.max() > 2**24


def test_a_sketch_report_hash_is_the_sha256_of_its_canonical_json():
    spec = MatmulChainSpec(n=64, layers=1)
    digest = "ee" * 32
    outcome = {"passed": False, "reason": "row_mismatch"}
    canonical = (
        '{"outcome":{"passed":false,"reason":"row_mismatch"},'
        f'"payload_sha256":"{digest}",'
        '"protocol":"chain-sketch/v1",'
        f'"seed":"{SEED}",'
        '"spec":{"kind":"matmul_chain","layers":1,"n":64,"precision":"fp32","rows":64},'
        '"units":[4,0,9]}'
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert report_hash(spec, SEED, digest, [4, 0, 9], outcome) == expected


def test_a_kernel_of_more_than_512_taps_sums_one_channel_per_group():
    # k = 23: 529 taps, so a group is 1024 // 529 = 1 channel. Two channels of 127 x 127 with
    # one weight 126 sum 1,058 x 16,129 - 127 = 17,064,355: odd and above 2**24, which a
    # float32 sum of both channels at once cannot hold; one channel (8,532,241 at most) can.
    x = np.full((1, 2, 23, 23), 127, dtype=np.int8)
    w = np.full((1, 2, 23, 23), 127, dtype=np.int8)
    w[0, 1, 5, 7] = 126
    got = exact_conv_valid_np(x.astype(np.float32), w.astype(np.float32))
    assert got.shape == (1, 1, 1, 1)
    assert got[0, 0, 0, 0] == 17_064_355


def test_the_int8_conv_reference_at_sampled_pixels_is_the_plain_integer_chain():
    from tests.workers.test_int8_chain import _python_conv_chain

    spec = ConvChainSpec(
        batch=2, channels=8, height=5, width=4, kernel_size=3, layers=2, precision="int8"
    )
    units = np.array([0, 7, 19, 20, 39])
    x_l = spec.reference_units(SEED, units)
    assert x_l.shape == (5, 8)
    # The sketch of a unit is its X_L row times V (channels x sketch width).
    v = generate_ints(SEED, "V", 8 * spec.sketch_width).astype(np.int64)
    sketches = x_l.astype(np.int64) @ v.reshape(8, spec.sketch_width)
    expected = _python_conv_chain(spec, SEED)
    assert sketches.tolist() == [expected[u] for u in units.tolist()]


def test_given_units_outside_the_job_are_dropped_before_checking():
    from workers.kernels.chain_run import chain_compute
    from workers.verification.sketch import sketch_payload, sketch_verify

    spec = MatmulChainSpec(n=64, layers=1, rows=16)
    payload = sketch_payload(spec, SEED, chain_compute(spec, SEED))
    # Units are rows 0..15: 16 (== spec.units) and -1 are not units of this job.
    report = sketch_verify(spec, SEED, payload, units=[3, 16, -1, 15, 3])
    assert (report.passed, report.reason) == (True, None)
    assert report.document["units"] == [3, 15]


# --- second sample (seed 20261201) ------------------------------------------------------------


def test_a_parsed_payload_is_digested_as_its_canonical_json():
    from workers.verification.sketch import payload_digest

    payload = {"values": "AAEC", "version": 2, "kind": "sketch"}
    # Sorted keys, no spaces: the bytes the agent's raw body would have been.
    canonical = b'{"kind":"sketch","values":"AAEC","version":2}'
    assert payload_digest(payload) == hashlib.sha256(canonical).hexdigest()
    assert payload_digest(canonical.decode()) == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize(
    "terms, dtype", [(1_023, np.float32), (1_024, np.float32), (1_025, np.float64)]
)
def test_an_exact_product_of_up_to_1024_terms_is_one_float32_product(terms, dtype):
    """Up to 1,024 terms of int8 x int8 (each |term| <= 127 * 127, the sum < 2**24) fp32 is
    exact, so one sgemm; beyond, chunks summed in float64. The sum is 127 * 127 * terms."""
    from workers.kernels.chain import exact_matmul_np

    x = np.full((2, terms), 127, dtype=np.float32)
    b = np.full((terms, 3), 127, dtype=np.float32)
    got = exact_matmul_np(x, b)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, np.full((2, 3), 16_129 * terms))
