"""Periodic work: re-verification jobs for leased and listed machines, the short deadline of a
lease's own checks, the check of a machine back from offline, uptime samples, and re-sending the
tasks of jobs that waited too long for them."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob, MachineUptime, Purpose
from marketplace.benchmarks.services.jobs import _expire_late, benchmark_job_create
from marketplace.benchmarks.services.transitions import State, _enqueue, _lock
from marketplace.benchmarks.suites import suite_specs
from marketplace.providers.models import Machine


def _random_spec(machine: Machine) -> dict[str, Any]:
    # Unpredictable, so a provider cannot keep a fast device around for one known kernel only;
    # drawn from the claim's suite, at a precision the machine was verified in.
    specs = suite_specs(
        accelerator_kind=machine.accelerator_kind,
        model=machine.accelerator_model,
        backends=machine.backends,
    )
    verified = set(machine.verified_precisions or [])
    return secrets.choice([s for s in specs if s["precision"] in verified] or specs)


def _jobs_per_device(machine: Machine, **fields: Any) -> list[int]:
    """The same kernel on every verified device at once, each job bound to its device: one
    device cannot keep answering for the others after onboarding either."""
    spec = _random_spec(machine)
    indices = [entry["index"] for entry in machine.verified_devices or []] or [0]
    return [
        benchmark_job_create(machine_id=machine.pk, spec=spec, device_index=index, **fields).pk
        for index in indices
    ]


def benchmarks_schedule_reverification(*, now: datetime | None = None) -> list[int]:
    """Queues a lease job per active lease and a periodic job per verified/listed machine whose
    last check is older than its interval, together with every machine sharing its owner or
    wallet; never two open jobs on one machine from here."""
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
        created += _jobs_per_device(order.machine, purpose=Purpose.LEASE, order_id=order.pk)
        busy.add(order.machine_id)
    periodic_since = now - timedelta(seconds=settings.BENCHMARK_PERIODIC_INTERVAL_SECONDS)
    eligible = list(
        Machine.objects.filter(state__in=(Machine.State.VERIFIED, Machine.State.LISTED))
        .select_related("provider")
        .order_by("pk")
    )
    recent = set(
        BenchmarkJob.objects.filter(
            machine__in=eligible, created_at__gte=periodic_since
        ).values_list("machine_id", flat=True)
    )
    due = [m for m in eligible if m.pk not in busy and m.pk not in recent]
    # Sybil and relay resistance: machines that share an owner or a wallet address with a due
    # machine are checked at the same moment, due or not. A relay (one device behind several
    # registrations) then serves all of them at once, its throughput splits, and each job
    # falls below its claimed device's floor.
    owners = {m.provider.owner_id for m in due}
    wallets = {m.provider.wallet_address.lower() for m in due if m.provider.wallet_address}
    for machine in eligible:
        if machine.pk in busy:
            continue
        cohort = machine.provider.owner_id in owners or (
            (machine.provider.wallet_address or "").lower() in wallets
        )
        if machine.pk in recent and not cohort:
            continue
        created += _jobs_per_device(machine, purpose=Purpose.PERIODIC)
        busy.add(machine.pk)
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
        machine__state__in=[
            Machine.State.REGISTERED,
            Machine.State.VERIFIED,
            Machine.State.LISTED,
            Machine.State.REVERIFYING,
        ],
    ).update(online_samples=F("online_samples") + 1)
    return count


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


# --- leases checked while they run ------------------------------------------------------------


def _machine_alive(machine: Machine, now: datetime) -> bool:
    """Heartbeating now, by the freshest source: the Redis buffer or the flushed row."""
    from marketplace.providers.heartbeats import machines_last_seen

    seen = [machine.last_heartbeat_at, machines_last_seen(machine_ids=[machine.pk]).get(machine.pk)]
    latest = max((at for at in seen if at is not None), default=None)
    return latest is not None and latest >= now - timedelta(
        seconds=settings.HEARTBEAT_TIMEOUT_SECONDS
    )


@transaction.atomic
def lease_check_expire_unfetched(
    *, job_id: int, now: datetime | None = None
) -> BenchmarkJob | None:
    """A lease's check that its machine has not fetched within LEASE_CHECK_DEADLINE_SECONDS,
    while the machine heartbeats, is a dodged check: it expires as the machine's fault
    (deadline_exceeded, unless the platform was failing meanwhile), which suspends the machine,
    fails the lease with a penalising verdict (refund, slash) and bills it only to its last
    passed check (orders.order_served_until). A silent machine is left to the heartbeat lapse,
    which fails the lease at the heartbeat timeout. None when nothing was due."""
    now = now or timezone.now()
    job = _lock(job_id)
    cutoff = now - timedelta(seconds=settings.LEASE_CHECK_DEADLINE_SECONDS)
    if job.state != State.QUEUED or job.purpose != Purpose.LEASE or job.created_at > cutoff:
        return None
    machine = Machine.objects.get(pk=job.machine_id)
    if not _machine_alive(machine, now):
        return None
    return _expire_late(job, "lease check never fetched", since=job.created_at, until=now)


def lease_checks_expire_unfetched(*, now: datetime | None = None) -> list[int]:
    """Beat: every lease check queued past its fetch deadline (see lease_check_expire_unfetched).
    A fetched check that is not answered by its own deadline (minutes: BENCHMARK_DEADLINE_BASE_
    SECONDS plus its FLOPs at the minimum rate) is expired by benchmarks_expire_overdue."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.LEASE_CHECK_DEADLINE_SECONDS)
    due = BenchmarkJob.objects.filter(
        state=State.QUEUED, purpose=Purpose.LEASE, created_at__lte=cutoff
    ).order_by("pk")
    return [
        job_id
        for job_id in due.values_list("pk", flat=True)
        if lease_check_expire_unfetched(job_id=job_id, now=now) is not None
    ]


def machines_reverify_returned(*, now: datetime | None = None) -> list[int]:
    """Beat: a machine back from offline (`reverifying`) gets one check per verified device;
    once a check created since its return has passed and none is open, it returns to listed
    (when its listing is still active) or verified. A failed or dodged check suspends it through
    the usual verdict path. Returns the machines that returned."""
    from marketplace.listings.models import Listing
    from marketplace.providers.services import machine_mark_reverified

    now = now or timezone.now()
    returned = []
    for machine in Machine.objects.filter(state=Machine.State.REVERIFYING).order_by("pk"):
        since = machine.state_changed_at or now
        checks = BenchmarkJob.objects.filter(machine=machine, created_at__gte=since)
        if checks.filter(state__in=BenchmarkJob.OPEN_STATES).exists():
            continue
        if not checks.filter(state=State.VERIFIED).exists():
            # None yet, or the last one ended without a verdict on the machine (a platform
            # outage, never picked up while it was offline again): ask again.
            with transaction.atomic():
                _jobs_per_device(machine, purpose=Purpose.PERIODIC)
            continue
        listed = Listing.objects.filter(
            machine_id=machine.pk, status=Listing.Status.ACTIVE
        ).exists()
        if machine_mark_reverified(machine_id=machine.pk, listed=listed) is not None:
            returned.append(machine.pk)
    return returned
