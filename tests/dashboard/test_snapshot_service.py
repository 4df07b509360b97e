from datetime import UTC, datetime, timedelta

import pytest

from marketplace.dashboard.models import MarketSnapshot
from marketplace.dashboard.services import market_snapshot_take, market_snapshots_prune
from marketplace.orders.services import order_create, order_mark_funded
from marketplace.providers.models import Machine
from tests.factories import ListingFactory, MachineFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_snapshot_is_taken_once_per_interval(settings):
    settings.DASHBOARD_SNAPSHOT_SECONDS = 300
    first, created = market_snapshot_take(now=T0 + timedelta(seconds=10))
    MachineFactory(last_heartbeat_at=T0 + timedelta(seconds=250))
    again, created_again = market_snapshot_take(now=T0 + timedelta(seconds=299))
    assert created and not created_again
    assert again.pk == first.pk and again.taken_at == T0
    # The first run of the interval wins: the later machine is not counted into it.
    assert MarketSnapshot.objects.get().machines_online == 0

    later, created_later = market_snapshot_take(now=T0 + timedelta(seconds=300))
    assert created_later and later.taken_at == T0 + timedelta(seconds=300)
    assert later.machines_online == 1
    assert MarketSnapshot.objects.count() == 2


def test_snapshot_counts_machines_by_state_and_only_fresh_heartbeats_as_online(settings):
    settings.HEARTBEAT_TIMEOUT_SECONDS = 90
    MachineFactory(state=Machine.State.LISTED, last_heartbeat_at=T0 - timedelta(seconds=30))
    MachineFactory(state=Machine.State.VERIFIED, last_heartbeat_at=T0 - timedelta(seconds=600))
    MachineFactory(state=Machine.State.SUSPENDED, last_heartbeat_at=T0)
    MachineFactory(state=Machine.State.OFFLINE)
    snapshot, _ = market_snapshot_take(now=T0)
    assert (snapshot.machines_listed, snapshot.machines_verified) == (1, 1)
    assert (snapshot.machines_suspended, snapshot.machines_offline) == (1, 1)
    assert snapshot.machines_online == 1


def test_snapshot_sums_escrow_of_funded_unsettled_orders(alice):
    listing = ListingFactory()
    funded, _ = order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=2,
        hours=4,
        idempotency_key="k1",
    )
    order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=1,
        hours=1,
        idempotency_key="k2",
    )  # created, never funded: not in escrow
    order_mark_funded(order_id=funded.pk)
    snapshot, _ = market_snapshot_take()
    assert snapshot.escrow_amount == funded.escrow_amount == 2 * 4 * listing.price_per_hour
    assert snapshot.escrow_orders == 1


def test_prune_drops_only_snapshots_older_than_the_window():
    market_snapshot_take(now=T0 - timedelta(days=91))
    market_snapshot_take(now=T0 - timedelta(days=89))
    assert market_snapshots_prune(now=T0, keep_days=90) == 1
    assert MarketSnapshot.objects.count() == 1


def test_beat_task_takes_a_snapshot():
    from workers.dashboard_tasks import market_snapshot_take as task

    assert task.apply().get().endswith("created")
    assert task.apply().get().endswith("exists")
    assert MarketSnapshot.objects.count() == 1
