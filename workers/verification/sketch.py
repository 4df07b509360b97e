"""The chain-sketch protocol: one message from the agent, no challenge round trip.

Agent (sketch_commitment)                         Server (sketch_verify)
  inputs from the seed, L layers, Y = X_L . V
  payload {protocol, job, shape, y}        ->     times dispatch..payload; then draws k units
                                                  with a CSPRNG, recomputes them, compares

What the agent must compute. Y has one row of m values per unit (a row of X_L, or an output
pixel's channels). A unit's values depend on all L layers of that unit through |.|, so no unit's
sketch is known without its L products (workers/kernels/chain.py). The payload is
O(units * m) = at most 160 KiB of float32 (base64 in JSON), whatever n or L.

Why skipping is caught. The payload is fixed when it arrives; only then does the server draw k
distinct units from the OS CSPRNG, so which units are checked is independent of the answer. If a
fraction s of the units is wrong (skipped, guessed, or computed in a cheaper format), all k
sampled units miss them with probability at most (1 - s (1 - g))**k, where g is the chance that
a value not computed lands within tolerance anyway (precision.guess_probability: from 1e-8 for
fp32 to 6% for bf16 with one value per unit; k = 48 meets both targets with it). Skipping a
fraction s of the work leaves at least a fraction s of the units wrong: every unit costs the same
(a row) or, for conv, skipping work on a pixel at any layer spoils at least that pixel's output.

What the server pays: k units, each `spec.unit_flops` (L vector-matrix products, or the cone of
an output pixel), plus generating the weights once: about k / units of a recompute.

The exact chain (int8). Y is int32 on the wire (exact: |y| <= features * 127**2 < 2**31), and
each sampled unit must equal the server's recomputation exactly: any difference is
`row_mismatch` (skipped, guessed, or computed by another map: there is no rounding to allow
for). A guess hits one value with probability about 1 / (sqrt(2 pi) sigma_y), sigma_y =
sqrt(features) * rms(x_L) * rms(v) (thousands): g ~ 0.

Hostile input. `sketch_verify` never raises on the payload: anything malformed, oversized,
non-finite or mis-shaped is a rejection with a reason code. The spec and seed are the server's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.kernels.chain import SKETCH_BUDGET_BYTES, ChainSpec
from workers.kernels.chain_run import chain_compute
from workers.kernels.generator import seed_bytes

from . import precision, safe_json
from .protocol import document_hash

PROTOCOL = "chain-sketch/v1"
# The spec types' `protocol` (workers/kernels/chain.py), without the version.
PROTOCOL_FAMILY = "chain-sketch"
DEFAULT_SAMPLE_COUNT = 48
_BINDING_DOMAIN = b"gpu-marketplace/chain-sketch/job\x00"
_PAYLOAD_KEYS = {"protocol", "job", "shape", "y"}

REASONS = (
    "payload_too_large",
    "malformed_payload",
    "job_mismatch",
    "wrong_shape",
    "non_finite",
    "row_mismatch",
    "precision_mismatch",
)


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def job_binding(spec: ChainSpec, seed: str) -> str:
    """Names the job a payload answers. Not the security (a copier can copy it; the values are
    what bind the answer to the seed), but it turns a misrouted answer into a precise reason."""
    digest = hashlib.sha256(_BINDING_DOMAIN + _canonical_json(spec.to_dict()) + seed_bytes(seed))
    return digest.hexdigest()[:32]


# --- agent side -------------------------------------------------------------------------------


def sketch_document(spec: ChainSpec, seed: str, y: np.ndarray) -> dict[str, Any]:
    """The payload as an object: y as little-endian float32 (int32 for the exact chain),
    base64."""
    y = np.ascontiguousarray(y, dtype=spec.sketch_dtype)
    return {
        "protocol": PROTOCOL,
        "job": job_binding(spec, seed),
        "shape": [spec.units, spec.sketch_width],
        "y": base64.b64encode(y.tobytes()).decode("ascii"),
    }


def sketch_payload(spec: ChainSpec, seed: str, y: np.ndarray) -> bytes:
    """The payload as JSON bytes."""
    return json.dumps(sketch_document(spec, seed, y), separators=(",", ":")).encode()


def sketch_commitment(spec: ChainSpec, seed: str, backend: str = "numpy") -> bytes:
    """What the agent calls for a job: generate, run the L layers, sketch, serialise."""
    return sketch_payload(spec, seed, chain_compute(spec, seed, backend))


def payload_digest(payload: Any) -> str:
    """SHA-256 of a payload as received (bytes/str) or of its canonical JSON (parsed): the
    digest the report cites and the job records as its commitment."""
    raw = payload if isinstance(payload, bytes | bytearray | str) else _canonical_json(payload)
    return hashlib.sha256(raw.encode() if isinstance(raw, str) else raw).hexdigest()


def payload_size_limit(spec: ChainSpec) -> int:
    """Bytes of the largest honest payload (base64 of the values plus the JSON around them)."""
    return 4 * -(-spec.sketch_bytes // 3) + 512


# --- server side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SketchReport:
    passed: bool
    reason: str | None
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)
    report_hash: str = ""
    # What report_hash is the SHA-256 of (canonical JSON): published with the payload, so
    # anyone can check the hash and judge the same units again.
    document: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "detail": self.detail,
            "figures": dict(self.figures),
            "report_hash": self.report_hash,
        }


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in JSON")


def _parse(spec: ChainSpec, seed: str, payload: Any) -> np.ndarray:
    """The agent's Y as (units, m) float32, or _Rejected. Cheap checks first."""
    if isinstance(payload, bytes | bytearray | str):
        limit = payload_size_limit(spec)
        if len(payload) > limit:
            raise _Rejected("payload_too_large", f"{len(payload)} bytes exceed {limit}")
        try:
            payload = safe_json.loads(payload, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise _Rejected("malformed_payload", f"not JSON: {exc}") from None
    if not isinstance(payload, dict) or set(payload) != _PAYLOAD_KEYS:
        raise _Rejected("malformed_payload", f"payload must have exactly {sorted(_PAYLOAD_KEYS)}")
    if payload["protocol"] != PROTOCOL:
        raise _Rejected("malformed_payload", f"protocol must be {PROTOCOL!r}")
    if payload["job"] != job_binding(spec, seed):
        raise _Rejected("job_mismatch", "payload answers another job (spec or seed differ)")
    expected_shape = [spec.units, spec.sketch_width]
    if payload["shape"] != expected_shape:
        raise _Rejected("wrong_shape", f"shape must be {expected_shape}")
    encoded = payload["y"]
    if not isinstance(encoded, str) or len(encoded) > payload_size_limit(spec):
        raise _Rejected("malformed_payload", "y must be a base64 string of the job's size")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Rejected("malformed_payload", f"y is not base64: {exc}") from None
    if len(raw) != spec.sketch_bytes:
        raise _Rejected("wrong_shape", f"y has {len(raw)} bytes, expected {spec.sketch_bytes}")
    y = np.frombuffer(raw, dtype=spec.sketch_dtype).reshape(spec.units, spec.sketch_width)
    if not spec.exact and not np.isfinite(y).all():
        raise _Rejected("non_finite", "y contains NaN or infinity")
    return y


def _compare_exact(
    spec: ChainSpec, seed: str, y: np.ndarray, units: np.ndarray, figures: dict[str, Any]
) -> None:
    """The exact chain: every sampled value must equal the server's, integer for integer."""
    reference = spec.reference_units(seed, units).astype(np.float64)
    # |y| <= features * 127**2 < 2**53: the float64 product of integers is exact.
    expected = (reference @ spec.sketch_matrix(seed).astype(np.float64)).astype(np.int64)
    wrong = np.flatnonzero((y[units] != expected).any(axis=1))
    figures.update({"samples": len(units), "exact": True, "units_mismatched": len(wrong)})
    if wrong.size:
        unit = int(units[wrong[0]])
        raise _Rejected(
            "row_mismatch",
            f"{wrong.size} of {len(units)} sampled units differ from the exact int8 chain "
            f"(first: unit {unit})",
        )


def _compare(
    spec: ChainSpec, seed: str, y: np.ndarray, units: np.ndarray, figures: dict[str, Any]
) -> None:
    """Recompute the sampled units and judge the errors, normalised to each value's scale."""
    if spec.exact:
        _compare_exact(spec, seed, y, units, figures)
        return
    reference = spec.reference_units(seed, units).astype(np.float64)
    sketch = spec.sketch_matrix(seed).astype(np.float64)
    expected = reference @ sketch
    # A sketch value's honest error is ~ sigma * |x_L| |v| / sqrt(features) (precision.py). A
    # unit whose activations happen to be tiny is floored at half the sampled units' rms, so
    # that noise carried in from earlier layers is not judged against a near-zero scale.
    norms = np.linalg.norm(reference, axis=1)
    typical = math.sqrt(float(np.mean(norms**2)))
    unit_scale = np.maximum(norms, 0.5 * typical) / math.sqrt(spec.features)
    scale = unit_scale[:, None] * np.linalg.norm(sketch, axis=0)[None, :]
    errors = (y[units].astype(np.float64) - expected) / np.where(scale > 0, scale, 1.0)
    sigma = precision.chain_sigma(spec.precision, spec.reduction_length, spec.layers)
    value_tol = precision.ROW_LAMBDA * sigma
    rms_tol = precision.rms_tau(errors.size) * sigma
    per_unit = np.abs(errors).max(axis=1)
    rms = math.sqrt(float(np.mean(errors**2)))
    gross = np.flatnonzero(per_unit > precision.GROSS_ERROR)
    bad = np.flatnonzero(per_unit > value_tol)
    figures.update(
        {
            "samples": len(units),
            "sigma": sigma,
            "max_error": float(per_unit.max()),
            "rms_error": rms,
            "value_tolerance": value_tol,
            "rms_tolerance": rms_tol,
            "rms_over_tolerance": rms / rms_tol,
            "gross_units": len(gross),
            "units_over_tolerance": len(bad),
        }
    )
    if gross.size:
        unit = int(units[gross[0]])
        raise _Rejected(
            "row_mismatch",
            f"{gross.size} of {len(units)} sampled units were not computed (unit {unit} off "
            f"by {per_unit[gross[0]]:.3g} of its scale)",
        )
    if bad.size or rms > rms_tol:
        raise _Rejected(
            "precision_mismatch",
            f"error rms {rms:.3g} (tolerance {rms_tol:.3g}), max {per_unit.max():.3g} "
            f"(tolerance {value_tol:.3g}): less accurate than honest {spec.precision}",
        )


def report_document(
    spec: ChainSpec, seed: str, payload_digest: str, units: list[int], outcome: dict[str, Any]
) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL,
        "spec": spec.to_dict(),
        "seed": seed,
        "payload_sha256": payload_digest,
        "units": units,
        "outcome": outcome,
    }


