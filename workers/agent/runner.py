"""One benchmark job, end to end.

Two protocols, chosen by the job's spec (`spec.protocol`):
- chain-sketch (every floating-point precision): generate the inputs on the device, run the L
  layers, send the O(units) sketch in one message; the server recomputes units it draws itself.
- merkle (int8, exact integers): compute, commit to a Merkle root, wait for the challenge, answer.

JobRunner is the production path. Each protocol step is one method so tests can build cheating
agents by overriding exactly one step and keeping the rest honest.

Each job names the device it must run on (`device_index`, the CUDA index); the runner pins the
kernel to it and reports that device's identity (UUID or PCI bus id) with the commitment. The
server hands out one job per device at a time, so run_batch() takes every device's job at once
and runs them side by side, one thread per device.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from workers.agent import hardware
from workers.agent.client import AgentApi, ApiError, ServerUnreachable, backoff_seconds
from workers.kernels import (
    CHAIN_PRECISIONS,
    BackendError,
    ChainSpec,
    ConvChainSpec,
    JobSpec,
    MatmulChainSpec,
    Spec,
    available_backends,
    best_backend,
    job_spec_from_dict,
    prepare,
    spec_from_dict,
    supports,
)
from workers.kernels.chain_run import chain_backends, chain_prepare
from workers.verification import challenge_answer, commitment_create
from workers.verification.sketch import PROTOCOL_FAMILY as CHAIN_PROTOCOL
from workers.verification.sketch import sketch_document

FINAL_STATES = ("verified", "rejected", "expired")
# The shapes of the CPU suite's jobs (marketplace/benchmarks/suites.py: matmul rows 1024, n 512
# whatever its layers; conv 32 x 32, 3 x 3, 256 channels at the base batch), one layer each. fp16
# is left out: a CPU runs it at ~1 GFLOP/s, so the warm-up would cost seconds for a job that
# lasts one to three anyway.
CPU_SUITE_WARM_UP = {
    precision: [
        MatmulChainSpec(n=512, rows=1024, layers=1, precision=precision),
        ConvChainSpec(
            batch=8,
            channels=256,
            height=32,
            width=32,
            kernel_size=3,
            layers=1,
            precision=precision,
        ),
    ]
    for precision in ("fp32", "bf16", "int8")
}
# What handle() reports for a job it stopped trying to deliver: the server stayed unreachable
# (or kept failing) until the job's deadline. Not a server state.
ABANDONED = "abandoned"
# For a job that names no deadline (an older server): how long to keep retrying a step.
DEFAULT_RETRY_SECONDS = 300
# Jobs taken in one batch at most: one per device, and no host has more devices than this.
MAX_PARALLEL_JOBS = 64


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _deadline(raw: Any, now: datetime) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return now + timedelta(seconds=DEFAULT_RETRY_SECONDS)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _GaveUp(Exception):
    pass


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
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.backend = backend
        self.progress = progress
        self.challenge_wait = challenge_wait
        self.verdict_timeout = verdict_timeout
        # Injected so that tests drive retries without waiting for real time to pass.
        self.sleep, self.clock, self.rng = sleep, clock, rng or random.Random()
        # Jobs this host found it cannot run (job id -> why), so a repeat is not retried.
        self.cannot_run: dict[int, str] = {}

    # --- the protocol steps (override one to build a cheater) --------------------------------

    def compute(self, spec: Spec, seed: str) -> np.ndarray:
        backend = self.backend if self.backend else best_backend(spec)
        prepared = prepare(spec, seed, backend)
        raw = prepared.run()
        prepared.sync()
        return prepared.result(raw)

    def commitment(self, spec: Spec, output: np.ndarray) -> tuple[str, Any]:
        return commitment_create(spec, output)

    def backend_for(self, spec: JobSpec) -> str:
        if self.backend:
            return self.backend
        if spec.protocol == CHAIN_PROTOCOL:
            options = chain_backends(spec.precision, spec.family)
            if not options:
                raise BackendError(f"no backend here runs chain jobs in {spec.precision}")
            return options[0]
        return best_backend(spec)

    def sketch(self, spec: ChainSpec, seed: str) -> np.ndarray:
        """A chain job's answer Y = X_L . V: inputs generated on the device, L layers, sketch."""
        prepared = chain_prepare(spec, seed, self.backend_for(spec))
        y = prepared.run()
        prepared.sync()
        return y

    def sketch_body(
        self, spec: ChainSpec, seed: str, y: np.ndarray, agent_seconds: float, device: str
    ) -> bytes:
        body = {
            "sketch": sketch_document(spec, seed, y),
            "agent_seconds": agent_seconds,
            "device": device,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def device_id(self, index: int, spec: Spec) -> str:
        """The identity of the device this job ran on, as the server binds it."""
        return hardware.device_identity(index, self.backend_for(spec))

    def pinned(self, index: int, spec: Spec):
        return hardware.device_pin(index, self.backend_for(spec))

    def commitment_body(self, root: str, agent_seconds: float, device: str = "") -> bytes:
        device = device or hardware.device_identity(0, self.backend or "numpy")
        return json.dumps({"root": root, "agent_seconds": agent_seconds, "device": device}).encode()

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

    def warm_up(self) -> None:
        """Runs a tiny job of each kernel and precision on each backend once, before the first
        job is taken: importing torch, starting its thread pools or a CUDA context takes
        seconds, and inside a job's server-timed span that is time the device did not compute
        (enough to fall below a small job's floor)."""
        if getattr(self, "_warm", False):
            return
        self._warm = True
        tiny = [
            {"kind": "matmul", "n": 8},
            {
                "kind": "conv2d",
                "batch": 1,
                "in_channels": 2,
                "out_channels": 2,
                "height": 4,
                "width": 4,
                "kernel_size": 3,
                "stride": 1,
                "padding": 1,
            },
        ]
        backends = [self.backend] if self.backend else available_backends()
        for precision in CHAIN_PRECISIONS:
            chains = [
                MatmulChainSpec(n=64, layers=1, rows=8, precision=precision),
                ConvChainSpec(
                    batch=1,
                    channels=8,
                    height=4,
                    width=4,
                    kernel_size=3,
                    layers=1,
                    precision=precision,
                ),
            ]
            if precision in CPU_SUITE_WARM_UP:
                # One layer at the CPU suite's matmul and conv shapes: oneDNN builds (JITs) a
                # kernel per shape on its first call, 20-40 ms of CPU inside the job's span
                # otherwise (measured for int8 and bf16 on this repository's CI box). Random
                # inputs of a fixed seed: nothing about any job is known here.
                chains += CPU_SUITE_WARM_UP[precision]
            for chain in chains:
                options = chain_backends(precision, chain.family)
                if chain.units > 64:
                    options = options[:1]  # a suite shape: only the backend its job runs on
                for backend in options:
                    if self.backend and backend != self.backend:
                        continue
                    try:
                        chain_prepare(chain, "00" * 32, backend).run()
                    except (BackendError, RuntimeError):
                        continue
        for raw in tiny:
            for precision in ("fp32", "bf16", "fp16", "int8"):
                try:
                    spec = spec_from_dict({**raw, "precision": precision})
                except ValueError:
                    continue
                for backend in backends:
                    if not supports(backend, spec):
                        continue
                    try:
                        prepared = prepare(spec, "00" * 32, backend)
                        prepared.result(prepared.run())
                    except (BackendError, RuntimeError):
                        continue

    def run_once(self, wait: int = 25) -> JobResult | None:
        self.warm_up()
        job = self.api.next_job(wait)
        if job is None:
            return None
        return self.handle(job)

    def run_batch(self, wait: int = 25) -> list[JobResult]:
        """Waits for a job, then takes every other job the server hands out right away (one per
        device that has none out) and runs them all at the same time, one thread each."""
        self.warm_up()
        first = self.api.next_job(wait)
        if first is None:
            return []
        jobs = [first]
        # The server says whether another device has a job waiting (older servers do not:
        # then ask). A second poll for nothing would sit inside the first job's timed span.
        while jobs[-1].get("more_jobs", True) and len(jobs) < MAX_PARALLEL_JOBS:
            try:
                more = self.api.next_job(0)
            except (ServerUnreachable, ApiError):
                break  # run what we hold; the server hands the rest out on the next poll
            # The server repeats a job it dispatched once it has nothing new for a free device.
            if more is None or any(more["id"] == job["id"] for job in jobs):
                break
            jobs.append(more)
        if all(job["id"] in self.cannot_run for job in jobs):
            # The server repeats the jobs this host cannot run until they expire: do not spin.
            self.sleep(max(1, wait))
        if len(jobs) == 1:
            return [self.handle(first)]
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="device") as pool:
            return list(pool.map(self.handle, jobs))

    def handle(self, job: dict[str, Any]) -> JobResult:
        job_id = job["id"]
        deadline = _deadline(job.get("deadline"), self.clock())
        steps = _Progress(self.progress, f"job {job_id} {job['kind']}/{job['precision']}")
        try:
            spec = job_spec_from_dict(job["spec"])
            index = int(job.get("device_index") or 0)
            if job_id in self.cannot_run:
                return JobResult(job_id, ABANDONED, self.cannot_run[job_id])
            if spec.protocol == CHAIN_PROTOCOL:
                return self._handle_chain(job, spec, index, deadline, steps)
            start = time.perf_counter()
            try:
                with self.pinned(index, spec):
                    output = self.compute(spec, job["seed"])
                    device = self.device_id(index, spec)
            except (BackendError, RuntimeError) as exc:
                # A device this host does not have, or a precision no backend here runs: the
                # job is left to expire (a device that times out is dropped, not counted), and
                # the agent goes on with its other devices' jobs instead of dying.
                self.cannot_run[job_id] = f"cannot run on device {index}: {exc}"
                return JobResult(job_id, ABANDONED, self.cannot_run[job_id])
            steps.advance("computed")
            root, tree = self.commitment(spec, output)
            agent_seconds = max(time.perf_counter() - start, 1e-9)
            steps.advance("committed")
            commit_body = self.commitment_body(root, agent_seconds, device)
            self._until_deadline(
                lambda: self.api.commit(job_id, commit_body), deadline, _commit_landed
            )
            challenge, deadline = self._wait_challenge(job_id, deadline)
            steps.advance("challenged")
            body = self.answer_body(self.answer(spec, output, tree, challenge))
            self._until_deadline(lambda: self.api.answer(job_id, body), deadline, _answer_landed)
            steps.advance("answered")
            return self._verdict(job_id, agent_seconds)
        except _GaveUp as exc:
            return JobResult(job_id, ABANDONED, f"server unreachable until the deadline: {exc}")
        except ApiError as exc:
            if exc.code in ("benchmarks_job_rejected", "benchmarks_job_expired"):
                detail = exc.detail if isinstance(exc.detail, dict) else {}
                state = exc.code.removeprefix("benchmarks_job_")
                return JobResult(job_id, state, detail.get("reason", ""))
            raise
        finally:
            steps.close()

    def _handle_chain(
        self,
        job: dict[str, Any],
        spec: ChainSpec,
        index: int,
        deadline: datetime,
        steps: _Progress,
    ) -> JobResult:
        """One message: the sketch, with this device's identity and the agent's own time."""
        job_id = job["id"]
        start = time.perf_counter()
        try:
            with self.pinned(index, spec):
                y = self.sketch(spec, job["seed"])
                device = self.device_id(index, spec)
        except (BackendError, RuntimeError) as exc:
            self.cannot_run[job_id] = f"cannot run on device {index}: {exc}"
            return JobResult(job_id, ABANDONED, self.cannot_run[job_id])
        agent_seconds = max(time.perf_counter() - start, 1e-9)
        steps.advance("computed")
        body = self.sketch_body(spec, job["seed"], y, agent_seconds, device)
        self._until_deadline(lambda: self.api.sketch(job_id, body), deadline, _sketch_landed)
        steps.advance("sent")
        return self._verdict(job_id, agent_seconds)

    def _until_deadline(
        self, call: Callable[[], Any], deadline: datetime, landed: Callable[[ApiError], bool]
    ) -> Any:
        """Calls call() until the server takes it, retrying a server-side failure (5xx, refused
        connection, timeout) with exponential backoff and jitter until the job's deadline: a
        platform outage must not cost an honest machine its job. A retry can find that an
        earlier attempt did land (its reply was what got lost): landed(exc) says so for the
        server's "already done" conflict, which then counts as success."""
        attempt = 0
        while True:
            try:
                return call()
            except ServerUnreachable as exc:
                remaining = (deadline - self.clock()).total_seconds()
                if remaining <= 0:
                    raise _GaveUp(str(exc)) from None
                self.sleep(min(backoff_seconds(attempt, self.rng), remaining))
                attempt += 1
            except ApiError as exc:
                if attempt and landed(exc):
                    return None
                raise

    def _wait_challenge(self, job_id: int, deadline: datetime) -> tuple[dict[str, Any], datetime]:
        """The challenge and the job's deadline, which the server extends when it issues the
        challenge. While the server answers, it decides when the wait ends (it expires the job);
        while it does not, the wait ends at the deadline."""
        while True:
            data = self._until_deadline(
                lambda: self.api.challenge(job_id, self.challenge_wait), deadline, _never
            )
            if data is not None:
                return data["challenge"], _deadline(data.get("deadline", deadline), deadline)

    def _verdict(self, job_id: int, agent_seconds: float) -> JobResult:
        give_up = time.monotonic() + self.verdict_timeout
        attempt = 0
        while True:
            try:
                status = self.api.job(job_id)
            except ServerUnreachable:
                # The answer is in; only the report of the verdict is delayed.
                if time.monotonic() > give_up:
                    raise
                self.sleep(backoff_seconds(attempt, self.rng))
                attempt += 1
                continue
            if status["state"] in FINAL_STATES or time.monotonic() > give_up:
                return JobResult(
                    job_id,
                    status["state"],
                    status.get("outcome_reason", ""),
                    status.get("measured_tflops"),
                    agent_seconds,
                )
            self.sleep(0.2)


def _never(exc: ApiError) -> bool:
    return False


def _commit_landed(exc: ApiError) -> bool:
    """A repeated commitment is refused as an invalid transition once the first one moved the
    job on."""
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    return exc.code.endswith("_invalid_transition") and detail.get("current_state") in (
        "committed",
        "challenged",
    )


def _sketch_landed(exc: ApiError) -> bool:
    """A repeated sketch is refused as an invalid transition once the first one was taken."""
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    return exc.code.endswith("_invalid_transition") and detail.get("current_state") in (
        "committed",
        "challenged",
        "verified",
        "rejected",
    )


def _answer_landed(exc: ApiError) -> bool:
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    return exc.code == "benchmarks_answer_exists" or (
        exc.code.endswith("_invalid_transition")
        and detail.get("current_state") in ("verified", "rejected")
    )


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
