from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from marketplace.dashboard.models import MarketSnapshot
from marketplace.dashboard.selectors import market_now


def snapshot_interval_start(*, now: datetime, seconds: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def market_snapshot_take(*, now: datetime | None = None) -> tuple[MarketSnapshot, bool]:
    """Records the market once per DASHBOARD_SNAPSHOT_SECONDS interval; returns (row, created).

    Idempotent per interval: beat may deliver a run twice or late, and a worker may retry it;
    the first run of an interval wins (its figures are the ones closest to the interval start)
    and the unique `taken_at` makes a concurrent second run find that row instead of adding one.
    """
    now = now or timezone.now()
    taken_at = snapshot_interval_start(now=now, seconds=settings.DASHBOARD_SNAPSHOT_SECONDS)
    existing = MarketSnapshot.objects.filter(taken_at=taken_at).first()
    if existing is not None:
        return existing, False
    figures = market_now(now=now)
    by_state = figures["machines_by_state"]
    return MarketSnapshot.objects.get_or_create(
        taken_at=taken_at,
        defaults={
            "machines_registered": by_state.get("registered", 0),
            "machines_verified": by_state.get("verified", 0),
            "machines_listed": by_state.get("listed", 0),
            "machines_suspended": by_state.get("suspended", 0),
            "machines_offline": by_state.get("offline", 0),
            "machines_online": figures["machines_online"],
            "escrow_amount": figures["escrow_amount"],
            "escrow_orders": figures["escrow_orders"],
        },
    )


def market_snapshots_prune(*, now: datetime | None = None, keep_days: int = 90) -> int:
    """Drops snapshots older than the dashboard ever draws, so the table stays bounded."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=keep_days)
    deleted, _ = MarketSnapshot.objects.filter(taken_at__lt=cutoff).delete()
    return deleted
