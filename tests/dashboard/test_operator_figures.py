"""The dashboard's money and order figures against a seed worked out by hand, open alerts with
links, and suspended machines counted as suspended even while offline."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from marketplace.core.models import Alert
from marketplace.dashboard.selectors import (
    machines_by_state,
    open_alerts,
    order_volume_by_day,
    revenue_by_day,
)
from marketplace.dashboard.services import market_snapshot_take
from marketplace.orders.models import Order
from marketplace.orders.services import order_mark_funded
from marketplace.payments.models import ChainEvent
from marketplace.providers.models import Machine
from tests.factories import ChainEventFactory, ListingFactory, MachineFactory
from tests.payments.helpers import make_order

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 18, 0, 0, tzinfo=UTC)
DAY1 = datetime(2026, 3, 8, 9, 30, 0, tzinfo=UTC)
DAY2 = datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC)


def _settled(n: int, at, provider: int, fee: int, refund: int, *, name="LeaseSettled", final=True):
    event = ChainEventFactory(
        name=name,
        block_number=n,
        args={
            "secondsUsed": 1,
            "providerAmount": provider,
            "feeAmount": fee,
            "refundAmount": refund,
        },
        is_final=final,
    )
    ChainEvent.objects.filter(pk=event.pk).update(created_at=at)


@pytest.fixture
def settlements():
    _settled(1, DAY1, 23_323, 2_591, 49_686)
    _settled(2, DAY1 + timedelta(hours=3), 9_000, 1_000, 0)
    _settled(3, DAY2, 450, 50, 500, name="LeaseFailed")
    _settled(4, DAY2, 7_000_000, 7, 0, final=False)  # not final: may still be rewound
    _settled(5, NOW - timedelta(days=31), 5_000_000, 5, 0)  # outside the 30 days


def test_revenue_and_fees_per_day_from_final_settlements(settlements):
    rows = revenue_by_day(now=NOW)
    # Day 1: billed (23,323 + 2,591) + (9,000 + 1,000) = 35,914; fees 2,591 + 1,000 = 3,591.
    # Day 2: billed 450 + 50 = 500; fees 50; refunds 500.
    assert [
        (r["day"].date().isoformat(), r["billed"], r["fees"], r["settlements"]) for r in rows
    ] == [
        ("2026-03-08", 35_914, 3_591, 2),
        ("2026-03-09", 500, 50, 1),
    ]
    assert rows[0]["refunds"] == 49_686 and rows[1]["refunds"] == 500


def test_order_volume_per_day(alice, bob_provider, no_chain_receivers):
    listing = ListingFactory(machine__provider=bob_provider, price_per_hour=3_600_000)
    orders = []
    for i in range(4):
        orders.append(make_order(renter=alice, listing=listing, key=f"v-{i}"))
        if i < 2:  # funded at once: a renter may hold only a few unfunded orders
            order_mark_funded(order_id=orders[-1].pk)
    for order, at in zip(orders, [DAY1, DAY1, DAY1, DAY2], strict=True):
        Order.objects.filter(pk=order.pk).update(created_at=at)
    rows = order_volume_by_day(now=NOW)
    # 1 accelerator × 1 hour × 3,600,000 = 3,600,000 escrowed per funded order.
    assert [
        (r["day"].date().isoformat(), r["created"], r["funded"], r["escrowed"]) for r in rows
    ] == [
        ("2026-03-08", 3, 2, 7_200_000),
        ("2026-03-09", 1, 0, 0),
    ]


def test_a_suspended_machine_that_went_offline_still_counts_as_suspended(settings):
    settings.HEARTBEAT_TIMEOUT_SECONDS = 90
    MachineFactory(state=Machine.State.SUSPENDED)
    MachineFactory(state=Machine.State.OFFLINE, resume_state=Machine.State.SUSPENDED)
    MachineFactory(state=Machine.State.OFFLINE, resume_state=Machine.State.LISTED)
    MachineFactory(state=Machine.State.LISTED)
    by_state = machines_by_state()
    assert by_state == {"suspended": 2, "offline": 1, "listed": 1}
    snapshot, _ = market_snapshot_take(now=NOW)
    assert (snapshot.machines_suspended, snapshot.machines_offline) == (2, 1)


def test_open_alerts_are_counted_and_listed_newest_first():
    for i, resolved in enumerate([None, None, NOW]):
        Alert.objects.create(
            kind="payments_mismatch",
            fingerprint=f"f{i}",
            message=f"escrow differs on lease {i}",
            last_seen_at=NOW + timedelta(minutes=i),
            resolved_at=resolved,
        )
    alerts = open_alerts()
    assert alerts["count"] == 2
    assert [a.message for a in alerts["newest"]] == [
        "escrow differs on lease 1",
        "escrow differs on lease 0",
    ]


def test_dashboard_page_shows_the_figures_and_links_the_alerts(
    staff_client, settlements, settings, monkeypatch
):
    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: NOW)
    alert = Alert.objects.create(
        kind="payments_mismatch", fingerprint="x", message="escrow differs", last_seen_at=NOW
    )
    MachineFactory(
        name="gone-box", state=Machine.State.OFFLINE, resume_state=Machine.State.SUSPENDED
    )
    html = staff_client.get(reverse("dashboard:index")).content.decode()
    assert re.search(r">gone-box</a>.*?<td>offline \(suspended\)</td>", html, re.S)
    # 35,914 + 500 billed; 3,591 + 50 in fees.
    assert "$0.036414</span> billed" in html and "$0.003641 in fees, 3 settlements" in html
    assert reverse("admin:core_alert_change", args=[alert.pk]) in html
    assert re.search(r'id="alerts-figure"><span class="big"><a [^>]*>1</a>', html)
    assert re.search(r'id="suspended-figure"><span class="big">1</span>', html)
    # Two days drawn per series: billed and fees.
    revenue = re.search(r'id="revenue-chart".*?</section>', html, re.S).group(0)
    assert len(re.findall(r'class="point"', revenue)) == 4
    assert "No order in the last 30 days." in html