def report_hash(
    spec: ChainSpec, seed: str, payload_digest: str, units: list[int], outcome: dict[str, Any]
) -> str:
    return document_hash(report_document(spec, seed, payload_digest, units, outcome))


def sketch_verify(
    spec: ChainSpec,
    seed: str,
    payload: Any,
    *,
    sample_count: int = DEFAULT_SAMPLE_COUNT,
    verifier_seed: int | None = None,
    units: list[int] | None = None,
) -> SketchReport:
    """Judge an agent's payload (raw bytes/str as received, or already-parsed JSON).

    The k units are drawn here, after the payload exists, from `verifier_seed` (tests) or 128
    fresh bits of the OS CSPRNG: the agent never learns them before its answer is fixed. An
    auditor passes the published report's `units` to judge the same ones again.
    """
    seed_bytes(seed)
    if isinstance(sample_count, bool) or not isinstance(sample_count, int) or sample_count < 1:
        raise ValueError("sample_count must be a positive integer")
    rng = np.random.default_rng(secrets.randbits(128) if verifier_seed is None else verifier_seed)
    raw = payload if isinstance(payload, bytes | bytearray | str) else _canonical_json(payload)
    digest_of_payload = payload_digest(raw)
    figures: dict[str, Any] = {"payload_bytes": len(raw)}
    given, units = units, []
    try:
        y = _parse(spec, seed, payload)
        if given is not None:
            units = sorted({int(u) for u in given if 0 <= int(u) < spec.units})
        else:
            drawn = rng.choice(spec.units, size=min(sample_count, spec.units), replace=False)
            units = sorted(int(u) for u in drawn)
        _compare(spec, seed, y, np.array(units), figures)
        passed, reason, detail = True, None, "all sampled units within tolerance"
    except _Rejected as rejection:
        passed, reason, detail = False, rejection.reason, rejection.detail
    outcome = {"passed": passed, "reason": reason, "figures": figures}
    document = report_document(spec, seed, digest_of_payload, units, outcome)
    return SketchReport(passed, reason, detail, figures, document_hash(document), document)


