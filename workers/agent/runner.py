"""One benchmark job, end to end: compute, commit, wait for the challenge, answer.

JobRunner is the production path. Each protocol step is one method so tests can build cheating
agents by overriding exactly one step and keeping the rest honest.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from workers.agent.client import AgentApi, ApiError
from workers.kernels import Spec, best_backend, prepare, spec_from_dict
from workers.verification import challenge_answer, commitment_create

FINAL_STATES = ("verified", "rejected", "expired")


@dataclass
class JobResult:
    job_id: int
    state: str
    reason: str = ""
    measured_tflops: float | None = None
    agent_seconds: float | None = None


class JobRunner:
    def __init__(
        self,
        api: AgentApi,
        *,
        backend: str | None = None,
        progress: bool = False,
        challenge_wait: int = 25,
        verdict_timeout: float = 300,
    ) -> None:
        self.api = api
        self.backend = backend
        self.progress = progress
        self.challenge_wait = challenge_wait
        self.verdict_timeout = verdict_timeout

    # --- the protocol steps (override one to build a cheater) --------------------------------

    def compute(self, spec: Spec, seed: str) -> np.ndarray:
        backend = self.backend if self.backend else best_backend(spec)
        prepared = prepare(spec, seed, backend)
        raw = prepared.run()
        prepared.sync()
        return prepared.result(raw)

    def commitment(self, spec: Spec, output: np.ndarray) -> tuple[str, Any]:
        return commitment_create(spec, output)

    def commitment_body(self, root: str, agent_seconds: float) -> bytes:
        return json.dumps({"root": root, "agent_seconds": agent_seconds}).encode()

    def answer(
        self, spec: Spec, output: np.ndarray, tree: Any, challenge: dict[str, Any]
    ) -> dict[str, Any]:
        return challenge_answer(spec, output, tree, challenge)

    def answer_body(self, answer: dict[str, Any]) -> bytes:
        # gzip: the sampled rows are small integers as decimal text, which compresses ~2.5x
        # (n = 8192, k = 32: 1.5 MB -> 0.6 MB). The server recognises the gzip magic (and the
        # Content-Encoding header RequestsTransport adds) and caps the decompressed size.
        text = json.dumps(answer, separators=(",", ":")).encode()
        return gzip.compress(text, compresslevel=6, mtime=0)

    # --- driving ------------------------------------------------------------------------------

    def run_once(self, wait: int = 25) -> JobResult | None:
        job = self.api.next_job(wait)
        if job is None:
            return None
        return self.handle(job)

    def handle(self, job: dict[str, Any]) -> JobResult:
        job_id = job["id"]
        steps = _Progress(self.progress, f"job {job_id} {job['kind']}/{job['precision']}")
        try:
            spec = spec_from_dict(job["spec"])
            start = time.perf_counter()
            output = self.compute(spec, job["seed"])
            steps.advance("computed")
            root, tree = self.commitment(spec, output)
            agent_seconds = max(time.perf_counter() - start, 1e-9)
            steps.advance("committed")
            self.api.commit(job_id, self.commitment_body(root, agent_seconds))
            challenge = self._wait_challenge(job_id)
            steps.advance("challenged")
            body = self.answer_body(self.answer(spec, output, tree, challenge))
            self.api.answer(job_id, body)
            steps.advance("answered")
            return self._verdict(job_id, agent_seconds)
        except ApiError as exc:
            if exc.code in ("benchmarks_job_rejected", "benchmarks_job_expired"):
                detail = exc.detail if isinstance(exc.detail, dict) else {}
                state = exc.code.removeprefix("benchmarks_job_")
                return JobResult(job_id, state, detail.get("reason", ""))
            raise
        finally:
            steps.close()

    def _wait_challenge(self, job_id: int) -> dict[str, Any]:
        while True:
            data = self.api.challenge(job_id, self.challenge_wait)
            if data is not None:
                return data["challenge"]

    def _verdict(self, job_id: int, agent_seconds: float) -> JobResult:
        give_up = time.monotonic() + self.verdict_timeout
        while True:
            status = self.api.job(job_id)
            if status["state"] in FINAL_STATES or time.monotonic() > give_up:
                return JobResult(
                    job_id,
                    status["state"],
                    status.get("outcome_reason", ""),
                    status.get("measured_tflops"),
                    agent_seconds,
                )
            time.sleep(0.2)


class _Progress:
    """A four-step tqdm bar per job (compute, commit, challenge, answer), or nothing."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=4, desc=label, unit="step", leave=False)

    def advance(self, what: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(what)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
