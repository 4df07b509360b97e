"""A dishonest provider (mallory) against the chain-sketch check: every cheat is a rejection with
its reason, and no payload makes the verifier raise."""

import base64
import json

import numpy as np
import pytest

from workers.kernels.chain import ConvChainSpec, MatmulChainSpec
from workers.kernels.chain_run import chain_compute
from workers.verification.sketch import (
    DEFAULT_SAMPLE_COUNT,
    REASONS,
    job_binding,
    payload_size_limit,
    sketch_payload,
    sketch_verify,
)

from .laundering import laundered_sketch

MATMUL = MatmulChainSpec(n=128, layers=3, rows=256)
CONV = ConvChainSpec(batch=2, channels=8, height=12, width=12, kernel_size=3, layers=2)


@pytest.fixture(params=["matmul", "conv"])
def spec(request):
    return MATMUL if request.param == "matmul" else CONV


def rejected(spec, seed, payload, reason, **kwargs):
    report = sketch_verify(spec, seed, payload, **kwargs)
    assert not report.passed
    assert report.reason == reason, report
    assert report.reason in REASONS
    return report


# --- skipping work ----------------------------------------------------------------------------


def skip_units(y, fraction, rng, how):
    y = y.copy()
    skipped = rng.choice(len(y), size=int(round(fraction * len(y))), replace=False)
    if how == "zeros":
        y[skipped] = 0
    elif how == "neighbours":  # copy a computed unit's values: plausible magnitudes
        y[skipped] = y[(skipped + 1) % len(y)]
    else:  # guesses drawn like honest values
        y[skipped] = rng.normal(0, y.std(axis=0), size=(len(skipped), y.shape[1]))
    return y


@pytest.mark.parametrize("how", ["zeros", "neighbours", "guesses"])
def test_mallory_skipping_half_the_units_is_always_caught(spec, seed, how):
    rng = np.random.default_rng(1)
    y = skip_units(chain_compute(spec, seed), 0.5, rng, how)
    for verifier_seed in range(20):
        rejected(
            spec, seed, sketch_payload(spec, seed, y), "row_mismatch", verifier_seed=verifier_seed
        )


def test_mallory_skipping_a_tenth_is_caught_at_the_stated_rate(seed):
    # 1 - 0.9**48 = 99.4% per job; over 200 independent draws expect about 1 miss.
    rng = np.random.default_rng(2)
    y = skip_units(chain_compute(MATMUL, seed), 0.10, rng, "guesses")
    payload = sketch_payload(MATMUL, seed, y)
    caught = sum(
        not sketch_verify(MATMUL, seed, payload, verifier_seed=s).passed for s in range(200)
    )
    assert caught >= 190


def test_a_skipped_unit_is_reported_as_not_computed(seed):
    y = chain_compute(MATMUL, seed)
    y[:] = 0
    report = rejected(MATMUL, seed, sketch_payload(MATMUL, seed, y), "row_mismatch")
    # A zero is off by |true value| / scale, about |N(0, 1)|: over 25% on at least one of the
    # unit's 4 values with probability 0.998, so nearly every sampled unit counts as not computed.
    assert report.figures["gross_units"] >= DEFAULT_SAMPLE_COUNT - 6


# --- cheaper formats (precision laundering) ---------------------------------------------------

LAUNDERING = [
    # (job precision, format used, least rms / tolerance): fp32 fails by two orders of magnitude
    # or more; fp16 through int8 by an order; bf16 through int8 (the same 8 significant bits,
    # in fixed point) by a small factor, the margin stated in the design note.
    ("fp32", "tf32", 50),
    ("fp32", "fp16", 50),
    ("fp32", "bf16", 300),
    ("fp32", "int8", 1000),
    ("tf32", "bf16", 2),
    ("tf32", "int8", 5),
    ("fp16", "int8", 5),
    ("bf16", "int8", 1.3),
]


@pytest.mark.parametrize(("precision", "fmt", "factor"), LAUNDERING)
def test_mallory_answering_through_a_cheaper_format_is_a_precision_mismatch(
    seed, precision, fmt, factor
):
    spec = MatmulChainSpec(n=256, layers=4, rows=128, precision=precision)
    y = laundered_sketch(spec, seed, fmt)
    report = rejected(spec, seed, sketch_payload(spec, seed, y), "precision_mismatch")
    assert report.figures["rms_over_tolerance"] > factor


@pytest.mark.parametrize(
    ("precision", "fmt"), [("fp32", "bf16"), ("fp32", "tf32"), ("fp16", "bf16")]
)
def test_conv_answered_through_a_cheaper_format_is_a_precision_mismatch(seed, precision, fmt):
    spec = ConvChainSpec(
        batch=2, channels=16, height=10, width=10, kernel_size=3, layers=2, precision=precision
    )
    y = laundered_sketch(spec, seed, fmt)
    rejected(spec, seed, sketch_payload(spec, seed, y), "precision_mismatch")


