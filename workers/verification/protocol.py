"""The benchmark verification protocol: commitment, challenge, answer, verification.

Agent                                    Server
  compute C (or Y) from the seed
  commitment_create -> root       ->     times dispatch..commit; stores root
                                  <-     challenge_create: r, k random leaf indices
  challenge_answer: y, leaves+proofs ->  answer_verify -> VerificationReport

What catches what. The Merkle root is fixed before the challenge exists, so a provider who
computed only a fraction 1 - f of the rows (and committed junk for the rest) is caught unless
all k sampled rows fall in the computed part: probability of detection 1 - (1 - f)**k. Each
sampled row is recomputed exactly from the seed. y = C.r is tied to the commitment through the
sampled rows (y[i] == row_i . r) and checked against the truth with Freivalds, y == A.(B.r); for
conv2d the projection check y == conv(X, sum_o r_o W[o]) plays that part. Freivalds alone could
be satisfied without computing C (y = A.(B.r) costs O(n^2)), so the work guarantee rests on the
row sampling; Freivalds and the projection pin down that y is honest and give a precise reason.

Exactness and overflow. Outputs are integers with |C| <= 4 * terms (terms = n, or
in_channels * k * k, both < 2**22 by spec validation) and |r| <= R_BOUND = 2**20, so
|y| <= 4 * terms * width * R_BOUND < 2**56 (width = n <= 2**14 or out_channels <= 2**12): int64
never overflows. Sampled rows are recomputed with float32 BLAS (exact: every partial sum is an
integer below 2**24, the agent's own argument); Freivalds uses float64 BLAS, exact because
|B.r| <= 2 * n * R_BOUND and |A.(B.r)| <= 4 * n * n * R_BOUND <= 2**50 < 2**53 for n <= 2**14;
the conv projection, whose bound can pass 2**53, is done in int64.

Hostile input. `answer_verify` never raises on what the agent sends (root, answer): anything
malformed is reported as passed=False with reason "malformed_answer" (or
"malformed_commitment" for the root), and every structural check runs before any heavy compute.
The spec, seed and challenge are the server's own; a bad one is a server bug and raises.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.kernels.generator import generate, generate_into, seed_bytes
from workers.kernels.specs import PRODUCT_BOUND, Conv2dSpec, MatmulSpec, Spec

from . import safe_json
from .merkle import (
    HASH_HEX_LEN,
    MerkleTree,
    build_tree_from_array,
    leaf_bytes,
    proof_length_max,
    verify_proof,
)

PROTOCOL_VERSION = 1
R_BOUND = 2**20
DEFAULT_SAMPLE_COUNT = 32
MAX_SAMPLE_COUNT = 256
# Absolute ceiling for a raw answer body; `answer_size_limit` gives the tighter per-job figure.
MAX_ANSWER_BYTES = 64 * 2**20
# Decimal digits of the widest honest integer (|y| < 2**56 -> 17 digits) plus sign and ", ".
_CHARS_PER_INT = 20
# Verifier-side randomness (drawn in answer_verify, after the answer is fixed): vectors that
# project each sampled row, and how many extra coordinates of y Freivalds checks.
ROW_VECTORS = 2
_S_BOUND = 2**23
FREIVALDS_COORDINATES = 256
PROJECTION_IMAGES = 4
_DIGITS = 3  # signed base-256 digits: covers |v| < 2**23 (s) and |r| <= 2**20
# Elements per float32 BLAS call in _b_times (see there).
_BLAS_BLOCK_ELEMENTS = 1 << 19

REASONS = (
    "malformed_commitment",
    "malformed_answer",
    "merkle_proof_invalid",
    "row_mismatch",
    "plane_mismatch",
    "y_inconsistent",
    "freivalds_failed",
    "projection_failed",
)


class MalformedAnswer(Exception):
    """Internal: the agent's answer does not have the required shape."""


