"""Celery tasks of the workloads app: thin, as in workers/tasks.py."""

from celery import shared_task


@shared_task(soft_time_limit=60, time_limit=90, acks_late=False)
def workloads_sweep() -> dict[str, list[int]]:
    from marketplace.workloads.services import workloads_sweep as sweep

    return sweep()
