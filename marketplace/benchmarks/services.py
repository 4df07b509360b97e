"""BenchmarkJob state machine and the server side of the verification protocol.

queued -> dispatched -> committed -> challenged -> verified | rejected | expired

Every transition is one function here, inside transaction.atomic with the job row locked. Lock
order is job, then machine (machine_suspend), then orders (orders_end_for_machine).
Anything an agent sends is hostile: a malformed payload rejects the job with a recorded reason,
it never raises past the view.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from marketplace.benchmarks import signals
from marketplace.benchmarks.models import (
    BenchmarkJob,
    BenchmarkSuite,
    MachineUptime,
    PlatformIncident,
    Purpose,
    Verdict,
)
from marketplace.benchmarks.suites import device_floor_tflops, suite_specs
from marketplace.core.errors import ConflictError, InvalidTransition, NotFoundError
from marketplace.providers.models import Machine
from workers.kernels import SpecError, spec_from_dict
from workers.verification import (
    answer_size_limit,
    answer_verify,
    challenge_create,
    report_hash,
    throughput_flops_per_second,
)

logger = logging.getLogger(__name__)

State = BenchmarkJob.State

TRANSITIONS: dict[str, set[str]] = {
    State.QUEUED: {State.DISPATCHED, State.EXPIRED},
    State.DISPATCHED: {State.COMMITTED, State.REJECTED, State.EXPIRED},
    State.COMMITTED: {State.CHALLENGED, State.REJECTED, State.EXPIRED},
    State.CHALLENGED: {State.VERIFIED, State.REJECTED, State.EXPIRED},
    State.VERIFIED: set(),
    State.REJECTED: set(),
    State.EXPIRED: set(),
}

# A commitment is {"root": 64 hex chars, "agent_seconds": number}: far below a kilobyte.
MAX_COMMITMENT_BYTES = 1024
MAX_AGENT_SECONDS = 7 * 86400

# Outcomes that end a job without counting against its machine.
NO_FAULT_REASONS = ("suite_failed", "not_dispatched", "platform_unavailable")


class _Malformed(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise _Malformed(f"non-finite number {name} in JSON")


def _parse_json(payload: bytes | str, *, limit: int) -> Any:
    """Strict JSON: size-capped, NaN/Infinity refused (Python's json accepts them by default)."""
    if len(payload) > limit:
        raise _Malformed(f"payload of {len(payload)} bytes exceeds {limit}")
    from workers.verification import safe_json  # depth-bounded: a nested answer cannot SIGSEGV

    try:
        return safe_json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _Malformed(f"payload is not JSON: {exc}") from None


# --- locking and transitions ------------------------------------------------------------------


def _lock(job_id: int) -> BenchmarkJob:
    job = BenchmarkJob.objects.select_for_update().filter(pk=job_id).first()
    if job is None:
        raise NotFoundError("No such benchmark job.", code="benchmarks_job_not_found")
    return job


def _lock_for_agent(job_id: int, machine_id: int) -> BenchmarkJob:
    job = _lock(job_id)
    if job.machine_id != machine_id:
        # Another machine's job is absent, not forbidden: no oracle for job ids.
        raise NotFoundError("No such benchmark job.", code="benchmarks_job_not_found")
    return job


def _transition(job: BenchmarkJob, target: str, **fields: Any) -> BenchmarkJob:
    if target not in TRANSITIONS[job.state]:
        raise InvalidTransition(
            entity="BenchmarkJob", entity_id=job.pk, current=job.state, target=target
        )
    job.state = target
    for name, value in fields.items():
        setattr(job, name, value)
    job.save(update_fields=["state", "updated_at", *fields])
    return job


def _enqueue(task_name: str, job_id: int) -> None:
    # Imported late: workers.benchmark_tasks imports this module.
    def send() -> None:
        from workers import benchmark_tasks

        getattr(benchmark_tasks, task_name).delay(job_id)

    transaction.on_commit(send)


# --- creation and onboarding ------------------------------------------------------------------


def benchmark_job_create(
    *,
    machine_id: int,
    purpose: str,
    spec: dict[str, Any],
    suite_id: int | None = None,
    order_id: int | None = None,
) -> BenchmarkJob:
    parsed = spec_from_dict(spec)
    return BenchmarkJob.objects.create(
        machine_id=machine_id,
        purpose=purpose,
        suite_id=suite_id,
        order_id=order_id,
        kind=parsed.kind,
        spec=parsed.to_dict(),
        precision=parsed.precision,
        flops=parsed.flops,
        seed=secrets.token_hex(32),
    )


@transaction.atomic
def machine_onboarding_start(*, machine_id: int) -> BenchmarkSuite:
    """Queues the onboarding suite: matmul and conv2d at each precision the machine can run."""
    machine = Machine.objects.select_for_update().filter(pk=machine_id).first()
    if machine is None:
        raise NotFoundError("No such machine.", code="benchmarks_machine_not_found")
    running = BenchmarkSuite.objects.filter(
        machine_id=machine_id, state=BenchmarkSuite.State.RUNNING
    ).first()
    if running is not None:
        return running
    if machine.state not in (Machine.State.REGISTERED, Machine.State.SUSPENDED):
        raise ConflictError(
            f"Machine {machine_id} is '{machine.state}'; only a registered or suspended machine "
            "goes through onboarding.",
            code="benchmarks_onboarding_not_allowed",
            extra={"machine_state": machine.state},
        )
    suite = BenchmarkSuite.objects.create(machine_id=machine_id, purpose=Purpose.ONBOARDING)
    for spec in suite_specs(accelerator_kind=machine.accelerator_kind, backends=machine.backends):
        benchmark_job_create(
            machine_id=machine_id, purpose=Purpose.ONBOARDING, spec=spec, suite_id=suite.pk
        )
    return suite


def _onboarding_due(machine_id: int) -> bool:
    """A registered machine with no running or passed suite: its agent's first poll starts one
    (and so does the next poll after a suite that ended without anyone's fault)."""
    return (
        Machine.objects.filter(pk=machine_id, state=Machine.State.REGISTERED).exists()
        and not BenchmarkSuite.objects.filter(
            machine_id=machine_id,
            state__in=(BenchmarkSuite.State.RUNNING, BenchmarkSuite.State.PASSED),
        ).exists()
    )


# --- dispatch ---------------------------------------------------------------------------------


def _deadline_allowance(job: BenchmarkJob) -> timedelta:
    compute = job.flops / settings.BENCHMARK_MIN_RATE_FLOPS
    return timedelta(seconds=settings.BENCHMARK_DEADLINE_BASE_SECONDS + compute)


def benchmark_dispatch_next(*, machine_id: int) -> BenchmarkJob | None:
    """Hands the machine its oldest queued job; the seed is revealed and the clock starts now."""
    if _onboarding_due(machine_id):
        # A concurrent poll may have started it, or the machine changed state meanwhile.
        with contextlib.suppress(IntegrityError, ConflictError):
            machine_onboarding_start(machine_id=machine_id)
    with transaction.atomic():
        if Machine.objects.filter(pk=machine_id, state=Machine.State.SUSPENDED).exists():
            return None
        job = (
            BenchmarkJob.objects.select_for_update()
            .filter(machine_id=machine_id, state=State.QUEUED)
            .order_by("pk")
            .first()
        )
        if job is None:
            return None
        now = timezone.now()
        return _transition(
            job, State.DISPATCHED, dispatched_at=now, deadline=now + _deadline_allowance(job)
        )


# --- commitment -------------------------------------------------------------------------------


def _commitment_parse(payload: bytes | str | dict) -> tuple[str, float]:
    if isinstance(payload, dict):
        data = payload
    else:
        data = _parse_json(payload, limit=MAX_COMMITMENT_BYTES)
    if not isinstance(data, dict) or set(data) != {"root", "agent_seconds"}:
        raise _Malformed("commitment must be an object with exactly 'root' and 'agent_seconds'")
    root, seconds = data["root"], data["agent_seconds"]
    if not (
        isinstance(root, str) and len(root) == 64 and all(c in "0123456789abcdef" for c in root)
    ):
        raise _Malformed("root must be 64 lowercase hex characters")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise _Malformed("agent_seconds must be a number")
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_AGENT_SECONDS:
        raise _Malformed(f"agent_seconds must be a finite number in (0, {MAX_AGENT_SECONDS}]")
    return root, float(seconds)


@transaction.atomic
def benchmark_commit(
    *,
    job_id: int,
    machine_id: int,
    payload: bytes | str | dict,
    received_at: datetime | None = None,
) -> BenchmarkJob:
    """Records the Merkle root; throughput comes from the server's dispatch-to-now span."""
    received_at = received_at or timezone.now()
    job = _lock_for_agent(job_id, machine_id)
    if job.state != State.DISPATCHED:
        raise InvalidTransition(
            entity="BenchmarkJob", entity_id=job.pk, current=job.state, target=State.COMMITTED
        )
    if received_at > job.deadline:
        return _expire_late(job, "commitment after the deadline", until=received_at)
    try:
        root, agent_seconds = _commitment_parse(payload)
    except _Malformed as exc:
        return _fail(job, State.REJECTED, "malformed_commitment", str(exc))
    # A commitment in the same clock tick as dispatch is still a positive span.
    server_seconds = max((received_at - job.dispatched_at).total_seconds(), 1e-6)
    spec = spec_from_dict(job.spec)
    flops_per_second = throughput_flops_per_second(spec, server_seconds, agent_seconds)
    _transition(
        job,
        State.COMMITTED,
        commitment_root=root,
        agent_seconds=agent_seconds,
        committed_at=received_at,
        measured_seconds=spec.flops / flops_per_second,
        measured_tflops=flops_per_second / 1e12,
    )
    _enqueue("benchmark_issue_challenge", job.pk)
    return job


# --- challenge --------------------------------------------------------------------------------


@transaction.atomic
def benchmark_issue_challenge(*, job_id: int) -> BenchmarkJob:
    job = _lock(job_id)
    if job.state == State.CHALLENGED:
        return job  # a retried task
    if job.state != State.COMMITTED:
        raise InvalidTransition(
            entity="BenchmarkJob", entity_id=job.pk, current=job.state, target=State.CHALLENGED
        )
    now = timezone.now()
    challenge = challenge_create(
        spec_from_dict(job.spec), sample_count=settings.BENCHMARK_SAMPLE_COUNT
    )
    # The agent's answer time must not shrink because our worker queue was slow.
    deadline = max(job.deadline, now + timedelta(seconds=settings.BENCHMARK_ANSWER_SECONDS))
    return _transition(
        job, State.CHALLENGED, challenge=challenge, challenged_at=now, deadline=deadline
    )


# --- answer -----------------------------------------------------------------------------------


@transaction.atomic
def benchmark_submit_answer(
    *,
    job_id: int,
    machine_id: int,
    payload: bytes | str,
    received_at: datetime | None = None,
) -> BenchmarkJob:
    """Stores the answer (size-capped, strictly parsed) and queues its verification."""
    received_at = received_at or timezone.now()
    job = _lock_for_agent(job_id, machine_id)
    if job.state != State.CHALLENGED:
        raise InvalidTransition(
            entity="BenchmarkJob", entity_id=job.pk, current=job.state, target="answered"
        )
    if job.answer_received_at is not None:
        raise ConflictError(
            "An answer for this job was already received.", code="benchmarks_answer_exists"
        )
    if received_at > job.deadline:
        return _expire_late(job, "answer after the deadline", until=received_at)
    try:
        limit = answer_size_limit(spec_from_dict(job.spec), job.challenge)
        answer = _parse_json(payload, limit=limit)
    except _Malformed as exc:
        return _fail(job, State.REJECTED, "malformed_answer", str(exc))
    job.answer = answer
    job.answer_received_at = received_at
    job.save(update_fields=["answer", "answer_received_at", "updated_at"])
    _enqueue("benchmark_verify", job.pk)
    return job


# --- verification -----------------------------------------------------------------------------


def benchmark_verify(*, job_id: int) -> BenchmarkJob:
    """Checks the answer (O(k n^2), outside any lock), then records the outcome."""
    job = BenchmarkJob.objects.select_related("machine").get(pk=job_id)
    if job.state != State.CHALLENGED or job.answer_received_at is None:
        return job  # already decided, or a stray retry
    spec = spec_from_dict(job.spec)
    report = answer_verify(spec, job.seed, job.commitment_root, job.challenge, job.answer)
    floor = device_floor_tflops(
        accelerator_kind=job.machine.accelerator_kind,
        model=job.machine.accelerator_model,
        precision=job.precision,
        flops=job.flops,
    )
    with transaction.atomic():
        job = _lock(job_id)
        if job.state != State.CHALLENGED:
            return job
        fields = {"checks": report.checks, "report_hash": report.report_hash}
        if not report.passed:
            return _fail(job, State.REJECTED, report.reason, report.detail, **fields)
        if floor and job.measured_tflops < floor:
            detail = (
                f"measured {job.measured_tflops:.3f} TFLOP/s on {job.precision}; a "
                f"'{job.machine.accelerator_model}' does at least {floor:.3f}"
            )
            return _fail(job, State.REJECTED, "claimed_device_mismatch", detail, **fields)
        return _pass(job, report.detail, **fields)


def _pass(job: BenchmarkJob, detail: str, **fields: Any) -> BenchmarkJob:
    _transition(
        job,
        State.VERIFIED,
        finished_at=timezone.now(),
        outcome_detail=detail,
        answer=None,  # a verified answer is no evidence of anything; the report hash stays
        **fields,
    )
    verdict = _verdict_record(
        key=str(job.pk),
        kind=Verdict.Kind.PASS,
        machine_id=job.machine_id,
        job=job,
        report_hash="0x" + job.report_hash,
        reason="",
        penalised=False,
        order_ids=[],
    )
    machine_id, job_id, digest = job.machine_id, job.pk, verdict.report_hash
    transaction.on_commit(
        lambda: signals.machine_verification_passed.send(
            sender=BenchmarkJob,
            machine_id=machine_id,
            job_id=job_id,
            report_hash=digest,
            verdict_id=verdict.pk,
        )
    )
    if job.suite_id is not None:
        _suite_progress(job.suite_id)
    elif job.kind == "matmul" and job.precision == "fp32":
        _record_listing_tflops(job.machine_id, job.measured_tflops)
    return job


def _record_listing_tflops(machine_id: int, tflops: float) -> None:
    from marketplace.listings.services import listing_record_verified_tflops

    # Jobs run on one device; the listing's figure is for the whole machine.
    count = Machine.objects.values_list("accelerator_count", flat=True).get(pk=machine_id)
    listing_record_verified_tflops(machine_id=machine_id, tflops=tflops * max(1, count))


def _suite_progress(suite_id: int) -> None:
    from marketplace.providers.services import machine_mark_verified

    suite = BenchmarkSuite.objects.select_for_update().get(pk=suite_id)
    if suite.state != BenchmarkSuite.State.RUNNING:
        return
    if suite.jobs.exclude(state=State.VERIFIED).exists():
        return
    suite.state = BenchmarkSuite.State.PASSED
    suite.finished_at = timezone.now()
    suite.save(update_fields=["state", "finished_at", "updated_at"])
    machine_mark_verified(machine_id=suite.machine_id, reason="passed onboarding benchmarks")
    fp32 = suite.jobs.filter(kind="matmul", precision="fp32").order_by("-measured_tflops").first()
    if fp32 is not None:
        _record_listing_tflops(suite.machine_id, fp32.measured_tflops)


def _fail(
    job: BenchmarkJob, target: str, reason: str, detail: str, *, penalise: bool = True, **fields
) -> BenchmarkJob:
    """Rejects or expires a job; unless it was nobody's fault, the machine is suspended, its
    leases end and the payments app hears of it (after commit) to slash."""
    _transition(
        job,
        target,
        finished_at=timezone.now(),
        outcome_reason=reason,
        outcome_detail=detail[:2000],
        **fields,
    )
    if not job.report_hash:
        # Expired and malformed-commitment jobs have no verification report; hash what is known
        # so a slash on chain still points at a reproducible document.
        job.report_hash = report_hash(
            spec_from_dict(job.spec),
            job.seed,
            job.commitment_root or None,
            job.challenge or {},
            {"passed": False, "reason": reason, "state": target},
        )
        job.save(update_fields=["report_hash", "updated_at"])
    if job.suite_id is not None:
        _suite_fail(job.suite_id, reason, exclude_job_id=job.pk)
    if penalise:
        _machine_penalise(job, reason)
    return job


def _suite_fail(suite_id: int, reason: str, *, exclude_job_id: int) -> None:
    suite = BenchmarkSuite.objects.select_for_update().get(pk=suite_id)
    if suite.state != BenchmarkSuite.State.RUNNING:
        return
    suite.state = BenchmarkSuite.State.FAILED
    suite.outcome_reason = reason
    suite.finished_at = timezone.now()
    suite.save(update_fields=["state", "outcome_reason", "finished_at", "updated_at"])
    for other_id in (
        suite.jobs.filter(state__in=BenchmarkJob.OPEN_STATES)
        .exclude(pk=exclude_job_id)
        .order_by("pk")
        .values_list("pk", flat=True)
    ):
        other = _lock(other_id)
        if other.state in BenchmarkJob.OPEN_STATES:
            _fail(other, State.EXPIRED, "suite_failed", f"suite {suite_id} failed", penalise=False)


def _machine_penalise(job: BenchmarkJob, reason: str) -> None:
    from marketplace.orders.services import orders_end_for_machine
    from marketplace.providers.services import machine_suspend

    machine = Machine.objects.select_for_update().get(pk=job.machine_id)
    if machine.state != Machine.State.SUSPENDED:
        machine_suspend(
            machine_id=machine.pk, reason=f"benchmark job {job.pk} {job.state}: {reason}"
        )
    ended = orders_end_for_machine(machine_id=machine.pk, reason=f"failed verification: {reason}")
    # In this transaction, not in a receiver after commit: the settlements of the leases ended
    # above are enqueued on commit too (and before the announcement below), and they cite this
    # row's report hash. Whatever runs first, the row is already there.
    verdict = _verdict_record(
        key=str(job.pk),
        kind=Verdict.Kind.FAIL,
        machine_id=machine.pk,
        job=job,
        report_hash="0x" + job.report_hash,
        reason=reason,
        penalised=True,
        order_ids=ended,
    )
    _announce_failure(verdict)


def _verdict_record(
    *,
    key: str,
    kind: str,
    machine_id: int,
    job: BenchmarkJob | None,
    report_hash: str,
    reason: str,
    penalised: bool,
    order_ids: list[int],
) -> Verdict:
    """Call inside the transaction of the decision. A pass has no effects to enqueue (rewards
    are paid per period from these rows), so it is born claimed."""
    verdict = Verdict.objects.create(
        key=key,
        kind=kind,
        passed=kind == Verdict.Kind.PASS,
        penalised=penalised,
        machine_id=machine_id,
        job=job,
        report_hash=report_hash.lower(),
        reason=reason[:100],
        effects_enqueued_at=timezone.now() if kind == Verdict.Kind.PASS else None,
    )
    if order_ids:
        verdict.orders.set(order_ids)
    return verdict


def _announce_failure(verdict: Verdict) -> None:
    """Tells the payments app, after commit, to enqueue the slash and settlements. If this
    process dies before it does, the payments app's beat sweep finds the unclaimed row."""
    fields = {
        "machine_id": verdict.machine_id,
        "job_id": verdict.job_id if verdict.job_id is not None else verdict.key,
        "report_hash": verdict.report_hash,
        "reason": verdict.reason,
        "order_id": verdict.job.order_id if verdict.job is not None else None,
        "verdict_id": verdict.pk,
    }
    transaction.on_commit(
        lambda: signals.machine_verification_failed.send(sender=Verdict, **fields)
    )


# --- platform incidents -----------------------------------------------------------------------


def platform_incident_server_error(
    *, caused_by: str = "", detail: str = "", now: datetime | None = None
) -> PlatformIncident:
    """A 5xx answer: the platform failed a request around `now`. The window is padded on both
    sides (the agent's retries around it may have failed too); consecutive errors from the
    same caller extend one row instead of writing one row each."""
    now = now or timezone.now()
    pad = timedelta(seconds=settings.PLATFORM_INCIDENT_PAD_SECONDS)
    extended = PlatformIncident.objects.filter(
        source=PlatformIncident.Source.SERVER_ERROR,
        caused_by=caused_by,
        ended_at__gte=now - pad,
    ).update(ended_at=now + pad, updated_at=now)
    incident = (
        PlatformIncident.objects.filter(
            source=PlatformIncident.Source.SERVER_ERROR, caused_by=caused_by
        )
        .order_by("-pk")
        .first()
    )
    if extended and incident is not None:
        return incident
    return PlatformIncident.objects.create(
        source=PlatformIncident.Source.SERVER_ERROR,
        started_at=now - pad,
        ended_at=now + pad,
        caused_by=caused_by,
        detail=detail[:2000],
    )


def platform_health_probe() -> PlatformIncident | None:
    """Beat: asks the API's health endpoint over HTTP, as an agent would reach it (a crashed or
    wedged web tier answers nothing, or a 5xx). Outside any transaction: it waits on the
    network. Does nothing when PLATFORM_HEALTH_URL is empty."""
    import requests

    url = settings.PLATFORM_HEALTH_URL
    if not url:
        return None
    try:
        response = requests.get(url, timeout=settings.PLATFORM_HEALTH_TIMEOUT_SECONDS)
        healthy, detail = response.status_code == 200, f"{url}: HTTP {response.status_code}"
    except requests.RequestException as exc:
        healthy, detail = False, f"{url}: {type(exc).__name__}: {exc}"
    return platform_health_observed(healthy=healthy, detail=detail)


@transaction.atomic
def platform_health_observed(
    *, healthy: bool, detail: str = "", now: datetime | None = None
) -> PlatformIncident | None:
    """Beat's probe of the API's health endpoint: a failure opens an incident (back-dated to
    the previous probe, since the API may have been failing since then), a success closes it.
    Returns the open incident, or None when healthy."""
    now = now or timezone.now()
    source = PlatformIncident.Source.HEALTH_PROBE
    open_ = (
        PlatformIncident.objects.select_for_update()
        .filter(source=source, ended_at__isnull=True)
        .order_by("pk")
    )
    if healthy:
        open_.update(ended_at=now, updated_at=now)
        return None
    incident = open_.first()
    if incident is None:
        since = now - timedelta(seconds=settings.PLATFORM_HEALTH_PROBE_SECONDS)
        incident = PlatformIncident.objects.create(
            source=source, started_at=since, detail=detail[:2000]
        )
    return incident


def _heartbeat_gap(now: datetime) -> PlatformIncident | None:
    """Most recently alive machines stopped heartbeating at once: far likelier that we stopped
    receiving heartbeats (web tier down, a network partition on our side) than that they all
    died together. Records (or extends) a heartbeat_gap incident over the silent span."""
    timeout = timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
    recently_alive = Machine.objects.exclude(state=Machine.State.SUSPENDED).filter(
        last_heartbeat_at__gte=now - settings.PLATFORM_HEARTBEAT_GAP_LOOKBACK * timeout
    )
    total = recently_alive.count()
    silent = recently_alive.filter(last_heartbeat_at__lt=now - timeout)
    silent_count = silent.count()
    if (
        total < settings.PLATFORM_HEARTBEAT_GAP_MIN_MACHINES
        or silent_count < total * settings.PLATFORM_HEARTBEAT_GAP_FRACTION
    ):
        return None
    oldest = min(silent.values_list("last_heartbeat_at", flat=True))
    source = PlatformIncident.Source.HEARTBEAT_GAP
    incident = (
        PlatformIncident.objects.filter(source=source, ended_at__gte=oldest).order_by("pk").first()
    )
    detail = f"{silent_count} of {total} recently alive machines silent for over {timeout}"
    if incident is not None:
        PlatformIncident.objects.filter(pk=incident.pk).update(
            ended_at=now, detail=detail, updated_at=now
        )
        return incident
    return PlatformIncident.objects.create(
        source=source, started_at=oldest, ended_at=now, detail=detail
    )


def platform_failing_during(
    *, start: datetime, end: datetime, machine: Machine | None = None
) -> bool:
    """Whether a platform incident overlaps [start, end]. A 5xx that the machine's own agent
    or owner caused does not excuse that machine: nobody buys an excuse by crashing us."""
    overlapping = PlatformIncident.objects.filter(started_at__lte=end).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gte=start)
    )
    if machine is not None:
        owner_id = machine.provider.owner_id if machine.provider_id else None
        overlapping = overlapping.exclude(
            caused_by__in=[f"machine:{machine.pk}", f"user:{owner_id}"]
        )
    return overlapping.exists()


