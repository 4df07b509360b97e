"""An honest provider (bob) passes whatever backend, precision and summation order he uses."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workers.kernels.chain import (
    ConvChainSpec,
    MatmulChainSpec,
    _abs_scale_np,
    chain_spec_from_dict,
    inputs_numpy,
)
from workers.kernels.chain_run import chain_backends
from workers.verification.sketch import sketch_commitment, sketch_payload, sketch_verify

from .laundering import to_format

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _sum_products(x: np.ndarray, b: np.ndarray, order: str) -> np.ndarray:
    """x . b in float32 with an explicit summation order over the reduction index."""
    n = x.shape[1]
    if order in ("forward", "reverse"):
        acc = np.zeros((x.shape[0], b.shape[1]), dtype=np.float32)
        for j in range(n) if order == "forward" else reversed(range(n)):
            acc += x[:, j : j + 1] * b[j : j + 1, :]
        return acc
    terms = x[:, :, None] * b[None, :, :]  # (rows, n, cols), float32 products
    if order == "pairwise":
        while terms.shape[1] > 1:
            if terms.shape[1] % 2:
                terms = np.concatenate([terms, np.zeros_like(terms[:, :1])], axis=1)
            terms = terms[:, 0::2] + terms[:, 1::2]
        return terms[:, 0]
    if order == "blocked":  # blocks of 16 summed forward, then the partial sums forward
        partial = [terms[:, lo : lo + 16].sum(axis=1, dtype=np.float32) for lo in range(0, n, 16)]
        acc = np.zeros_like(partial[0])
        for p in partial:
            acc += p
        return acc
    raise ValueError(order)


def bob_with_order(spec, seed, order):
    """Bob's own kernel: P inputs, fp32 accumulation in the given order, output rounded to P."""
    x, b = inputs_numpy(spec, seed)
    for scale in spec.scales(seed):
        z = _sum_products(x, b, order)
        if spec.precision in ("bf16", "fp16"):
            z = to_format(z, spec.precision)
        elif spec.precision == "tf32":  # tf32 hardware rounds the inputs of each product
            z = _sum_products(to_format(x, "tf32"), to_format(b, "tf32"), order)
        x = _abs_scale_np(z, scale)
    return x @ spec.sketch_matrix(seed)


@pytest.mark.parametrize("order", ["forward", "reverse", "pairwise", "blocked"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_bob_passes_with_any_summation_order(seed, order, precision):
    spec = MatmulChainSpec(n=256, layers=4, rows=24, precision=precision)
    y = bob_with_order(spec, seed, order)
    report = sketch_verify(spec, seed, sketch_payload(spec, seed, y))
    assert report.passed, report
    # Honest errors sit near half the tolerance (0.45-0.52 measured for half precisions): the
    # model is an upper bound. 0.8 leaves room for the spread of an rms over 96 values (~7%).
    assert report.figures["rms_over_tolerance"] < 0.8


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(
    "spec",
    [
        MatmulChainSpec(n=128, layers=3, rows=64),
        MatmulChainSpec(n=64, layers=12),
        ConvChainSpec(batch=2, channels=8, height=10, width=10, kernel_size=3, layers=3),
        ConvChainSpec(batch=3, channels=64, height=6, width=6, kernel_size=1, layers=2),
        ConvChainSpec(batch=1, channels=12, height=9, width=9, kernel_size=5, layers=2),
    ],
    ids=lambda s: f"{s.kind}-{s.units}u-{s.layers}L",
)
def test_bob_passes_on_every_backend(seed, precision, spec):
    job = chain_spec_from_dict({**spec.to_dict(), "precision": precision})
    backends = chain_backends(precision)
    assert backends
    for backend in backends:
        report = sketch_verify(job, seed, sketch_commitment(job, seed, backend))
        assert report.passed, (backend, report)


def test_tf32_job_run_in_fp32_on_a_cpu_passes(seed):
    spec = MatmulChainSpec(n=128, layers=3, precision="tf32")
    assert sketch_verify(spec, seed, sketch_commitment(spec, seed, "numpy")).passed


def test_honest_payload_is_small_and_verify_accepts_parsed_json(seed):
    spec = MatmulChainSpec(n=64, layers=2)
    payload = sketch_commitment(spec, seed)
    assert len(payload) < 256 * 1024
    assert sketch_verify(spec, seed, json.loads(payload)).passed
    assert sketch_verify(spec, seed, payload.decode()).passed


def test_report_hash_is_reproducible_and_names_what_was_checked(seed):
    spec = MatmulChainSpec(n=64, layers=2)
    payload = sketch_commitment(spec, seed)
    first = sketch_verify(spec, seed, payload, verifier_seed=7)
    again = sketch_verify(spec, seed, payload, verifier_seed=7)
    other = sketch_verify(spec, seed, payload, verifier_seed=8)
    assert first.report_hash == again.report_hash != other.report_hash
    assert first.figures["samples"] == 48


@pytest.mark.slow
@pytest.mark.parametrize("precision", PRECISIONS)
def test_no_false_rejection_over_1000_honest_jobs_per_backend(precision):
    """1,000 small jobs per backend and precision, fresh seeds, varied shapes down to the
    smallest the spec allows: none rejected."""
    import secrets

    rng = np.random.default_rng(20261129)
    for backend in chain_backends(precision):
        failures = []
        for i in range(1000):
            seed = secrets.token_hex(32)
            if i % 3:
                spec = MatmulChainSpec(
                    n=int(rng.integers(64, 129)),
                    layers=int(rng.integers(1, 9)),
                    rows=int(rng.integers(1, 64)),
                    precision=precision,
                )
            else:
                k = int(rng.choice([1, 3, 5]))
                spec = ConvChainSpec(
                    batch=int(rng.integers(1, 3)),
                    channels=64 if k == 1 else int(rng.integers(8, 17)),
                    height=int(rng.integers(1, 9)),
                    width=int(rng.integers(1, 9)),
                    kernel_size=k,
                    layers=int(rng.integers(1, 4)),
                    precision=precision,
                )
            report = sketch_verify(spec, seed, sketch_commitment(spec, seed, backend))
            if not report.passed:
                failures.append((spec, report.reason, report.figures))
        assert failures == [], (backend, failures[:3])


def test_bob_in_another_process_with_other_blas_threads_passes(seed):
    """The agent side as the agent runs it: a separate process (its own BLAS threading, so its
    own blocking of the sums) writes the payload bytes; this process verifies them."""
    spec = MatmulChainSpec(n=192, layers=3, rows=96, precision="fp32")
    program = (
        "import sys, json; from workers.kernels.chain import chain_spec_from_dict; "
        "from workers.verification.sketch import sketch_commitment; "
        "spec = chain_spec_from_dict(json.loads(sys.argv[1])); "
        "sys.stdout.buffer.write(sketch_commitment(spec, sys.argv[2], sys.argv[3]))"
    )
    for backend, threads in (("numpy", "2"), ("torch-cpu", "1")):
        env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "PATH": "/usr/bin"}
        payload = subprocess.run(
            [sys.executable, "-c", program, json.dumps(spec.to_dict()), seed, backend],
            capture_output=True,
            check=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=120,
        ).stdout
        report = sketch_verify(spec, seed, payload)
        assert report.passed, (backend, report)
