"""The chain-sketch verdicts at exact values (mutation testing, issue 14): each rejection's reason
and words, the figures of a pass at hand-computed tolerances, and the report and binding hashes
recomputed here from their documented layout. test_cheats.py checks that every cheat is refused
with its reason; these pin what a changed constant, bound or message would alter."""

import base64
import hashlib
import json
import re

import numpy as np
import pytest

from workers.kernels import SpecError
from workers.kernels.chain import ConvChainSpec, MatmulChainSpec
from workers.kernels.chain_run import chain_compute
from workers.verification.sketch import (
    DEFAULT_SAMPLE_COUNT,
    PROTOCOL,
    REASONS,
    job_binding,
    payload_size_limit,
    sketch_commitment,
    sketch_payload,
    sketch_verify,
)

SEED = "0123456789abcdef" * 4
# 64 rows of n = 64, 4 layers, fp32: sketch width min(4, 40960 // 64) = 4, 1,024 bytes of values.
SPEC = MatmulChainSpec(n=64, layers=4, rows=64)
# chain_sigma("fp32", 64, 4): sqrt(4) * 2^-24 * sqrt(1 / 3 + 2 * 64 / 6).
SIGMA = 5.54889044911422e-07
RMS_TAU_192 = 1.4005593710007824  # 48 sampled units x 4 values
RMS_TAU_256 = 1.3446926311683707  # all 64 units x 4 values


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@pytest.fixture(scope="module")
def honest():
    return chain_compute(SPEC, SEED)


def test_constants_and_reason_codes():
    assert PROTOCOL == "chain-sketch/v1"
    assert DEFAULT_SAMPLE_COUNT == 48
    assert REASONS == (
        "payload_too_large",
        "malformed_payload",
        "job_mismatch",
        "wrong_shape",
        "non_finite",
        "row_mismatch",
        "precision_mismatch",
    )


def test_job_binding_and_payload_follow_their_layout(honest):
    spec_json = b'{"kind":"matmul_chain","layers":4,"n":64,"precision":"fp32","rows":64}'
    assert canonical(SPEC.to_dict()) == spec_json
    digest = hashlib.sha256(
        b"gpu-marketplace/chain-sketch/job\x00" + spec_json + bytes.fromhex(SEED)
    ).hexdigest()
    assert job_binding(SPEC, SEED) == digest[:32]
    payload = sketch_payload(SPEC, SEED, honest)
    assert b" " not in payload  # compact separators
    document = json.loads(payload)
    assert document == {
        "protocol": "chain-sketch/v1",
        "job": digest[:32],
        "shape": [64, 4],
        "y": base64.b64encode(honest.astype("<f4").tobytes()).decode("ascii"),
    }
    assert sketch_commitment(SPEC, SEED) == payload
    # The wire format is little-endian float32 whatever the array handed in.
    assert sketch_payload(SPEC, SEED, honest.astype(np.float64)) == payload
    assert sketch_payload(SPEC, SEED, honest.astype(">f4")) == payload
    # 4 * ceil(1024 / 3) + 512 = 4 * 342 + 512.
    assert payload_size_limit(SPEC) == 1880
    assert len(payload) <= 1880


def test_an_honest_answer_passes_with_figures_at_hand_computed_tolerances(honest):
    payload = sketch_payload(SPEC, SEED, honest)
    report = sketch_verify(SPEC, SEED, payload, verifier_seed=11)
    assert (report.passed, report.reason) == (True, None)
    assert report.detail == "all sampled units within tolerance"
    figures = report.figures
    assert figures["payload_bytes"] == len(payload)
    assert figures["samples"] == 48
    assert figures["sigma"] == pytest.approx(SIGMA, rel=1e-12)
    assert figures["value_tolerance"] == pytest.approx(8 * SIGMA, rel=1e-12)
    assert figures["rms_tolerance"] == pytest.approx(RMS_TAU_192 * SIGMA, rel=1e-9)
    assert figures["gross_units"] == figures["units_over_tolerance"] == 0
    assert 0 <= figures["max_error"] <= 8 * SIGMA
    assert figures["rms_over_tolerance"] == pytest.approx(
        figures["rms_error"] / figures["rms_tolerance"], rel=1e-12
    )
    assert figures["rms_over_tolerance"] < 1
    # More samples asked for than there are units: every unit is checked once.
    everything = sketch_verify(SPEC, SEED, payload, sample_count=500, verifier_seed=11)
    assert everything.passed and everything.figures["samples"] == 64
    assert everything.figures["rms_tolerance"] == pytest.approx(RMS_TAU_256 * SIGMA, rel=1e-9)
    one = sketch_verify(SPEC, SEED, payload, sample_count=1, verifier_seed=11)
    assert one.passed and one.figures["samples"] == 1