@dataclass(frozen=True)
class VerificationReport:
    passed: bool
    reason: str | None
    detail: str
    checks: dict[str, int] = field(default_factory=dict)
    report_hash: str = ""
    # What report_hash is the SHA-256 of (canonical JSON): published, so anyone can check it.
    document: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "detail": self.detail,
            "checks": dict(self.checks),
            "report_hash": self.report_hash,
        }


# --- sizes ------------------------------------------------------------------------------------


def leaf_count(spec: Spec) -> int:
    """Rows of C (matmul) or output planes batch * out_channels (conv2d): the spec's own size."""
    return spec.leaf_count


def leaf_length(spec: Spec) -> int:
    return spec.leaf_length


def r_length(spec: Spec) -> int:
    return spec.r_length


def y_length(spec: Spec) -> int:
    return spec.y_length


def output_bound(spec: Spec) -> int:
    """The largest |value| an honest output element can have."""
    return PRODUCT_BOUND * spec.terms_per_output


def y_bound(spec: Spec) -> int:
    return output_bound(spec) * r_length(spec) * R_BOUND


def answer_size_limit(spec: Spec, challenge: dict[str, Any]) -> int:
    """Upper bound on the JSON size of an honest answer: the HTTP layer can refuse beyond it."""
    k = len(challenge["indices"])
    per_leaf = leaf_length(spec) * _CHARS_PER_INT + proof_length_max(leaf_count(spec)) * 70 + 100
    return min(MAX_ANSWER_BYTES, y_length(spec) * _CHARS_PER_INT + k * per_leaf + 1024)


# --- challenge --------------------------------------------------------------------------------


def challenge_create(
    spec: Spec, *, sample_count: int = DEFAULT_SAMPLE_COUNT, rng: random.Random | None = None
) -> dict[str, Any]:
    """A fresh challenge: {"r": [ints in -R_BOUND..R_BOUND], "indices": [distinct leaf indices]}.

    `r` has n entries (matmul) or out_channels entries (conv2d). The number of indices is
    min(sample_count, leaf_count). Must come from a CSPRNG in production (the default): a
    predictable challenge lets a provider compute only the rows that will be asked for.
    """
    if isinstance(sample_count, bool) or not isinstance(sample_count, int):
        raise ValueError("sample_count must be an integer")
    if not 1 <= sample_count <= MAX_SAMPLE_COUNT:
        raise ValueError(f"sample_count must be in 1..{MAX_SAMPLE_COUNT}")
    rng = rng or secrets.SystemRandom()
    k = min(sample_count, leaf_count(spec))
    return {
        "r": [rng.randint(-R_BOUND, R_BOUND) for _ in range(r_length(spec))],
        "indices": rng.sample(range(leaf_count(spec)), k),
    }


def _check_challenge(spec: Spec, challenge: Any) -> tuple[np.ndarray, list[int]]:
    if not isinstance(challenge, dict) or set(challenge) != {"r", "indices"}:
        raise ValueError("challenge must be {'r': [...], 'indices': [...]}")
    r, indices = challenge["r"], challenge["indices"]
    if not isinstance(r, list) or len(r) != r_length(spec):
        raise ValueError(f"challenge r must have {r_length(spec)} entries")
    if not all(type(v) is int and -R_BOUND <= v <= R_BOUND for v in r):
        raise ValueError(f"challenge r entries must be ints in -{R_BOUND}..{R_BOUND}")
    count = leaf_count(spec)
    if (
        not isinstance(indices, list)
        or not 1 <= len(indices) <= min(MAX_SAMPLE_COUNT, count)
        or not all(type(i) is int and 0 <= i < count for i in indices)
        or len(set(indices)) != len(indices)
    ):
        raise ValueError("challenge indices must be distinct leaf indices")
    return np.array(r, dtype=np.int64), list(indices)


# --- agent side -------------------------------------------------------------------------------


def _leaves(spec: Spec, output: np.ndarray) -> np.ndarray:
    output = np.asarray(output)
    if output.shape != spec.output_shape:
        raise ValueError(f"output shape {output.shape} does not match {spec.output_shape}")
    return output.reshape(leaf_count(spec), leaf_length(spec))


