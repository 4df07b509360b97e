import hashlib
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.base import File
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.core.errors import (
    ApplicationError,
    ConflictError,
    InvalidTransition,
    NotFoundError,
)
from marketplace.core.text import plural
from marketplace.orders.models import Order
from marketplace.providers.models import Machine
from marketplace.workloads import archives
from marketplace.workloads.models import Workload, WorkloadEvent, WorkloadLogChunk
from marketplace.workloads.signals import workload_ended

logger = logging.getLogger(__name__)

State = Workload.State

# The workload state machine (docs: workloads design section).
WORKLOAD_TRANSITIONS: dict[str, set[str]] = {
    State.QUEUED: {State.STARTING, State.CANCELLED},
    State.STARTING: {State.RUNNING, State.FAILED, State.CANCELLED, State.LOST},
    State.RUNNING: {State.SUCCEEDED, State.FAILED, State.CANCELLED, State.TIMED_OUT, State.LOST},
    State.SUCCEEDED: set(),
    State.FAILED: set(),
    State.CANCELLED: set(),
    State.TIMED_OUT: set(),
    State.LOST: set(),
}

# What the agent may report as a workload's end.
OUTCOMES = {"exited", "timed_out", "error"}


def limit(name: str) -> int:
    """The workloads app's limits, overridable in settings (WORKLOAD_*)."""
    defaults = {
        "INPUT_MAX_BYTES": 64 * 2**20,
        "INPUT_MAX_UNPACKED_BYTES": 2**30,
        "INPUT_MAX_MEMBERS": 10_000,
        "RESULT_MAX_BYTES": 256 * 2**20,
        "LOG_MAX_BYTES": 16 * 2**20,
        "LOG_CHUNK_MAX_BYTES": 64 * 2**10,
        # Twice the heartbeat timeout: an agent that lost its connection for a heartbeat or
        # two (a proxy restart) keeps its workloads; one gone for longer is not coming back.
        "SILENCE_SECONDS": 2 * settings.HEARTBEAT_TIMEOUT_SECONDS,
        "MAX_QUEUED_PER_ORDER": 20,
    }
    return int(getattr(settings, f"WORKLOAD_{name}", defaults[name]))


def _lease_end(order: Order) -> datetime:
    return order.started_at + timedelta(seconds=order.duration_seconds)


def _transition(workload: Workload, target: str, *, reason: str = "", **fields) -> Workload:
    """Writes a transition on a locked workload and its event row, in the caller's transaction."""
    if target not in WORKLOAD_TRANSITIONS[workload.state]:
        raise InvalidTransition(
            entity="Workload", entity_id=workload.pk, current=workload.state, target=target
        )
    source = workload.state
    workload.state = target
    workload.reason = reason[:300]
    if target in Workload.FINAL:
        fields.setdefault("finished_at", timezone.now())
    for name, value in fields.items():
        setattr(workload, name, value)
    workload.save(update_fields=["state", "reason", "updated_at", *fields])
    WorkloadEvent.objects.create(
        workload=workload, from_state=source, to_state=target, reason=reason[:300]
    )
    if target in Workload.FINAL:
        kwargs = {
            "workload_id": workload.pk,
            "order_id": workload.order_id,
            "state": target,
            "reason": workload.reason,
        }
        transaction.on_commit(lambda: workload_ended.send(sender=Workload, **kwargs))
    return workload


def _lock(workload_id: int, *, machine_id: int | None = None) -> Workload:
    qs = Workload.objects.select_for_update().filter(pk=workload_id)
    if machine_id is not None:
        qs = qs.filter(machine_id=machine_id)
    workload = qs.first()
    if workload is None:
        raise NotFoundError("No such workload.", code="workloads_not_found")
    return workload


# --- the renter's side ----------------------------------------------------------------------