def test_the_report_hash_covers_spec_seed_payload_units_and_outcome(honest):
    payload = sketch_payload(SPEC, SEED, honest)
    report = sketch_verify(SPEC, SEED, payload, sample_count=64, verifier_seed=5)
    # Every unit sampled: the units are 0..63 whatever the draw.
    expected = hashlib.sha256(
        canonical(
            {
                "protocol": "chain-sketch/v1",
                "spec": SPEC.to_dict(),
                "seed": SEED,
                "payload_sha256": hashlib.sha256(payload).hexdigest(),
                "units": list(range(64)),
                "outcome": {"passed": True, "reason": None, "figures": report.figures},
            }
        )
    ).hexdigest()
    assert report.report_hash == expected
    assert report.to_dict() == {
        "passed": True,
        "reason": None,
        "detail": "all sampled units within tolerance",
        "figures": report.figures,
        "report_hash": expected,
    }


def test_a_refusal_report_and_its_hash():
    payload = b'{"a": NaN}'
    report = sketch_verify(SPEC, SEED, payload)
    assert report.to_dict() == {
        "passed": False,
        "reason": "malformed_payload",
        "detail": "not JSON: non-finite number NaN in JSON",
        "figures": {"payload_bytes": 10},
        "report_hash": hashlib.sha256(
            canonical(
                {
                    "protocol": "chain-sketch/v1",
                    "spec": SPEC.to_dict(),
                    "seed": SEED,
                    "payload_sha256": hashlib.sha256(payload).hexdigest(),
                    "units": [],
                    "outcome": {
                        "passed": False,
                        "reason": "malformed_payload",
                        "figures": {"payload_bytes": 10},
                    },
                }
            )
        ).hexdigest(),
    }
    # Parsed JSON is hashed in its canonical form; a str payload as its UTF-8 bytes.
    parsed = sketch_verify(SPEC, SEED, {"protocol": 1})
    assert parsed.figures == {"payload_bytes": len(b'{"protocol":1}')}
    assert sketch_verify(SPEC, SEED, "[]").figures == {"payload_bytes": 2}
    # Canonical JSON is ASCII: a non-ASCII character is hashed as its \u escape (6 bytes).
    accented = sketch_verify(SPEC, SEED, {"protocol": "\u00e9"})
    assert (
        accented.figures
        == {"payload_bytes": len(b'{"protocol":"\\u00e9"}')}
        == {"payload_bytes": 21}
    )


def _document(honest, **changes):
    document = json.loads(sketch_payload(SPEC, SEED, honest))
    return json.dumps({**document, **changes})