def _platform_recovering(now: datetime) -> bool:
    """An incident is open, or closed less than one heartbeat timeout ago: agents have not had
    the time to get a heartbeat through yet, so a stale one says nothing about them."""
    since = now - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
    # Not a single 5xx: one failed request does not stop heartbeats, and anyone able to cause
    # one must not be able to pause liveness checks for everybody.
    return (
        PlatformIncident.objects.exclude(source=PlatformIncident.Source.SERVER_ERROR)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=since), started_at__lte=now)
        .exists()
    )


# --- periodic work ----------------------------------------------------------------------------


@transaction.atomic
def benchmark_expire(*, job_id: int, now: datetime | None = None) -> BenchmarkJob:
    """Ends a job past its deadline (or never picked up); refuses one still in time."""
    now = now or timezone.now()
    job = _lock(job_id)
    if job.state == State.QUEUED:
        if job.created_at > now - timedelta(seconds=settings.BENCHMARK_QUEUE_TTL_SECONDS):
            raise ConflictError("The job is not overdue.", code="benchmarks_job_not_overdue")
        # Dodging re-verification while alive counts; an offline or unverified machine does not
        # (going offline has its own consequences, and onboarding simply starts again).
        alive_since = now - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
        dodging = (
            job.purpose != Purpose.ONBOARDING
            and Machine.objects.filter(
                pk=job.machine_id, last_heartbeat_at__gte=alive_since
            ).exists()
        )
        if dodging:
            return _expire_late(job, "job never picked up", since=job.created_at, until=now)
        return _fail(job, State.EXPIRED, "not_dispatched", "job never picked up", penalise=False)
    if job.state not in BenchmarkJob.OPEN_STATES or job.deadline is None or job.deadline >= now:
        raise ConflictError("The job is not overdue.", code="benchmarks_job_not_overdue")
    if job.answer_received_at is not None:
        raise ConflictError(
            "The answer arrived in time; verification is pending.",
            code="benchmarks_job_not_overdue",
        )
    if job.state == State.COMMITTED:
        # The agent did its part; the challenge is ours to issue. Our lost task is no breach.
        return _fail(
            job, State.EXPIRED, "challenge_not_issued", "no challenge was issued", penalise=False
        )
    return _expire_late(job, f"no progress in state '{job.state}'", until=now)


