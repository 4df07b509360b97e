"""One job through the verification protocol: creation and onboarding, dispatch, commitment,
challenge, answer, verification and expiry. Every transition is one function here, inside
transaction.atomic with the job row locked.

Anything an agent sends is hostile: a malformed payload rejects the job with a recorded reason,
it never raises past the view.
"""

from __future__ import annotations

import contextlib
import math
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob, BenchmarkSuite, Purpose
from marketplace.benchmarks.services.incidents import platform_failing_during
from marketplace.benchmarks.services.transitions import (
    State,
    _enqueue,
    _lock,
    _lock_for_agent,
    _transition,
)
from marketplace.benchmarks.services.verdicts import _fail, _pass
from marketplace.benchmarks.suites import cpu_job_sized, job_bounds, suite_specs
from marketplace.core.errors import ConflictError, InvalidTransition, NotFoundError
from marketplace.providers.models import Machine
from workers.kernels import job_spec_from_dict, spec_from_dict
from workers.verification import (
    answer_size_limit,
    answer_verify,
    challenge_create,
    throughput_flops_per_second,
)
from workers.verification import sketch as chain_sketch

# A commitment is {"root": 64 hex chars, "agent_seconds": number, "device": the identity of the
# device that ran the job}: far below a kilobyte.
MAX_COMMITMENT_BYTES = 1024
# A chain-sketch job's one message: {"sketch": the payload (at most 160 KiB of float32 values,
# base64), "agent_seconds", "device"}. The view reads at most this much; the service holds each
# job to its own spec's size.
MAX_SKETCH_BODY_BYTES = 4 * -(-chain_sketch.SKETCH_BUDGET_BYTES // 3) + 2048
MAX_AGENT_SECONDS = 7 * 86400
MAX_DEVICE_ID_CHARS = 128
_DEVICE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-")


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


# --- creation and onboarding ------------------------------------------------------------------


def benchmark_job_create(
    *,
    machine_id: int,
    purpose: str,
    spec: dict[str, Any],
    suite_id: int | None = None,
    order_id: int | None = None,
    device_index: int = 0,
) -> BenchmarkJob:
    parsed = job_spec_from_dict(spec)
    return BenchmarkJob.objects.create(
        machine_id=machine_id,
        purpose=purpose,
        suite_id=suite_id,
        order_id=order_id,
        device_index=device_index,
        kind=parsed.family,
        spec=parsed.to_dict(),
        precision=parsed.precision,
        flops=parsed.flops,
        seed=secrets.token_hex(32),
    )


@transaction.atomic
def machine_onboarding_start(*, machine_id: int) -> BenchmarkSuite:
    """Queues the onboarding suite: the claimed device's jobs (matmul and conv2d at each of its
    precisions) once for every claimed device, each job bound to its device index. Jobs are
    created spec by spec across the devices, so that the dispatcher hands the devices the same
    kernel at the same time."""
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
    specs = suite_specs(
        accelerator_kind=machine.accelerator_kind,
        model=machine.accelerator_model,
        backends=machine.backends,
    )
    for spec in specs:
        for device_index in range(max(1, machine.accelerator_count)):
            benchmark_job_create(
                machine_id=machine_id,
                purpose=Purpose.ONBOARDING,
                spec=spec,
                suite_id=suite.pk,
                device_index=device_index,
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


def queued_for_free_devices(machine_id: int) -> QuerySet[BenchmarkJob]:
    """Queued jobs of the machine whose device has no job out (dispatched, committed or
    challenged)."""
    busy = BenchmarkJob.objects.filter(
        machine_id=machine_id, state__in=(State.DISPATCHED, State.COMMITTED, State.CHALLENGED)
    ).values_list("device_index", flat=True)
    return BenchmarkJob.objects.filter(machine_id=machine_id, state=State.QUEUED).exclude(
        device_index__in=list(busy)
    )


def machine_rates(machine_id: int) -> dict[tuple[str, str], float]:
    """The machine's latest verified chain-job figure (FLOP/s) per (kernel, precision)."""
    rates: dict[tuple[str, str], float] = {}
    verified = (
        BenchmarkJob.objects.filter(
            machine_id=machine_id, state=State.VERIFIED, measured_tflops__gt=0
        )
        .order_by("-pk")
        .values_list("kind", "precision", "spec", "measured_tflops")
    )
    for kind, precision, spec, tflops in verified[:200]:
        if isinstance(spec, dict) and str(spec.get("kind", "")).endswith("_chain"):
            rates.setdefault((kind, precision), tflops * 1e12)
    return rates


def _sized_for_machine(job: BenchmarkJob) -> dict[str, Any]:
    """A CPU machine's job sized for what the machine was measured to do (suites.cpu_job_sized):
    decided here, before the seed is revealed, and written into the job's spec."""
    if not Machine.objects.filter(pk=job.machine_id, accelerator_kind="cpu").exists():
        return {}
    sized = cpu_job_sized(job.spec, machine_rates(job.machine_id))
    if sized == job.spec:
        return {}
    parsed = job_spec_from_dict(sized)
    return {"spec": parsed.to_dict(), "flops": parsed.flops}


def benchmark_dispatch_next(*, machine_id: int) -> BenchmarkJob | None:
    """Hands the machine its oldest queued job for a device that has no job out; the seed is
    revealed and the clock starts now. One job per device at a time: the agent polls again at
    once to get its other devices' jobs and runs them side by side, so no device waits behind
    another's job while its own clock runs."""
    if _onboarding_due(machine_id):
        # A concurrent poll may have started it, or the machine changed state meanwhile.
        with contextlib.suppress(IntegrityError, ConflictError):
            machine_onboarding_start(machine_id=machine_id)
    with transaction.atomic():
        if Machine.objects.filter(pk=machine_id, state=Machine.State.SUSPENDED).exists():
            return None
        job = queued_for_free_devices(machine_id).select_for_update().order_by("pk").first()
        if job is None:
            return None
        sized = _sized_for_machine(job)
        for name, value in sized.items():
            setattr(job, name, value)  # the deadline below follows the sized job's FLOPs
        now = timezone.now()
        return _transition(
            job,
            State.DISPATCHED,
            dispatched_at=now,
            deadline=now + _deadline_allowance(job),
            **sized,
        )


# --- commitment -------------------------------------------------------------------------------


def _commitment_parse(
    payload: bytes | str | dict, *, device_required: bool
) -> tuple[str, float, str]:
    if isinstance(payload, dict):
        data = payload
    else:
        data = _parse_json(payload, limit=MAX_COMMITMENT_BYTES)
    keys = {"root", "agent_seconds", "device"}
    if not isinstance(data, dict) or not (keys - {"device"} <= set(data) <= keys):
        raise _Malformed(
            "commitment must be an object with 'root', 'agent_seconds' and 'device' (the "
            "device may be left out only by a machine that claims a single device)"
        )
    root = data["root"]
    if not (
        isinstance(root, str) and len(root) == 64 and all(c in "0123456789abcdef" for c in root)
    ):
        raise _Malformed("root must be 64 lowercase hex characters")
    seconds, device = _seconds_and_device(data, device_required=device_required)
    return root, seconds, device


def _seconds_and_device(data: dict[str, Any], *, device_required: bool) -> tuple[float, str]:
    """The agent's own timing (it can only lower the figure) and the device that ran the job."""
    if device_required and "device" not in data:
        raise _Malformed(
            "a machine that claims several devices must name the one that ran this job"
        )
    seconds = data["agent_seconds"]
    device = data.get("device", "")
    if "device" in data and not (
        isinstance(device, str)
        and 0 < len(device) <= MAX_DEVICE_ID_CHARS
        and set(device) <= _DEVICE_ID_CHARS
    ):
        raise _Malformed(
            f"device must be the device's UUID or PCI bus id: 1 to {MAX_DEVICE_ID_CHARS} "
            "characters of [A-Za-z0-9:._-]"
        )
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise _Malformed("agent_seconds must be a number")
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_AGENT_SECONDS:
        raise _Malformed(f"agent_seconds must be a finite number in (0, {MAX_AGENT_SECONDS}]")
    return float(seconds), device


def _device_required(job: BenchmarkJob) -> bool:
    single = Machine.objects.filter(pk=job.machine_id, accelerator_count__lte=1).exists()
    return not single or job.device_index > 0


# How long a device identity stays bound to the machine it answered for. A card that changes
# hands (a sale) can serve another machine after this; a relay cannot serve two at once.
DEVICE_BINDING_DAYS = 30


def _device_conflict(job: BenchmarkJob, device: str) -> str:
    """Why `device` may not answer this job, or "". An accelerator answers for one machine: a
    device identity seen on another machine's jobs (a relay, or a machine rejected for cheating
    back under a new name) is refused. Within a suite, one physical device answers one device
    index (the suite row is locked, so two sibling commitments are decided one after the other);
    outside one, index i must be answered by the device verified at index i."""
    # CPU identities are the host's machine-id, which every agent on one host shares (the demo
    # and the tests run several); a CPU relay is caught by its split throughput instead.
    if not device.startswith("cpu-"):
        since = timezone.now() - timedelta(days=DEVICE_BINDING_DAYS)
        other = (
            BenchmarkJob.objects.filter(device_uuid=device, updated_at__gte=since)
            .exclude(machine_id=job.machine_id)
            .values_list("machine_id", flat=True)
            .first()
        )
        if other is not None:
            return (
                f"device {device} answered for machine {other} in the last "
                f"{DEVICE_BINDING_DAYS} days; one device cannot serve two machines"
            )
    if job.suite_id is not None:
        BenchmarkSuite.objects.select_for_update().filter(pk=job.suite_id).first()
        other = (
            BenchmarkJob.objects.filter(suite_id=job.suite_id, device_uuid=device)
            .exclude(device_index=job.device_index)
            .values_list("device_index", flat=True)
            .first()
        )
        if other is not None:
            return (
                f"device {device} already answered device {other}'s job in this suite; it "
                f"cannot also be device {job.device_index}"
            )
        earlier = (
            BenchmarkJob.objects.filter(suite_id=job.suite_id, device_index=job.device_index)
            .exclude(device_uuid__in=("", device))
            .values_list("device_uuid", flat=True)
            .first()
        )
        if earlier is not None:
            return f"device {job.device_index} answered earlier jobs as {earlier}, now as {device}"
        return ""
    verified = Machine.objects.values_list("verified_devices", flat=True).get(pk=job.machine_id)
    bound = {entry["index"]: entry["uuid"] for entry in verified or []}
    if job.device_index in bound and bound[job.device_index] != device:
        expected = bound[job.device_index]
        return f"device {job.device_index} was verified as {expected}; {device} answered"
    return ""


def _lock_dispatched(job_id: int, machine_id: int) -> BenchmarkJob:
    """The agent's job, locked; only a dispatched job takes a commitment or a sketch."""
    job = _lock_for_agent(job_id, machine_id)
    if job.state != State.DISPATCHED:
        raise InvalidTransition(
            entity="BenchmarkJob", entity_id=job.pk, current=job.state, target=State.COMMITTED
        )
    return job


def _refuse_reused_device(job: BenchmarkJob, device: str) -> BenchmarkJob | None:
    """The job rejected as device_reused when `device` may not answer it, else None."""
    conflict = _device_conflict(job, device) if device else ""
    if not conflict:
        return None
    job.device_uuid = device
    job.save(update_fields=["device_uuid", "updated_at"])
    return _fail(job, State.REJECTED, "device_reused", conflict)


def _commit(
    job: BenchmarkJob,
    spec: Any,
    *,
    root: str,
    agent_seconds: float,
    device: str,
    received_at: datetime,
) -> None:
    """Committed, with the figure from the server's dispatch-to-now span (never shorter than
    the agent's own time)."""
    # A commitment in the same clock tick as dispatch is still a positive span.
    server_seconds = max((received_at - job.dispatched_at).total_seconds(), 1e-6)
    flops_per_second = throughput_flops_per_second(spec, server_seconds, agent_seconds)
    _transition(
        job,
        State.COMMITTED,
        commitment_root=root,
        agent_seconds=agent_seconds,
        device_uuid=device,
        committed_at=received_at,
        measured_seconds=spec.flops / flops_per_second,
        measured_tflops=flops_per_second / 1e12,
    )


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
    job = _lock_dispatched(job_id, machine_id)
    if received_at > job.deadline:
        return _expire_late(job, "commitment after the deadline", until=received_at)
    spec = job_spec_from_dict(job.spec)
    if spec.protocol == chain_sketch.PROTOCOL_FAMILY:
        return _fail(
            job,
            State.REJECTED,
            "malformed_commitment",
            "a chain-sketch job is answered in one message at its sketch endpoint, not with a "
            "Merkle root",
        )
    try:
        root, agent_seconds, device = _commitment_parse(
            payload, device_required=_device_required(job)
        )
    except _Malformed as exc:
        return _fail(job, State.REJECTED, "malformed_commitment", str(exc))
    refused = _refuse_reused_device(job, device)
    if refused is not None:
        return refused
    _commit(
        job, spec, root=root, agent_seconds=agent_seconds, device=device, received_at=received_at
    )
    _enqueue("benchmark_issue_challenge", job.pk)
    return job


# --- chain-sketch jobs: one message --------------------------------------------------------


def _sketch_parse(payload: bytes | str, spec, *, device_required: bool) -> tuple[dict, float, str]:
    limit = chain_sketch.payload_size_limit(spec) + 1024
    data = _parse_json(payload, limit=limit)
    keys = {"sketch", "agent_seconds", "device"}
    if not isinstance(data, dict) or not (keys - {"device"} <= set(data) <= keys):
        raise _Malformed(
            "a sketch message must be an object with 'sketch', 'agent_seconds' and 'device' "
            "(the device may be left out only by a machine that claims a single device)"
        )
    if not isinstance(data["sketch"], dict):
        raise _Malformed("sketch must be the payload object {protocol, job, shape, y}")
    seconds, device = _seconds_and_device(data, device_required=device_required)
    return data["sketch"], seconds, device


@transaction.atomic
def benchmark_submit_sketch(
    *,
    job_id: int,
    machine_id: int,
    payload: bytes | str,
    received_at: datetime | None = None,
) -> BenchmarkJob:
    """A chain-sketch job's answer, which is also its commitment: the span from dispatch to now
    is the job's time (the kernel dominates it: the payload is O(units), at most 175 KB). No
    challenge goes back to the agent: the verifier draws the units it recomputes only once the
    payload is stored, from the OS CSPRNG (workers/verification/sketch.py). The job passes
    through committed (the payload's digest) and challenged (the draw is the verifier's) in one
    transaction, so the expiry, re-sending and verdict paths are the Merkle job's."""
    received_at = received_at or timezone.now()
    job = _lock_dispatched(job_id, machine_id)
    if received_at > job.deadline:
        return _expire_late(job, "sketch after the deadline", until=received_at)
    spec = job_spec_from_dict(job.spec)
    if spec.protocol != chain_sketch.PROTOCOL_FAMILY:
        return _fail(
            job,
            State.REJECTED,
            "malformed_answer",
            "a Merkle job is answered with a commitment and a challenge answer, not a sketch",
        )
    try:
        sketch, agent_seconds, device = _sketch_parse(
            payload, spec, device_required=_device_required(job)
        )
    except _Malformed as exc:
        return _fail(job, State.REJECTED, "malformed_answer", str(exc))
    refused = _refuse_reused_device(job, device)
    if refused is not None:
        return refused
    _commit(
        job,
        spec,
        root=chain_sketch.payload_digest(sketch),
        agent_seconds=agent_seconds,
        device=device,
        received_at=received_at,
    )
    _transition(
        job,
        State.CHALLENGED,
        challenge={
            "protocol": chain_sketch.PROTOCOL,
            "sample_count": settings.BENCHMARK_SKETCH_SAMPLE_COUNT,
            "units": "drawn by the verifier after the payload arrived (OS CSPRNG)",
        },
        challenged_at=received_at,
        answer=sketch,
        answer_received_at=received_at,
    )
    _enqueue("benchmark_verify", job.pk)
    return job


# --- challenge --------------------------------------------------------------------------------


@transaction.atomic
def benchmark_issue_challenge(*, job_id: int) -> BenchmarkJob:
    job = _lock(job_id)
    if job.state == State.CHALLENGED:
        return job  # a retried task
    if job.state in BenchmarkJob.FINAL_STATES:
        return job  # ended meanwhile (a sibling's rejection failed its suite): nothing to ask
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
    spec = job_spec_from_dict(job.spec)
    if spec.protocol == chain_sketch.PROTOCOL_FAMILY:
        report = chain_sketch.sketch_verify(
            spec, job.seed, job.answer, sample_count=job.challenge["sample_count"]
        )
        checks = report.figures
    else:
        report = answer_verify(spec, job.seed, job.commitment_root, job.challenge, job.answer)
        checks = report.checks
    floor, ceiling = job_bounds(
        accelerator_kind=job.machine.accelerator_kind,
        model=job.machine.accelerator_model,
        vcpu_count=job.machine.vcpu_count,
        spec=spec,
    )
    with transaction.atomic():
        job = _lock(job_id)
        if job.state != State.CHALLENGED:
            return job
        fields = {
            "checks": checks,
            "report_hash": report.report_hash,
            "report_document": report.document,
        }
        if not report.passed:
            return _fail(job, State.REJECTED, report.reason, report.detail, **fields)
        claimed = f"a '{job.machine.accelerator_model}' ({job.machine.accelerator_kind})"
        if job.measured_tflops < floor:
            detail = (
                f"measured {job.measured_tflops:.6f} TFLOP/s on {job.kind}/{job.precision}; "
                f"{claimed} does at least {floor:.6f}"
            )
            return _fail(job, State.REJECTED, "claimed_device_mismatch", detail, **fields)
        if job.measured_tflops > ceiling:
            detail = (
                f"measured {job.measured_tflops:.3f} TFLOP/s on {job.kind}/{job.precision}; "
                f"{claimed} cannot exceed {ceiling:.3f}: more silicon answered than was claimed"
            )
            return _fail(job, State.REJECTED, "above_ceiling", detail, **fields)
        return _pass(job, report.detail, **fields)


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
