"""An order's page tells what happened to its money: the escrow events on chain, the platform's
transactions with their hashes, the settlement split, what pre-empted it and the verdict that
ended it. The settled lease runs on the in-process chain (real contracts, real signed
transactions, the real indexer); amounts are worked out by hand."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent, ChainTransaction
from marketplace.payments.selectors import order_funding_instructions
from tests.factories import ListingFactory
from tests.payments.helpers import ALICE_KEY, fund_with_instructions, make_order, record_verdict

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _page(client, order) -> str:
    response = client.get(reverse("admin:orders_order_change", args=[order.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _section(page: str, section_id: str) -> str:
    return re.search(rf'id="{section_id}".*?</fieldset>', page, re.S).group(0)


def test_a_settled_lease_shows_events_transactions_and_the_split_from_chain(
    operator_client,
    chain_w3,
    deployed,
    alice,
    rich_alice,
    bob_provider,
    eager,
    monkeypatch,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.PLATFORM_FEE_BPS = 1_000
    # 25,200 units per accelerator-hour = 7 per accelerator-second; 3 accelerators = 21 per
    # second; 1 hour escrows 21 × 3,600 = 75,600 units.
    listing = ListingFactory(machine__provider=bob_provider, price_per_hour=25_200)
    monkeypatch.setattr(timezone, "now", lambda: T0)
    order, _ = order_services.order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=3,
        hours=1,
        idempotency_key="story",
    )
    fund_with_instructions(
        chain_w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )
    with django_capture_on_commit_callbacks(execute=True):
        index()  # LeaseFunded → active, and the start transaction is sent
    index()  # LeaseStarted
    Order.objects.filter(pk=order.pk).update(started_at=T0)
    monkeypatch.setattr(timezone, "now", lambda: T0 + timedelta(seconds=1_234))
    with django_capture_on_commit_callbacks(execute=True):
        order_services.order_complete(order_id=order.pk)  # settlement sent on commit
    index()
    order.refresh_from_db()
    assert order.state == Order.State.SETTLED

    page = _page(operator_client, order)
    split = _section(page, "settlement-split")
    # Owed 21 × 1,234 = 25,914; fee 10 % rounded down = 2,591; provider 25,914 − 2,591 =
    # 23,323; refund 75,600 − 25,914 = 49,686.
    assert "$0.023323 (23,323 units)" in split
    assert "$0.002591 (2,591 units)" in split
    assert "$0.049686 (49,686 units)" in split
    assert "1,234 s (0 h 20 min 34 s)" in split
    settled = ChainEvent.objects.get(name="LeaseSettled")
    assert "As settled on chain" in split and settled.tx_hash in split

    events = _section(page, "escrow-events")
    assert [name for name in re.findall(r'<tr class="event"><td>(\w+)</td>', events)] == [
        "LeaseFunded",
        "LeaseStarted",
        "LeaseSettled",
    ]
    assert "amount=$0.0756 (75,600 units)" in events
    for event in ChainEvent.objects.filter(lease_id=order.lease_id):
        assert event.tx_hash in events

    txs = _section(page, "chain-transactions")
    sent = ChainTransaction.objects.filter(order=order)
    assert {t.purpose for t in sent} == {"lease_start", "lease_settle"}
    for tx in sent:
        assert tx.tx_hash in txs and tx.status in txs
    assert "Not pre-empted." in page and "No verdict ended this order" in page


def test_an_unsettled_order_shows_the_expected_split(
    operator_client, alice, bob_provider, settings, no_chain_receivers
):
    settings.PLATFORM_FEE_BPS = 1_000
    listing = ListingFactory(machine__provider=bob_provider, price_per_hour=25_200)
    order = make_order(renter=alice, listing=listing)
    assert "nothing to split yet" in _section(_page(operator_client, order), "settlement-split")
    # Ended, settlement not confirmed yet: 1 accelerator at 7 units/s for 1,000 s = 7,000 owed;
    # fee 700; provider 6,300; refund 25,200 − 7,000 = 18,200.
    Order.objects.filter(pk=order.pk).update(
        state="completed", billable_seconds=1_000, amount_owed=7_000
    )
    split = _section(_page(operator_client, order), "settlement-split")
    assert "Expected, not settled on chain yet" in split
    assert "(6,300 units)" in split and "(700 units)" in split and "(18,200 units)" in split


def test_a_preempted_lease_links_the_order_that_preempted_it_and_back(
    operator_client, alice, carol, bob_provider, no_chain_receivers
):
    listing = ListingFactory(machine__provider=bob_provider)
    low, _ = order_services.order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode="interruptible",
        accelerators=8,
        hours=2,
        bid_per_hour=listing.interruptible_floor_per_hour,
        idempotency_key="low",
    )
    order_services.order_mark_funded(order_id=low.pk)
    order_services.order_mark_starting(order_id=low.pk)
    order_services.order_activate(order_id=low.pk)
    carols = make_order(renter=carol, listing=listing, key="carol")
    order_services.order_mark_funded(order_id=carols.pk)
    low.refresh_from_db()
    assert (low.state, low.end_reason, low.preempted_by_id) == ("completed", "preempted", carols.pk)

    page = _section(_page(operator_client, low), "preemption")
    assert reverse("admin:orders_order_change", args=[carols.pk]) in page
    assert f"order #{carols.pk}" in page
    back = _section(_page(operator_client, carols), "preemption")
    assert reverse("admin:orders_order_change", args=[low.pk]) in back


def test_a_failed_lease_shows_the_verdict_that_ended_it(
    operator_client, alice, bob_provider, no_chain_receivers
):
    listing = ListingFactory(machine__provider=bob_provider)
    order = make_order(renter=alice, listing=listing)
    report = "0x" + "5e" * 32
    verdict = record_verdict(
        machine_id=listing.machine_id, key="job-4242", report_hash=report, orders=[order]
    )
    section = _section(_page(operator_client, order), "verdicts")
    assert "job-4242" in section and report in section
    assert reverse("admin:benchmarks_verdict_change", args=[verdict.pk]) in section