def workload_submit(
    *,
    user: User,
    order_id: int,
    argv: list[str],
    env: dict[str, str] | None = None,
    result_paths: list[str] | None = None,
    time_limit_seconds: int | None = None,
    archive: File | None = None,
) -> Workload:
    """Queues a workload on one of the renter's active leases. The archive is checked (every
    entry inside the work directory, size caps) before anything is written; the order row is
    locked so that a lease ending at the same moment either refuses this workload or cancels it
    (its order_ended receiver runs after this commits)."""
    input_size, digest = 0, ""
    if archive is not None:
        input_size = archive.size
        if input_size > limit("INPUT_MAX_BYTES"):
            raise ApplicationError(
                f"The input archive is larger than {limit('INPUT_MAX_BYTES')} bytes.",
                code="workloads_archive_too_large",
                status_code=413,
                extra={"max_bytes": limit("INPUT_MAX_BYTES")},
            )
        archive.seek(0)
        archives.archive_check(
            archive,
            max_unpacked_bytes=limit("INPUT_MAX_UNPACKED_BYTES"),
            max_members=limit("INPUT_MAX_MEMBERS"),
        )
        archive.seek(0)
        sha = hashlib.sha256()
        for piece in archive.chunks():
            sha.update(piece)
        digest = sha.hexdigest()
        archive.seek(0)

    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None or (order.renter_id != user.pk and not user.is_staff):
            raise NotFoundError("No such order.", code="orders_not_found")
        if order.state != Order.State.ACTIVE:
            raise ConflictError(
                f"Workloads run only on an active lease; this order is {order.state}.",
                code="workloads_order_not_active",
                extra={"order_state": order.state},
            )
        now = timezone.now()
        remaining = int((_lease_end(order) - now).total_seconds())
        if remaining <= 0:
            raise ConflictError("This lease has run out.", code="workloads_order_not_active")
        if time_limit_seconds is None:
            time_limit_seconds = remaining
        elif time_limit_seconds > remaining:
            raise ApplicationError(
                f"The time limit passes the lease's end ({remaining} s from now).",
                code="workloads_time_limit_past_lease",
                extra={"max_time_limit_seconds": remaining},
            )
        queued = Workload.objects.filter(order=order, state__in=Workload.OPEN).count()
        if queued >= limit("MAX_QUEUED_PER_ORDER"):
            raise ConflictError(
                f"This lease already has {plural(queued, 'workload')} waiting or running.",
                code="workloads_too_many_queued",
                extra={"max_open": limit("MAX_QUEUED_PER_ORDER")},
            )
        workload = Workload(
            order=order,
            machine_id=order.machine_id,
            argv=argv,
            env=env or {},
            result_paths=result_paths or [],
            time_limit_seconds=time_limit_seconds,
            input_size=input_size,
            input_sha256=digest,
        )
        if archive is not None:
            # Stored inside the transaction so a refused row leaves no row; a file left by a
            # rollback is removed below.
            workload.input_archive.save(f"{order.pk}-{digest[:16]}.tar", archive, save=False)
        try:
            workload.save()
            WorkloadEvent.objects.create(workload=workload, to_state=State.QUEUED)
        except BaseException:
            if workload.input_archive:
                workload.input_archive.delete(save=False)
            raise
    return workload


@transaction.atomic
def workload_cancel(*, user: User, order_id: int, workload_id: int) -> Workload:
    """The renter stops a workload. A queued one never runs; a starting or running one is
    killed by the agent, which sees the state on its next log post or ping."""
    workload = _lock(workload_id)
    if workload.order_id != order_id or (workload.order.renter_id != user.pk and not user.is_staff):
        raise NotFoundError("No such workload.", code="workloads_not_found")
    return _transition(workload, State.CANCELLED, reason="cancelled by renter")


# --- the agent's side -----------------------------------------------------------------------