def _expire_late(
    job: BenchmarkJob, detail: str, *, until: datetime, since: datetime | None = None
) -> BenchmarkJob:
    """A missed deadline counts against the machine, unless the platform itself was failing
    while the job was out ([dispatched_at, deadline], or up to `until` when that is earlier):
    then it expires as nobody's fault, and the machine is asked again later."""
    since = since or job.dispatched_at or job.created_at
    until = min(until, job.deadline) if job.deadline is not None else until
    machine = Machine.objects.select_related("provider").get(pk=job.machine_id)
    if platform_failing_during(start=since, end=until, machine=machine):
        return _fail(
            job,
            State.EXPIRED,
            "platform_unavailable",
            f"{detail}, while the platform was failing",
            penalise=False,
        )
    return _fail(job, State.EXPIRED, "deadline_exceeded", detail)


def benchmarks_expire_overdue(*, now: datetime | None = None) -> list[int]:
    now = now or timezone.now()
    queued_cutoff = now - timedelta(seconds=settings.BENCHMARK_QUEUE_TTL_SECONDS)
    due = BenchmarkJob.objects.filter(
        Q(state=State.QUEUED, created_at__lt=queued_cutoff)
        | Q(
            state__in=(State.DISPATCHED, State.COMMITTED, State.CHALLENGED),
            deadline__lt=now,
            answer_received_at__isnull=True,
        )
    ).order_by("pk")
    expired = []
    for job_id in due.values_list("pk", flat=True):
        try:
            benchmark_expire(job_id=job_id, now=now)
            expired.append(job_id)
        except ConflictError:
            pass  # it moved on while we looked
    return expired