def test_each_refusal_has_its_reason_and_words(honest):
    # 1,024 bytes = 341 groups of 3 and one byte: its last 4 characters ("xx==") hold 1 byte.
    y = base64.b64encode(honest.astype("<f4").tobytes()).decode()
    cases = [
        (b"x" * 1881, "payload_too_large", "1881 bytes exceed 1880"),
        (b"{", "malformed_payload", None),
        (b"[]", "malformed_payload", None),
        (
            _document(honest, protocol="chain-sketch/v2"),
            "malformed_payload",
            "protocol must be 'chain-sketch/v1'",
        ),
        (
            _document(honest, job="0" * 32),
            "job_mismatch",
            "payload answers another job (spec or seed differ)",
        ),
        (_document(honest, shape=[64, 3]), "wrong_shape", "shape must be [64, 4]"),
        (
            _document(honest, y=7),
            "malformed_payload",
            "y must be a base64 string of the job's size",
        ),
        (_document(honest, y=y[:-4]), "wrong_shape", "y has 1023 bytes, expected 1024"),
        (
            _document(honest, y=y[:-4] + "AAAAAAAA"),
            "wrong_shape",
            "y has 1029 bytes, expected 1024",
        ),
    ]
    for payload, reason, detail in cases:
        report = sketch_verify(SPEC, SEED, payload)
        assert (report.passed, report.reason) == (False, reason), (payload[:60], report)
        if detail is not None:
            assert report.detail == detail, report.detail
    keys = "payload must have exactly ['job', 'protocol', 'shape', 'y']"
    assert sketch_verify(SPEC, SEED, b"[]").detail == keys
    extra = sketch_verify(SPEC, SEED, _document(honest, extra=1))
    assert (extra.reason, extra.detail) == ("malformed_payload", keys)
    assert sketch_verify(SPEC, SEED, b"{").detail.startswith("not JSON: ")
    bad64 = sketch_verify(SPEC, SEED, _document(honest, y=y[:-4] + "AA!A"))
    assert bad64.reason == "malformed_payload"
    assert bad64.detail.startswith("y is not base64: ")


def test_a_payload_exactly_at_the_size_limit_is_parsed():
    report = sketch_verify(SPEC, SEED, b" " * 1880)
    assert report.reason == "malformed_payload"
    assert report.detail.startswith("not JSON: ")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_value_is_named(honest, value):
    y = honest.copy()
    y[63, 3] = value
    report = sketch_verify(SPEC, SEED, sketch_payload(SPEC, SEED, y))
    assert (report.reason, report.detail) == ("non_finite", "y contains NaN or infinity")


def test_one_unit_not_computed_is_named_with_the_count(honest):
    y = honest.copy()
    y[5] = 0.0
    report = sketch_verify(SPEC, SEED, sketch_payload(SPEC, SEED, y), sample_count=64)
    assert report.reason == "row_mismatch"
    assert re.fullmatch(
        r"1 of 64 sampled units were not computed \(unit 5 off by [0-9.e+-]+ of its scale\)",
        report.detail,
    ), report.detail
    assert report.figures["gross_units"] == 1
    assert report.figures["units_over_tolerance"] == 1
    assert report.figures["max_error"] > 0.25


def test_a_value_just_past_its_tolerance_is_a_precision_mismatch(honest):
    # One value moved by 12 sigma of its scale (over the 8 sigma per-value bound, far under the
    # 25% that means not computed); the rest honest. Found on every unit sampled.
    report = sketch_verify(
        SPEC, SEED, sketch_payload(SPEC, SEED, honest), sample_count=64, verifier_seed=1
    )
    y = honest.astype(np.float64)
    unit = 9
    scale = report.figures["max_error"]  # only to show the honest error is small
    assert scale < 8 * SIGMA
    reference = y[unit, 0]
    y[unit, 0] = reference + 12 * SIGMA * _value_scale(honest, unit)
    moved = sketch_verify(
        SPEC, SEED, sketch_payload(SPEC, SEED, y.astype(np.float32)), sample_count=64
    )
    assert moved.reason == "precision_mismatch"
    assert moved.figures["gross_units"] == 0
    assert moved.figures["units_over_tolerance"] == 1
    assert re.fullmatch(
        r"error rms [0-9.e+-]+ \(tolerance [0-9.e+-]+\), max [0-9.e+-]+ "
        r"\(tolerance [0-9.e+-]+\): less accurate than honest fp32",
        moved.detail,
    ), moved.detail
    tolerances = re.findall(r"tolerance ([0-9.e+-]+)\)", moved.detail)
    assert tolerances == [
        f"{moved.figures['rms_tolerance']:.3g}",
        f"{moved.figures['value_tolerance']:.3g}",
    ]