# --- detection and the economics of cheating --------------------------------------------------


def detection_probability(skipped: float, k: int, guess: float = 0.0) -> float:
    """P(caught) for a payload wrong on a fraction `skipped` of units: 1 - (1 - s (1 - g))**k
    (sampling with replacement; without replacement catches at least as often)."""
    if not 0.0 <= skipped <= 1.0 or not 0.0 <= guess <= 1.0:
        raise ValueError("skipped and guess must be in [0, 1]")
    return 1.0 - (1.0 - skipped * (1.0 - guess)) ** k


def samples_needed(skipped: float, miss: float, guess: float = 0.0) -> int:
    """Least k with (1 - s (1 - g))**k <= miss."""
    return math.ceil(math.log(miss) / math.log(1.0 - skipped * (1.0 - guess)))


def cheating_expected_value(
    skipped: float,
    *,
    k: int,
    collateral: float,
    revenue: float,
    checks: int,
    guess: float = 0.0,
) -> float:
    """Expected gain of a provider who skips a fraction s of every checked job's work.

    Skipping s makes the measured figure 1 / (1 - s) times the truth, so over a lease whose
    price follows the figure it earns revenue * s / (1 - s) more, but only if none of the
    lease's `checks` jobs is caught; a catch slashes `collateral`:

        EV(s) = q**J * revenue * s / (1 - s) - (1 - q**J) * collateral,
        q = 1 - detection_probability(s, k, g)

    For small s, 1 - q**J ~ J k s, so EV < 0 for every s as soon as collateral > revenue / (J k)
    (and a fortiori for larger s, where q**J falls geometrically).
    """
    if skipped >= 1.0:
        return -collateral
    survive = (1.0 - detection_probability(skipped, k, guess)) ** checks
    return survive * revenue * skipped / (1.0 - skipped) - (1.0 - survive) * collateral


__all__ = [
    "DEFAULT_SAMPLE_COUNT",
    "PROTOCOL",
    "PROTOCOL_FAMILY",
    "SKETCH_BUDGET_BYTES",
    "REASONS",
    "SketchReport",
    "cheating_expected_value",
    "detection_probability",
    "job_binding",
    "payload_digest",
    "payload_size_limit",
    "report_document",
    "samples_needed",
    "sketch_commitment",
    "sketch_document",
    "sketch_payload",
    "sketch_verify",
]
