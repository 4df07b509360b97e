"""The BenchmarkJob state machine: its transitions, row locks and the tasks a transition
enqueues on commit.

queued -> dispatched -> committed -> challenged -> verified | rejected | expired

Lock order is job, then machine (machine_suspend), then orders (orders_end_for_machine).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.core.errors import InvalidTransition, NotFoundError

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