def _value_scale(honest, unit):
    """The scale the verifier divides a value's error by: |x_L| / sqrt(n) * |v_j|, with |x_L|
    floored at half the rms over units (all 64 sampled here); |x_L| is taken from the honest
    run's sketch only through its ratio, so recompute it from the spec's own reference."""
    reference = SPEC.reference_units(SEED, np.arange(64)).astype(np.float64)
    norms = np.linalg.norm(reference, axis=1)
    typical = np.sqrt(np.mean(norms**2))
    sketch = SPEC.sketch_matrix(SEED).astype(np.float64)
    return max(norms[unit], 0.5 * typical) / 8.0 * np.linalg.norm(sketch[:, 0])


@pytest.mark.parametrize("count", [0, -1, True, 2.0, "48"])
def test_sample_count_must_be_a_positive_integer(honest, count):
    with pytest.raises(ValueError) as refused:
        sketch_verify(SPEC, SEED, sketch_payload(SPEC, SEED, honest), sample_count=count)
    assert str(refused.value) == "sample_count must be a positive integer"


def test_a_bad_seed_is_the_servers_error_not_a_verdict(honest):
    with pytest.raises(SpecError):
        sketch_verify(SPEC, "not-hex", sketch_payload(SPEC, SEED, honest))


def test_a_unit_with_tiny_activations_is_judged_on_half_the_rms_scale():
    # An 11 x 11 kernel on an 11 x 11 image: a corner pixel sees 6 x 6 of the 121 taps per
    # layer, so its activations are small (a third of the rms over units here). The verifier
    # floors such a unit's scale at half the rms over the sampled units:
    #     error / (max(|x_L[u]|, 0.5 * rms_u |x_L[u]|) / sqrt(C) * |v_j|)
    # A value off by 0.1 of that floored scale must read as an error of 0.1 (not 0.1 times
    # the floor over the unit's own norm), and its 0.1 is a precision mismatch, not a skip.
    spec = ConvChainSpec(batch=1, channels=8, height=11, width=11, kernel_size=11, layers=2)
    units = np.arange(spec.units)
    reference = spec.reference_units(SEED, units).astype(np.float64)
    norms = np.linalg.norm(reference, axis=1)
    typical = np.sqrt(np.mean(norms**2))
    unit = int(np.argmin(norms))
    assert norms[unit] < 0.4 * typical  # the floor applies to this unit
    column = np.linalg.norm(spec.sketch_matrix(SEED).astype(np.float64)[:, 0])
    floored_scale = 0.5 * typical / np.sqrt(8) * column
    assert floored_scale < 1  # below 1: a scale is used as it is, whatever its size
    y = chain_compute(spec, SEED).astype(np.float64)
    y[unit, 0] += 0.1 * floored_scale
    report = sketch_verify(
        spec, SEED, sketch_payload(spec, SEED, y.astype(np.float32)), sample_count=spec.units
    )
    assert report.reason == "precision_mismatch"
    assert report.figures["max_error"] == pytest.approx(0.1, abs=1e-4)
    assert report.figures["units_over_tolerance"] == 1


def test_an_already_parsed_payload_with_y_exactly_at_the_size_limit_is_decoded(honest):
    # Parsed JSON skips the byte-size check; y's own bound is the same 1,880: 1,880 base64
    # characters (1,410 bytes) are decoded and refused for their size, 1,884 are not decoded.
    document = json.loads(sketch_payload(SPEC, SEED, honest))
    at_limit = sketch_verify(SPEC, SEED, {**document, "y": "A" * 1880})
    assert (at_limit.reason, at_limit.detail) == ("wrong_shape", "y has 1410 bytes, expected 1024")
    over = sketch_verify(SPEC, SEED, {**document, "y": "A" * 1884})
    assert (over.reason, over.detail) == (
        "malformed_payload",
        "y must be a base64 string of the job's size",
    )


def test_a_stray_character_in_y_is_malformed_not_skipped(honest):
    # A lenient decoder would drop the '!' and decode the honest values around it.
    document = json.loads(sketch_payload(SPEC, SEED, honest))
    stray = document["y"][:100] + "!" + document["y"][100:]
    report = sketch_verify(SPEC, SEED, {**document, "y": stray})
    assert report.reason == "malformed_payload"
    assert report.detail.startswith("y is not base64: ")
