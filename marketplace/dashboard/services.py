from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.core.errors import ApplicationError
from marketplace.dashboard.models import MachineStaffAction, MarketSnapshot
from marketplace.dashboard.selectors import market_now
from marketplace.listings.models import Listing
from marketplace.providers import services as provider_services
from marketplace.providers.models import Machine


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


def _reason_required(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Say why: a reason is required.", code="dashboard_reason_required")
    return reason


@transaction.atomic
def machine_staff_suspend(*, machine_id: int, staff: User, reason: str) -> MachineStaffAction:
    """Suspends through the providers service (its transition rules; an offline machine stays
    suspended when it returns) and records who and why in the same transaction."""
    reason = _reason_required(reason)
    before = Machine.objects.select_for_update().get(pk=machine_id).state
    machine = provider_services.machine_suspend(
        machine_id=machine_id, reason=f"{reason} (staff: {staff.username})"
    )
    return MachineStaffAction.objects.create(
        machine=machine,
        action=MachineStaffAction.Action.SUSPEND,
        reason=reason,
        staff=staff,
        state_before=before,
        state_after=machine.state,
    )


@transaction.atomic
def machine_staff_reinstate(*, machine_id: int, staff: User, reason: str) -> MachineStaffAction:
    """Lifts a suspension; a machine whose listing is still active goes back on the market."""
    reason = _reason_required(reason)
    before = Machine.objects.select_for_update().get(pk=machine_id).state
    listed = Listing.objects.filter(machine_id=machine_id, status=Listing.Status.ACTIVE).exists()
    machine = provider_services.machine_reinstate(
        machine_id=machine_id, reason=f"{reason} (staff: {staff.username})", listed=listed
    )
    return MachineStaffAction.objects.create(
        machine=machine,
        action=MachineStaffAction.Action.REINSTATE,
        reason=reason,
        staff=staff,
        state_before=before,
        state_after=machine.state,
    )