@transaction.atomic
def workload_claim_next(*, machine_id: int) -> Workload | None:
    """The agent asks for work: the oldest queued workload of an active lease on its machine
    whose lease has nothing else handed out (one lease's workloads run one at a time; leases
    run side by side). A claimed workload is never handed out twice: an agent that lost the
    reply, or restarted before starting it, leaves it starting until the sweep marks it lost."""
    now = timezone.now()
    busy_orders = Workload.objects.filter(machine_id=machine_id, state__in=Workload.LIVE).values(
        "order_id"
    )
    workload = (
        Workload.objects.select_for_update()
        .filter(machine_id=machine_id, state=State.QUEUED, order__state=Order.State.ACTIVE)
        .exclude(order_id__in=busy_orders)
        .order_by("pk")
        .first()
    )
    if workload is None:
        return None
    lease_end = _lease_end(workload.order)
    deadline = min(now + timedelta(seconds=workload.time_limit_seconds), lease_end)
    return _transition(
        workload,
        State.STARTING,
        reason="handed to the agent",
        claimed_at=now,
        deadline_at=deadline,
        last_report_at=now,
    )


@transaction.atomic
def workload_start(*, machine_id: int, workload_id: int) -> Workload:
    """The agent launched the sandbox. Repeating it (a lost reply) answers the same."""
    workload = _lock(workload_id, machine_id=machine_id)
    now = timezone.now()
    if workload.state == State.RUNNING:
        return workload
    if workload.state != State.STARTING:
        return workload  # cancelled or lost meanwhile: the agent reads the state and stops
    return _transition(
        workload, State.RUNNING, reason="sandbox started", started_at=now, last_report_at=now
    )


@transaction.atomic
def workload_ping(*, machine_id: int, workload_id: int) -> Workload:
    """The agent is still on it (no output for a while); answers the state, so that a cancelled
    workload is killed within one ping interval."""
    workload = _lock(workload_id, machine_id=machine_id)
    if workload.state in Workload.LIVE:
        workload.last_report_at = timezone.now()
        workload.save(update_fields=["last_report_at", "updated_at"])
    return workload


@transaction.atomic
def workload_log_append(
    *, machine_id: int, workload_id: int, seq: int, stream: str, data: bytes
) -> tuple[Workload, bool]:
    """Stores one chunk of output; returns (workload, stored). Chunks come in seq order: a
    resent chunk (seq below the next expected) is acknowledged and not written again; a gap is
    refused with the seq expected, so the agent resends from there. Past the per-workload cap,
    chunks are acknowledged and dropped, and the log says it was cut."""
    if len(data) > limit("LOG_CHUNK_MAX_BYTES"):
        raise ApplicationError(
            f"A log chunk holds at most {limit('LOG_CHUNK_MAX_BYTES')} bytes.",
            code="workloads_chunk_too_large",
            status_code=413,
        )
    workload = _lock(workload_id, machine_id=machine_id)
    if workload.state not in Workload.LIVE:
        return workload, False
    if seq < workload.log_next_seq:
        return workload, False
    if seq > workload.log_next_seq:
        raise ConflictError(
            f"Log chunk {seq} arrived before chunk {workload.log_next_seq}.",
            code="workloads_log_gap",
            extra={"expected_seq": workload.log_next_seq},
        )
    room = limit("LOG_MAX_BYTES") - workload.log_bytes
    kept = data[: max(0, room)]
    fields = {"log_next_seq": seq + 1, "last_report_at": timezone.now()}
    if kept:
        try:
            with transaction.atomic():
                WorkloadLogChunk.objects.create(
                    workload=workload, seq=seq, stream=stream, offset=workload.log_bytes, data=kept
                )
        except IntegrityError:
            return workload, False  # already stored by a concurrent resend
        fields["log_bytes"] = workload.log_bytes + len(kept)
    if len(kept) < len(data) and not workload.log_truncated:
        fields["log_truncated"] = True
    for name, value in fields.items():
        setattr(workload, name, value)
    workload.save(update_fields=[*fields, "updated_at"])
    return workload, bool(kept)


