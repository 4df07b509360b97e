"""Operational checks: thin tasks that call one service each."""

from celery import shared_task
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout

from marketplace.payments.chain import TransientChainError


@shared_task(
    # One view call per lease and stake: minutes on a big market, so a generous limit.
    soft_time_limit=240,
    time_limit=280,
    # Read-only and idempotent (alerts are deduplicated), but the next beat run is never far
    # off, so a lost run is not worth a redelivery.
    acks_late=False,
    autoretry_for=(TransientChainError, RequestsConnectionError, Timeout),
    retry_backoff=5,
    max_retries=3,
)
def payments_reconcile() -> dict:
    from marketplace.payments.reconciliation import reconcile, reconcile_alert

    result = reconcile()
    counts = reconcile_alert(result=result)
    return {
        "differences": len(result.differences),
        "block": result.block,
        "chain_reset": result.reset is not None,
        **counts,
    }


@shared_task(
    # One HTTP request with a 10 s timeout; a probe that outlives its interval says enough.
    soft_time_limit=30,
    time_limit=45,
    acks_late=False,
)
def platform_health_probe() -> int | None:
    from marketplace.benchmarks.services import platform_health_probe as probe

    incident = probe()
    return incident.pk if incident is not None else None
