"""Periodic work: re-verification jobs for leased and listed machines, uptime samples, and
re-sending the tasks of jobs that waited too long for them."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob, MachineUptime, Purpose
from marketplace.benchmarks.services.jobs import benchmark_job_create
from marketplace.benchmarks.services.transitions import State, _enqueue
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
        created += _jobs_per_device(order.machine, purpose=Purpose.LEASE, order_id=order.pk)
        busy.add(order.machine_id)
    periodic_since = now - timedelta(seconds=settings.BENCHMARK_PERIODIC_INTERVAL_SECONDS)
    for machine in Machine.objects.filter(
        state__in=(Machine.State.VERIFIED, Machine.State.LISTED)
    ).order_by("pk"):
        if machine.pk in busy:
            continue
        if BenchmarkJob.objects.filter(machine=machine, created_at__gte=periodic_since).exists():
            continue
        created += _jobs_per_device(machine, purpose=Purpose.PERIODIC)
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