def commitment_create(spec: Spec, output: np.ndarray) -> tuple[str, MerkleTree]:
    """Merkle root (hex) over the output's rows (matmul) or planes b*out_channels+o (conv2d)."""
    tree = build_tree_from_array(_leaves(spec, output))
    return tree.root, tree


def challenge_answer(
    spec: Spec, output: np.ndarray, tree: MerkleTree, challenge: dict[str, Any]
) -> dict[str, Any]:
    """matmul: {"y": C.r (n ints), "rows": [{"index", "values", "proof"}]};
    conv2d: {"y": sum_o r_o Y[:, o] flattened from (batch, out_h, out_w), "planes": [...]}."""
    r, indices = _check_challenge(spec, challenge)
    leaves = _leaves(spec, output).astype(np.int64, copy=False)
    if isinstance(spec, MatmulSpec):
        y = leaves @ r
    else:
        y = np.einsum("bohw,o->bhw", np.asarray(output, dtype=np.int64), r)
    entries = [{"index": i, "values": leaves[i].tolist(), "proof": tree.proof(i)} for i in indices]
    return {"y": y.reshape(-1).tolist(), _leaf_key(spec): entries}


def _leaf_key(spec: Spec) -> str:
    return spec.leaf_key


# --- server side: parsing ---------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise MalformedAnswer(f"non-finite number {name} in JSON")


def _parse(answer: Any, limit: int) -> Any:
    if isinstance(answer, bytes | bytearray | str):
        if len(answer) > limit:
            raise MalformedAnswer(f"answer of {len(answer)} bytes exceeds {limit}")
        try:
            return safe_json.loads(answer, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise MalformedAnswer(f"answer is not JSON: {exc}") from None
    return answer


def _int_vector(value: Any, length: int, bound: int, what: str) -> np.ndarray:
    if not isinstance(value, list) or len(value) != length:
        raise MalformedAnswer(f"{what} must be a list of {length} integers")
    # Exact type int rejects bools, floats (NaN/inf included) and int subclasses at once;
    # set(map(type, ...)) does it at C speed (k * n = 262,144 values for n = 8192).
    if set(map(type, value)) - {int}:
        raise MalformedAnswer(f"{what} must contain only integers")
    if value and (max(value) > bound or min(value) < -bound):
        raise MalformedAnswer(f"{what} has a value beyond the possible bound {bound}")
    return np.array(value, dtype=np.int64)


def _parse_answer(
    spec: Spec, answer: Any, indices: list[int]
) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, list[str]]]]:
    key = _leaf_key(spec)
    if not isinstance(answer, dict) or set(answer) != {"y", key}:
        raise MalformedAnswer(f"answer must be an object with exactly 'y' and '{key}'")
    entries = answer[key]
    if not isinstance(entries, list) or len(entries) != len(indices):
        raise MalformedAnswer(f"'{key}' must list exactly the {len(indices)} challenged leaves")
    # Cheap shape checks for every entry first, so a huge payload is refused before any parsing.
    width, max_proof = leaf_length(spec), proof_length_max(leaf_count(spec))
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"index", "values", "proof"}:
            raise MalformedAnswer("each leaf must be {'index', 'values', 'proof'}")
        if not isinstance(entry["values"], list) or len(entry["values"]) != width:
            raise MalformedAnswer(f"each leaf must have {width} values")
        if not isinstance(entry["proof"], list) or len(entry["proof"]) > max_proof:
            raise MalformedAnswer(f"each proof must be a list of at most {max_proof} hashes")
        if type(entry["index"]) is not int:
            raise MalformedAnswer("leaf index must be an integer")
    if sorted(entry["index"] for entry in entries) != sorted(indices):
        raise MalformedAnswer("answered leaf indices differ from the challenged ones")
    y = _int_vector(answer["y"], y_length(spec), y_bound(spec), "y")
    leaves = {}
    for entry in entries:
        values = _int_vector(entry["values"], width, output_bound(spec), "leaf values")
        proof = entry["proof"]
        if not all(isinstance(h, str) and len(h) == HASH_HEX_LEN for h in proof):
            raise MalformedAnswer("proof entries must be 64-character hex strings")
        leaves[entry["index"]] = (values, proof)
    return y, leaves


