"""Verification of benchmark results: Merkle commitments, challenges, exact checks, scoring.
Plain Python + NumPy, shared by the server (Celery) and the provider agent."""

from .merkle import MerkleTree, build_tree, build_tree_from_array, leaf_bytes, verify_proof
from .protocol import (
    DEFAULT_SAMPLE_COUNT,
    MAX_ANSWER_BYTES,
    R_BOUND,
    REASONS,
    VerificationReport,
    answer_size_limit,
    answer_verify,
    challenge_answer,
    challenge_create,
    commitment_create,
    detection_probability,
    leaf_count,
    report_hash,
    throughput_flops_per_second,
)

__all__ = [
    "DEFAULT_SAMPLE_COUNT",
    "MAX_ANSWER_BYTES",
    "R_BOUND",
    "REASONS",
    "MerkleTree",
    "VerificationReport",
    "answer_size_limit",
    "answer_verify",
    "build_tree",
    "build_tree_from_array",
    "challenge_answer",
    "challenge_create",
    "commitment_create",
    "detection_probability",
    "leaf_bytes",
    "leaf_count",
    "report_hash",
    "throughput_flops_per_second",
    "verify_proof",
]