def workload_finish(
    *,
    machine_id: int,
    workload_id: int,
    outcome: str,
    exit_code: int | None,
    reason: str = "",
    result: File | None = None,
) -> Workload:
    """The agent reports the end: the exit code, or a timeout, or an error that kept it from
    running (a missing sandbox, a bad archive), and the result archive. A workload that was
    cancelled or lost meanwhile keeps that state; a repeated report answers the same."""
    if outcome not in OUTCOMES:
        raise ApplicationError(
            f"outcome is one of {sorted(OUTCOMES)}.", code="workloads_bad_outcome"
        )
    if outcome == "exited" and exit_code is None:
        raise ApplicationError(
            "An exited workload reports its exit_code.", code="workloads_bad_outcome"
        )
    stored_name = ""
    if result is not None and result.size > limit("RESULT_MAX_BYTES"):
        raise ApplicationError(
            f"The result archive is larger than {limit('RESULT_MAX_BYTES')} bytes.",
            code="workloads_result_too_large",
            status_code=413,
        )
    with transaction.atomic():
        workload = _lock(workload_id, machine_id=machine_id)
        if workload.state not in Workload.LIVE:
            return workload
        if outcome == "exited":
            target = State.SUCCEEDED if exit_code == 0 else State.FAILED
            reason = reason or f"exited with code {exit_code}"
        elif outcome == "timed_out":
            target, reason = State.TIMED_OUT, reason or "time limit reached; killed"
        else:
            target, reason = State.FAILED, reason or "the agent could not run it"
        fields = {"exit_code": exit_code, "last_report_at": timezone.now()}
        if result is not None:
            workload.result_archive.save(f"{workload.pk}-result.tar.gz", result, save=False)
            stored_name = workload.result_archive.name
            fields["result_archive"] = workload.result_archive.name
            fields["result_size"] = result.size
        try:
            return _transition(workload, target, reason=reason, **fields)
        except BaseException:
            if stored_name:
                workload.result_archive.storage.delete(stored_name)
            raise


# --- lifecycle ------------------------------------------------------------------------------


def workloads_end_for_order(*, order_id: int, reason: str) -> list[int]:
    """The lease ended: its queued workloads are cancelled, its running ones too (the agent
    kills them on its next post), or lost when the machine itself went offline."""
    ended = []
    offline = Machine.objects.filter(orders__pk=order_id, state=Machine.State.OFFLINE).exists()
    ids = Workload.objects.filter(order_id=order_id, state__in=Workload.OPEN).values_list(
        "pk", flat=True
    )
    for workload_id in sorted(ids):
        with transaction.atomic():
            workload = _lock(workload_id)
            if workload.state not in Workload.OPEN:
                continue
            target = State.LOST if offline and workload.state in Workload.LIVE else State.CANCELLED
            _transition(workload, target, reason=f"lease ended: {reason}"[:300])
            ended.append(workload_id)
    return ended


def workloads_sweep(*, now: datetime | None = None) -> dict[str, list[int]]:
    """Beat: a live workload whose agent has been silent past WORKLOAD_SILENCE_SECONDS is lost;
    an open workload whose lease has ended (a lost order_ended signal) is closed."""
    now = now or timezone.now()
    silent_before = now - timedelta(seconds=limit("SILENCE_SECONDS"))
    lost = []
    for workload_id in (
        Workload.objects.filter(state__in=Workload.LIVE, last_report_at__lt=silent_before)
        .order_by("pk")
        .values_list("pk", flat=True)
    ):
        with transaction.atomic():
            workload = _lock(workload_id)
            if workload.state in Workload.LIVE and workload.last_report_at < silent_before:
                _transition(workload, State.LOST, reason="the agent stopped reporting")
                lost.append(workload_id)
    closed = []
    ended_orders = (
        Workload.objects.filter(state__in=Workload.OPEN)
        .exclude(order__state=Order.State.ACTIVE)
        .values_list("order_id", "order__end_reason")
        .distinct()
    )
    for order_id, end_reason in sorted(set(ended_orders)):
        closed += workloads_end_for_order(order_id=order_id, reason=end_reason or "ended")
    return {"lost": lost, "closed": closed}