def _valid_root(root_hex: Any) -> bool:
    return (
        isinstance(root_hex, str)
        and len(root_hex) == HASH_HEX_LEN
        and all(c in "0123456789abcdef" for c in root_hex)
    )


# --- server side: checks ----------------------------------------------------------------------


class _Failed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _signed_digits(v: np.ndarray, count: int) -> np.ndarray:
    """Columns d_0..d_{count-1} in -128..127 with v == sum_t d_t * 256**t (exact for v < 2**23 *
    256**(count-3)); the last digit takes the rest, which the callers keep within -128..127."""
    digits, rest = [], v.astype(np.int64)
    for _ in range(count - 1):
        low = ((rest + 128) & 255) - 128
        digits.append(low)
        rest = (rest - low) >> 8
    digits.append(rest)
    return np.stack(digits, axis=1)


def _b_times(seed: str, n: int, vectors: np.ndarray) -> np.ndarray:
    """B . v for each column v of `vectors` (n x c, |v| < 2**23), exactly, in int64.

    B is generated in blocks of a few rows into one reused float32 buffer and multiplied while
    still in cache, so it is never materialised (n = 16384 would be 1 GiB). float32 BLAS is
    exact here: each vector is split into signed base-256 digits (|d| <= 128) and every partial
    sum of B . d is an integer of magnitude <= 2 * n * 128 <= 2**22 < 2**24. The digits are
    recombined in int64. Blocks stay below OpenBLAS's threading threshold: on a shared 2-core
    server its threads spin and cost more than they save.
    """
    digits = np.concatenate([_signed_digits(v, _DIGITS) for v in vectors.T], axis=1)
    digits_f = digits.astype(np.float32)
    rows = max(1, _BLAS_BLOCK_ELEMENTS // (n * digits.shape[1]))
    buffer = np.empty(rows * n, dtype=np.float32)
    product = np.empty((n, digits.shape[1]), dtype=np.float32)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        block = generate_into(seed, "B", buffer[: (hi - lo) * n], start=lo * n)
        np.matmul(block.reshape(hi - lo, n), digits_f, out=product[lo:hi])
    weights = 256 ** np.arange(_DIGITS, dtype=np.int64)
    per_digit = product.astype(np.int64).reshape(n, vectors.shape[1], _DIGITS)
    return per_digit @ weights


def _a_rows(seed: str, n: int, indices: list[int]) -> np.ndarray:
    out = np.empty((len(indices), n), dtype=np.int64)
    for row, i in enumerate(indices):
        generate_into(seed, "A", out[row], start=i * n)
    return out


def _verify_matmul(
    spec: MatmulSpec,
    seed: str,
    r: np.ndarray,
    y: np.ndarray,
    leaves: dict[int, tuple[np.ndarray, list[str]]],
    checks: dict[str, int],
    rng: np.random.Generator,
) -> None:
    """Three checks, all O(n^2) in total with one pass over B and no n x n product.

    Rows: each sampled row must equal A[i] . B. Instead of recomputing it (a k x n x n product,
    most of the old cost), it is projected on ROW_VECTORS vectors s drawn here, after the
    answer is fixed: row_i . s == A[i] . (B . s). A wrong row (D = row - A[i].B != 0) passes
    one projection only if D . s == 0, which for s uniform over 2**24 values happens with
    probability <= 2**-24 (fix every coordinate of s but one where D is nonzero: at most one
    value of that coordinate works); two independent vectors make it <= 2**-48, far below the
    2**-21 that Freivalds itself already accepts.

    y vs rows: y[i] == row_i . r for the sampled rows, as before.

    Freivalds on a random subset: y[j] == A[j] . (B . r) for the sampled rows and
    FREIVALDS_COORDINATES further rows drawn here (all rows when n is small). This is as strong
    as the full check against any cheater: r is known when the answer is written, so a cheater
    can always make all of y exact in O(n^2) (y = A.(B.r)), whatever it committed; the full
    check therefore accepts an answer to a commitment exactly when the subset check does, and
    the work guarantee rests, as it always did, on the sampled rows (1 - (1 - f)**k). What the
    full check adds is only against a faulty agent that derives y from a wrong C: the subset
    still catches it with probability 1 - (1 - g)**m (g = fraction of wrong y entries).

    Bounds (int64 throughout after B . v): |B.s| <= 2 n 2**23 <= 2**38, |A[i].(B.s)| <= 2**53;
    |row| <= 4n <= 2**16, |row . s| <= 2**53; |A[j].(B.r)| <= 4 n^2 R_BOUND <= 2**50.
    """
    n = spec.n
    sampled = sorted(leaves)
    s = rng.integers(-_S_BOUND, _S_BOUND, size=(n, ROW_VECTORS), dtype=np.int64)
    extra = rng.choice(n, size=min(n, FREIVALDS_COORDINATES), replace=False).tolist()
    coords = sorted(set(sampled) | set(extra))
    products = _b_times(seed, n, np.column_stack([r, s]))
    br, bs = products[:, 0], products[:, 1:]
    a_coords = _a_rows(seed, n, coords)
    position = {j: p for p, j in enumerate(coords)}
    a_sampled = a_coords[[position[i] for i in sampled]]
    committed = np.stack([leaves[i][0] for i in sampled])
    mismatch = np.flatnonzero((committed @ s != a_sampled @ bs).any(axis=1))
    if mismatch.size:
        i = sampled[int(mismatch[0])]
        raise _Failed("row_mismatch", f"row {i} differs from A[{i}].B")
    checks["rows_recomputed"] += len(sampled)
    for i, row in zip(sampled, committed, strict=True):
        if int(row @ r) != int(y[i]):
            raise _Failed("y_inconsistent", f"y[{i}] differs from committed row {i} . r")
        checks["y_rows_consistent"] += 1
    bad = np.flatnonzero(a_coords @ br != y[coords])
    if bad.size:
        raise _Failed("freivalds_failed", f"y != A.(B.r) at row {coords[int(bad[0])]}")
    checks["freivalds"] += 1


def _conv_exact(spec: Conv2dSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One image's convolution (C, H, W) x (O, C, k, k) -> (O, out_h, out_w) in float64 BLAS:
    the verifier recomputes image by image, generating only the images it checks.

    Exact as long as every partial sum is an integer below 2**53; callers guarantee that."""
    k, s, p = spec.kernel_size, spec.stride, spec.padding
    oh, ow = spec.out_height, spec.out_width
    x = np.pad(x, ((0, 0), (p, p), (p, p))) if p else x
    channels = x.shape[0]
    out = np.zeros((w.shape[0], oh * ow), dtype=np.float64)
    for dy in range(k):
        for dx in range(k):
            tap = x[:, dy : dy + s * (oh - 1) + 1 : s, dx : dx + s * (ow - 1) + 1 : s]
            out += w[:, :, dy, dx] @ tap.reshape(channels, oh * ow)
    return out.reshape(w.shape[0], oh, ow)


def _verify_conv(
    spec: Conv2dSpec,
    seed: str,
    r: np.ndarray,
    y: np.ndarray,
    leaves: dict[int, tuple[np.ndarray, list[str]]],
    checks: dict[str, int],
    rng: np.random.Generator,
) -> None:
    """Planes recomputed exactly; the projection checked on a random subset of images.

    The projection y[b] == conv(X[b], sum_o r_o W[o]) is checked for every image that holds a
    sampled plane plus PROJECTION_IMAGES more drawn here, after the answer is fixed (all images
    when the batch is small). As with Freivalds on a subset for matmul, this accepts exactly the
    commitments the full check accepts: r is known when y is written, and an honest y costs one
    one-output-channel convolution, so y constrains nothing the sampled planes do not. Only X
    of the chosen images is generated, not all of X.

    Exactness in float64: a plane's partial sums are at most 4 * terms < 2**24. r is split into
    signed base-256 digits d (|d| <= 128), so |sum_o d_o W[o]| <= 256 * out_channels and each
    partial sum of its convolution is at most 2 * terms * 256 * out_channels < 2**22 * 2**21
    = 2**43; the digits are recombined in int64 (|y| < 2**56).
    """
    c, k, o_count = spec.in_channels, spec.kernel_size, spec.out_channels
    image_size = c * spec.height * spec.width
    w_size = c * k * k
    plane_shape = (spec.out_height, spec.out_width)
    by_batch: dict[int, list[int]] = {}
    for p in sorted(leaves):
        by_batch.setdefault(p // o_count, []).append(p % o_count)
    extra = rng.choice(spec.batch, size=min(spec.batch, PROJECTION_IMAGES), replace=False)
    images = sorted(set(by_batch) | set(extra.tolist()))
    w_all = generate(seed, "W", o_count * w_size, dtype=np.float64).reshape(o_count, w_size)
    digits = _signed_digits(r, _DIGITS).astype(np.float64)  # (out_channels, _DIGITS)
    w_digits = (digits.T @ w_all).reshape(_DIGITS, c, k, k)
    weights = 256 ** np.arange(_DIGITS, dtype=np.int64)
    x_buffer = np.empty(image_size, dtype=np.float64)
    projected: dict[int, np.ndarray] = {}
    for b in images:
        x = generate_into(seed, "X", x_buffer, start=b * image_size)
        outs = by_batch.get(b, [])
        w_sel = np.concatenate([w_all[outs].reshape(len(outs), c, k, k), w_digits])
        result = _conv_exact(spec, x.reshape(c, spec.height, spec.width), w_sel)
        for o, expected in zip(outs, result[: len(outs)], strict=True):
            if not np.array_equal(leaves[b * o_count + o][0], expected.reshape(-1)):
                raise _Failed("plane_mismatch", f"plane (b={b}, o={o}) differs from conv")
            checks["planes_recomputed"] += 1
        per_digit = result[len(outs) :].astype(np.int64)
        projected[b] = np.tensordot(weights, per_digit, axes=1)
    y = y.reshape(spec.batch, *plane_shape)
    # y[b] = sum_o r_o Y[b, o] can be tied to the commitment only where every plane of image b
    # was sampled; elsewhere the projection check below pins y to the truth.
    for b, outs in by_batch.items():
        if len(outs) == o_count:
            combo = sum(int(r[o]) * leaves[b * o_count + o][0] for o in outs)
            if not np.array_equal(combo.reshape(plane_shape), y[b]):
                raise _Failed("y_inconsistent", f"y[{b}] differs from the committed planes . r")
            checks["y_images_consistent"] += 1
    for b in images:
        if not np.array_equal(projected[b], y[b]):
            raise _Failed("projection_failed", "y != conv(X, sum_o r_o W[o])")
    checks["projection"] += 1


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def report_document(
    spec: Spec, seed: str, root_hex: Any, challenge: dict[str, Any], outcome: dict[str, Any]
) -> dict[str, Any]:
    """What was verified and how it came out: everything a third party needs, with the answer
    (the evidence), to run the verification again."""
    return {
        "version": PROTOCOL_VERSION,
        "spec": spec.to_dict(),
        "seed": seed,
        "root": root_hex if _valid_root(root_hex) else None,
        "challenge": challenge,
        "outcome": outcome,
    }


def document_hash(document: dict[str, Any]) -> str:
    """SHA-256 (hex) of a report document's canonical JSON: the hash cited on chain."""
    return hashlib.sha256(_canonical_json(document)).hexdigest()


def report_hash(
    spec: Spec, seed: str, root_hex: Any, challenge: dict[str, Any], outcome: dict[str, Any]
) -> str:
    """SHA-256 (hex) of the canonical JSON of what was verified and how it came out."""
    return document_hash(report_document(spec, seed, root_hex, challenge, outcome))


def answer_verify(
    spec: Spec,
    seed: str,
    root_hex: Any,
    challenge: dict[str, Any],
    answer: Any,
    *,
    verifier_seed: int | None = None,
) -> VerificationReport:
    """Verify an agent's answer to `challenge` against its committed `root_hex`.

    `answer` is the parsed JSON object, or the raw body (bytes/str), which is then size-capped
    by `answer_size_limit` and parsed with NaN/Infinity refused.

    The verifier's own random choices (row projections, Freivalds coordinates) are drawn here,
    after the answer exists, from `verifier_seed` (tests) or 128 fresh bits from the OS CSPRNG.
    A non-cryptographic generator is enough: its output only has to be unknown to the agent
    when it wrote the answer, and the agent never sees it before.
    """
    seed_bytes(seed)
    r, indices = _check_challenge(spec, challenge)
    rng = np.random.default_rng(secrets.randbits(128) if verifier_seed is None else verifier_seed)
    checks = {
        "proofs_verified": 0,
        "rows_recomputed": 0,
        "planes_recomputed": 0,
        "y_rows_consistent": 0,
        "y_images_consistent": 0,
        "freivalds": 0,
        "projection": 0,
    }
    try:
        if not _valid_root(root_hex):
            raise _Failed("malformed_commitment", "root must be 64 lowercase hex characters")
        try:
            parsed = _parse(answer, answer_size_limit(spec, challenge))
            y, leaves = _parse_answer(spec, parsed, indices)
        except MalformedAnswer as exc:
            raise _Failed("malformed_answer", str(exc)) from None
        for index, (values, proof) in leaves.items():
            if not verify_proof(root_hex, leaf_bytes(values), index, leaf_count(spec), proof):
                raise _Failed("merkle_proof_invalid", f"proof for leaf {index} does not verify")
            checks["proofs_verified"] += 1
        if isinstance(spec, MatmulSpec):
            _verify_matmul(spec, seed, r, y, leaves, checks, rng)
        else:
            _verify_conv(spec, seed, r, y, leaves, checks, rng)
        passed, reason, detail = True, None, "all checks passed"
    except _Failed as failure:
        passed, reason, detail = False, failure.reason, failure.detail
    outcome = {"passed": passed, "reason": reason, "checks": checks}
    document = report_document(spec, seed, root_hex, challenge, outcome)
    return VerificationReport(passed, reason, detail, checks, document_hash(document), document)


# --- scoring ----------------------------------------------------------------------------------


def _positive_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value}")
    return float(value)


def throughput_flops_per_second(
    spec: Spec, server_seconds: float, agent_seconds: float | None = None
) -> float:
    """spec.flops over the longer of the server-measured and the agent-reported time.

    The agent's figure can only lower the score: a provider cannot claim to be faster than the
    span the server saw from dispatch to commitment.
    """
    seconds = _positive_seconds(server_seconds, "server_seconds")
    if agent_seconds is not None:
        seconds = max(seconds, _positive_seconds(agent_seconds, "agent_seconds"))
    return spec.flops / seconds


def detection_probability(skipped_fraction: float, k: int) -> float:
    """Chance that k distinct-uniform samples hit at least one of a fraction f of bad leaves.

    1 - (1 - f)**k, the with-replacement bound; sampling without replacement catches at least
    as often.
    """
    if not 0.0 <= skipped_fraction <= 1.0:
        raise ValueError("skipped_fraction must be in [0, 1]")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError("k must be a non-negative integer")
    return 1.0 - (1.0 - skipped_fraction) ** k


__all__ = [
    "DEFAULT_SAMPLE_COUNT",
    "MAX_ANSWER_BYTES",
    "R_BOUND",
    "REASONS",
    "VerificationReport",
    "answer_size_limit",
    "answer_verify",
    "challenge_answer",
    "challenge_create",
    "commitment_create",
    "detection_probability",
    "leaf_count",
    "report_hash",
    "report_document",
    "document_hash",
    "throughput_flops_per_second",
]
