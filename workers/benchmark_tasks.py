"""Celery tasks for benchmarks: thin. Each takes ids and calls one service."""

import logging

from celery import shared_task
from django.db import OperationalError

logger = logging.getLogger(__name__)

# Only a lost database connection or a lock timeout is worth retrying; a refused transition or
# a bad spec would fail the same way again.
_TRANSIENT = (OperationalError,)
_RETRY = {
    "autoretry_for": _TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 5,
}


# A message for a job that does not exist is one left in Redis by an earlier run against another
# database (`make clean-run`, a killed worker): nothing to do, and not an error to trace.
GONE = "gone"


def _job_gone(task: str, job_id: int) -> str:
    logger.warning(
        "%s: benchmark job %s does not exist (a message from another database?)", task, job_id
    )
    return GONE


@shared_task(soft_time_limit=30, time_limit=60, **_RETRY)
def benchmark_issue_challenge(job_id: int) -> str:
    from marketplace.benchmarks.services import benchmark_issue_challenge as issue
    from marketplace.core.errors import NotFoundError

    try:
        return issue(job_id=job_id).state
    except NotFoundError:
        return _job_gone("benchmark_issue_challenge", job_id)


# Verification of the largest GPU job regenerates two 8192^2 inputs: seconds, not minutes.
@shared_task(soft_time_limit=300, time_limit=360, **_RETRY)
def benchmark_verify(job_id: int) -> str:
    from marketplace.benchmarks.models import BenchmarkJob
    from marketplace.benchmarks.services import benchmark_verify as verify

    try:
        return verify(job_id=job_id).state
    except BenchmarkJob.DoesNotExist:
        return _job_gone("benchmark_verify", job_id)


@shared_task(soft_time_limit=60, time_limit=90)
def benchmarks_expire_overdue() -> list[int]:
    from marketplace.benchmarks.services import benchmarks_expire_overdue as expire

    expired = expire()
    if expired:
        logger.info("expired benchmark jobs: %s", expired)
    return expired


@shared_task(soft_time_limit=60, time_limit=90)
def benchmarks_schedule_reverification() -> list[int]:
    from marketplace.benchmarks.services import benchmarks_schedule_reverification as schedule

    return schedule()


@shared_task(soft_time_limit=30, time_limit=60)
def benchmarks_requeue_stalled() -> list[int]:
    from marketplace.benchmarks.services import benchmarks_requeue_stalled as requeue

    return requeue()


@shared_task(soft_time_limit=30, time_limit=60)
def benchmarks_sample_uptime() -> int:
    from marketplace.benchmarks.services import machines_sample_uptime

    return machines_sample_uptime()


@shared_task(soft_time_limit=60, time_limit=90)
def lease_checks_expire_unfetched() -> list[int]:
    from marketplace.benchmarks.services import lease_checks_expire_unfetched as expire

    expired = expire()
    if expired:
        logger.info("lease checks never fetched: %s", expired)
    return expired


@shared_task(soft_time_limit=60, time_limit=90)
def machines_reverify_returned() -> list[int]:
    from marketplace.benchmarks.services import machines_reverify_returned as reverify

    return reverify()


__all__ = [
    "benchmark_issue_challenge",
    "benchmark_verify",
    "benchmarks_expire_overdue",
    "benchmarks_requeue_stalled",
    "benchmarks_sample_uptime",
    "benchmarks_schedule_reverification",
    "lease_checks_expire_unfetched",
    "machines_reverify_returned",
]
