"""Celery tasks for the market dashboard: thin, each calls one service."""

from celery import shared_task
from django.db import OperationalError


# Idempotent per interval (unique interval start), so a retry after a lost connection is safe.
@shared_task(
    soft_time_limit=30,
    time_limit=60,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=3,
)
def market_snapshot_take() -> str:
    from marketplace.dashboard.services import market_snapshot_take as take
    from marketplace.dashboard.services import market_snapshots_prune

    snapshot, created = take()
    market_snapshots_prune()
    return f"{snapshot.taken_at.isoformat()} {'created' if created else 'exists'}"