def _random_spec(machine: Machine) -> dict[str, Any]:
    # Unpredictable, so a provider cannot keep a fast device around for one known kernel only.
    return secrets.choice(
        suite_specs(accelerator_kind=machine.accelerator_kind, backends=machine.backends)
    )


def benchmarks_schedule_reverification(*, now: datetime | None = None) -> list[int]:
    """Queues a lease job per active lease and a periodic job per verified/listed machine whose
    last check is older than its interval; never two open jobs on one machine from here."""
    from marketplace.orders.models import Order

    now = now or timezone.now()
    created: list[int] = []
    busy = set(
        BenchmarkJob.objects.filter(state__in=BenchmarkJob.OPEN_STATES).values_list(
            "machine_id", flat=True
        )
    )
    lease_since = now - timedelta(seconds=settings.BENCHMARK_LEASE_INTERVAL_SECONDS)
    for order in (
        Order.objects.filter(state=Order.State.ACTIVE).select_related("machine").order_by("pk")
    ):
        if order.machine_id in busy:
            continue
        if BenchmarkJob.objects.filter(order=order, created_at__gte=lease_since).exists():
            continue
        job = benchmark_job_create(
            machine_id=order.machine_id,
            purpose=Purpose.LEASE,
            spec=_random_spec(order.machine),
            order_id=order.pk,
        )
        busy.add(order.machine_id)
        created.append(job.pk)
    periodic_since = now - timedelta(seconds=settings.BENCHMARK_PERIODIC_INTERVAL_SECONDS)
    for machine in Machine.objects.filter(
        state__in=(Machine.State.VERIFIED, Machine.State.LISTED)
    ).order_by("pk"):
        if machine.pk in busy:
            continue
        if BenchmarkJob.objects.filter(machine=machine, created_at__gte=periodic_since).exists():
            continue
        job = benchmark_job_create(
            machine_id=machine.pk, purpose=Purpose.PERIODIC, spec=_random_spec(machine)
        )
        created.append(job.pk)
    return created