def test_mallory_laundering_half_the_rows_of_an_fp16_job_is_caught(seed):
    spec = MatmulChainSpec(n=256, layers=3, rows=128, precision="fp16")
    rows = np.arange(0, 128, 2)
    y = laundered_sketch(spec, seed, "int8", rows=rows)
    rejected(spec, seed, sketch_payload(spec, seed, y), "precision_mismatch")


# --- binding to the job -----------------------------------------------------------------------


def test_another_jobs_payload_is_refused(spec, seed):
    other_seed = "0f" * 32
    payload = sketch_payload(spec, other_seed, chain_compute(spec, other_seed))
    rejected(spec, seed, payload, "job_mismatch")


def relabel(spec, seed, payload):
    document = json.loads(payload)
    document["job"] = job_binding(spec, seed)
    return json.dumps(document).encode()


def test_another_jobs_values_under_this_jobs_label_do_not_verify(spec, seed):
    other_seed = "0f" * 32
    payload = relabel(spec, seed, sketch_payload(spec, other_seed, chain_compute(spec, other_seed)))
    rejected(spec, seed, payload, "row_mismatch")


def test_values_from_fewer_layers_do_not_verify(seed):
    shallow = MatmulChainSpec(n=MATMUL.n, layers=MATMUL.layers - 1, rows=MATMUL.rows)
    payload = relabel(MATMUL, seed, sketch_payload(shallow, seed, chain_compute(shallow, seed)))
    rejected(MATMUL, seed, payload, "row_mismatch")


def test_values_for_another_precision_do_not_verify(seed):
    # Same shape, same seed, bf16 inputs instead of fp32: the inputs differ in their mantissas.
    cheap = MatmulChainSpec(n=MATMUL.n, layers=MATMUL.layers, rows=MATMUL.rows, precision="bf16")
    payload = relabel(
        MATMUL, seed, sketch_payload(cheap, seed, chain_compute(cheap, seed, "torch-cpu"))
    )
    assert not sketch_verify(MATMUL, seed, payload).passed


# --- malformed and hostile payloads -----------------------------------------------------------


def document(spec, seed):
    return json.loads(sketch_payload(spec, seed, chain_compute(spec, seed)))


def test_wrong_shapes_are_refused(spec, seed):
    doc = document(spec, seed)
    rejected(
        spec, seed, json.dumps({**doc, "shape": [spec.units + 1, spec.sketch_width]}), "wrong_shape"
    )
    short = base64.b64encode(base64.b64decode(doc["y"])[:-4]).decode()
    rejected(spec, seed, json.dumps({**doc, "y": short}), "wrong_shape")
    smaller = MatmulChainSpec(n=64, layers=3, rows=64)
    payload = relabel(spec, seed, sketch_payload(smaller, seed, chain_compute(smaller, seed)))
    rejected(spec, seed, payload, "wrong_shape")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(spec, seed, value):
    y = chain_compute(spec, seed)
    y[3, 0] = value
    rejected(spec, seed, sketch_payload(spec, seed, y), "non_finite")


def test_oversized_payload_is_refused_before_parsing(spec, seed):
    payload = b'{"y": "' + b"A" * payload_size_limit(spec) + b'"}'
    rejected(spec, seed, payload, "payload_too_large")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe\x00",
        b"[" * 3_000,  # deeper than safe_json's bound, smaller than the size cap
        b'{"a":' * 500 + b"1" + b"}" * 500,
        b"null",
        b"[]",
        b'{"protocol": NaN}',
        b'{"protocol": "chain-sketch/v1", "job": "x", "shape": [1, 1]}',
    ],
    ids=["empty", "binary", "deep-array", "deep-object", "null", "list", "nan", "missing-y"],
)
def test_malformed_json_is_refused_without_raising(spec, seed, payload):
    rejected(spec, seed, payload, "malformed_payload")


def test_malformed_fields_are_refused(spec, seed):
    doc = document(spec, seed)
    for change in (
        {"protocol": "chain-sketch/v0"},
        {"y": doc["y"][:-2] + "!!"},
        {"y": 12},
        {"y": ["AAAA"]},
        {"extra": 1},
    ):
        rejected(spec, seed, json.dumps({**doc, **change}), "malformed_payload")
    for change in ({"job": None}, {"job": 7}):
        rejected(spec, seed, json.dumps({**doc, **change}), "job_mismatch")
    for change in ({"shape": None}, {"shape": [True, 1]}, {"shape": "1x1"}):
        rejected(spec, seed, json.dumps({**doc, **change}), "wrong_shape")


def test_random_mutations_never_raise(spec, seed):
    payload = bytearray(sketch_payload(spec, seed, chain_compute(spec, seed)))
    rng = np.random.default_rng(3)
    for _ in range(300):
        mutated = bytearray(payload)
        for position in rng.integers(0, len(mutated), size=int(rng.integers(1, 6))):
            mutated[position] = int(rng.integers(0, 256))
        report = sketch_verify(spec, seed, bytes(mutated))
        assert report.reason in (None, *REASONS)