def machines_sample_uptime(*, now: datetime | None = None) -> int:
    """One heartbeat-based availability sample per machine that is not suspended."""
    from django.db.models import F

    now = now or timezone.now()
    machines = Machine.objects.exclude(state=Machine.State.SUSPENDED)
    MachineUptime.objects.bulk_create(
        [MachineUptime(machine_id=pk) for pk in machines.values_list("pk", flat=True)],
        ignore_conflicts=True,
    )
    alive_since = now - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
    sampled = MachineUptime.objects.filter(machine__in=machines)
    count = sampled.update(samples=F("samples") + 1)
    sampled.filter(
        machine__last_heartbeat_at__gte=alive_since,
        machine__state__in=[Machine.State.REGISTERED, Machine.State.VERIFIED, Machine.State.LISTED],
    ).update(online_samples=F("online_samples") + 1)
    return count


__all__ = [
    "SpecError",
    "benchmark_commit",
    "benchmark_dispatch_next",
    "benchmark_expire",
    "benchmark_issue_challenge",
    "benchmark_job_create",
    "benchmark_submit_answer",
    "benchmark_verify",
    "benchmarks_expire_overdue",
    "benchmarks_schedule_reverification",
    "machine_onboarding_start",
    "machines_sample_uptime",
]


def benchmarks_requeue_stalled(*, older_than_seconds: int = 30) -> list[int]:
    """Beat: re-sends the challenge or verification task of a job that has waited too long for
    it. The task sent on commit can be lost (a broker restarted without persistence, a worker
    killed holding the message); both tasks are idempotent, so a duplicate changes nothing."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    committed = BenchmarkJob.objects.filter(state=State.COMMITTED, committed_at__lt=cutoff)
    answered = BenchmarkJob.objects.filter(state=State.CHALLENGED, answer_received_at__lt=cutoff)
    requeued = []
    for task_name, jobs in (
        ("benchmark_issue_challenge", committed),
        ("benchmark_verify", answered),
    ):
        for job_id in jobs.order_by("pk").values_list("pk", flat=True):
            _enqueue(task_name, job_id)
            requeued.append(job_id)
    return requeued


def _liveness_report_hash(report: dict[str, Any]) -> str:
    canonical = json.dumps(report, sort_keys=True, separators=(",", ":"))
    return "0x" + hashlib.sha256(canonical.encode()).hexdigest()


def machines_expire_heartbeats() -> list[int]:
    """Beat: every machine whose heartbeat is stale lapses (see machine_heartbeat_lapsed), unless
    most of them fell silent at once, which is recorded as our outage first: one look at the
    whole fleet per sweep, not one per silent machine. Returns the machines taken offline."""
    from marketplace.providers.selectors import machines_with_stale_heartbeat

    with transaction.atomic():
        _heartbeat_gap(timezone.now())
    return [
        machine_id
        for machine_id in machines_with_stale_heartbeat().values_list("pk", flat=True)
        if machine_heartbeat_lapsed(machine_id=machine_id) is not None
    ]


@transaction.atomic
def machine_heartbeat_lapsed(*, machine_id: int) -> list[int] | None:
    """A machine stopped answering heartbeats. It goes offline; its active leases fail (the
    renter pays only the seconds it ran) and its unstarted ones cancel. Breaking a running
    lease is a breach like a failed verification: a liveness verdict, written here with the
    leases it ended, is the report behind the slash and the one their settlements cite.

    The platform's own failures are nobody's fault. While an outage is open (or closed less
    than one heartbeat timeout ago) nothing lapses: agents get one timeout to reach us again.
    A lapse whose silent span [last heartbeat, now] overlaps an incident still takes the
    machine offline and ends its leases (a renter must not pay for a machine nobody can see),
    but its verdict does not penalise: no slash, no lost reward.

    Returns the ended order ids, or None when the machine came back meanwhile (or the
    platform is still recovering)."""
    from marketplace.orders.models import Order
    from marketplace.orders.services import orders_end_for_machine
    from marketplace.providers.services import machine_mark_offline

    now = timezone.now()
    if _platform_recovering(now):
        return None
    machine = machine_mark_offline(machine_id=machine_id)
    if machine is None:
        return None
    ended = orders_end_for_machine(machine_id=machine_id, reason="machine offline")
    broken = sorted(
        Order.objects.filter(pk__in=ended, state=Order.State.FAILED).values_list("pk", flat=True)
    )
    if not broken:
        return ended
    silent_since = machine.last_heartbeat_at or machine.state_changed_at or now
    excused = platform_failing_during(
        start=silent_since,
        end=now,
        machine=Machine.objects.select_related("provider").get(pk=machine_id),
    )
    report = {
        "kind": "liveness",
        "machine_id": machine_id,
        "last_heartbeat_at": machine.last_heartbeat_at.isoformat()
        if machine.last_heartbeat_at
        else None,
        "detected_at": now.isoformat(),
        "heartbeat_timeout_seconds": settings.HEARTBEAT_TIMEOUT_SECONDS,
        "broken_orders": broken,
        "platform_incident": excused,
    }
    verdict = _verdict_record(
        key=f"liveness-{machine_id}-{int(now.timestamp())}",
        kind=Verdict.Kind.LIVENESS,
        machine_id=machine_id,
        job=None,
        report_hash=_liveness_report_hash(report),
        reason="machine_offline_platform_incident" if excused else "machine_offline",
        penalised=not excused,
        order_ids=ended,
    )
    _announce_failure(verdict)
    return ended
