"""Money on the in-process chain with every expected amount worked out by hand (not derived from
the code under test): funding terms, settlement amounts at odd prices, a reserved term settled on
chain, and the indexer's check that what settled is what the database billed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from marketplace.listings.models import ReservedPrice
from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments import chain
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent
from marketplace.payments.selectors import order_funding_instructions
from marketplace.payments.services.leases import lease_start
from tests.factories import ListingFactory
from tests.payments.helpers import (
    ALICE,
    ALICE_KEY,
    BOB,
    BOB_KEY,
    accrued_fees,
    credit_of,
    fund_with_instructions,
    sign_and_send,
    token_balance,
    withdraw_credit,
    withdraw_fees,
)

pytestmark = pytest.mark.django_db

# 7 units per accelerator-second: 25,200 units (0.0252 USD) per accelerator-hour.
PRICE_PER_HOUR = 25_200
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def odd_listing(bob_provider):
    return ListingFactory(
        machine__provider=bob_provider, price_per_hour=PRICE_PER_HOUR, accelerator_count=8
    )


def _order(alice, listing, **kw):
    kw.setdefault("pricing_mode", "on_demand")
    order, _ = order_services.order_create(
        renter=alice, listing_id=listing.pk, idempotency_key="by-hand", **kw
    )
    return order


def _at(monkeypatch, moment: datetime) -> None:
    monkeypatch.setattr(timezone, "now", lambda: moment)


def _fund_and_activate(chain_w3, alice, order, capture) -> None:
    fund_with_instructions(
        chain_w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )
    with capture(execute=True):
        index()  # funded → starting; `start` sent on commit (by an eager worker, if any)
    lease_start(order_id=order.pk)  # keyed per order: sent once however often it is asked
    index()  # LeaseStarted final → active
    order.refresh_from_db()
    assert order.state == Order.State.ACTIVE


@pytest.mark.parametrize(
    "rate,duration",
    [(20, 3_600), (21, 1_800), (20, 1_800)],
    ids=["lower-rate", "shorter-duration", "lower-rate-and-shorter-duration"],
)
def test_an_underpaid_deposit_on_other_terms_is_flagged_and_never_activates(
    chain_w3, deployed, alice, rich_alice, odd_listing, rate, duration
):
    order = _order(alice, odd_listing, accelerators=3, hours=1)
    assert (order.rate_per_second, order.duration_seconds, order.escrow_amount) == (
        21,
        3_600,
        75_600,
    )
    escrow, token = deployed["escrow"], deployed["token"]
    amount = rate * duration  # a deposit that is self-consistent, just smaller than the order's
    sign_and_send(
        chain_w3, ALICE_KEY, token.address, token.encode_abi("approve", [escrow.address, amount])
    )
    sign_and_send(
        chain_w3,
        ALICE_KEY,
        escrow.address,
        escrow.encode_abi("fund", [bytes.fromhex(order.lease_id[2:]), BOB, amount, rate, duration]),
    )
    index()
    event = ChainEvent.objects.get(name="LeaseFunded")
    assert event.flagged and "funding does not match the order" in event.flag_reason
    order.refresh_from_db()
    assert order.state == Order.State.CREATED


def test_on_demand_settlement_pays_the_amounts_worked_out_by_hand(
    chain_w3,
    deployed,
    alice,
    rich_alice,
    odd_listing,
    eager,
    monkeypatch,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.PLATFORM_FEE_BPS = 1_000
    token = deployed["token"]
    alice_start = token_balance(token, ALICE)
    treasury = chain.treasury_address()
    _at(monkeypatch, T0)
    order = _order(alice, odd_listing, accelerators=3, hours=1)
    _fund_and_activate(chain_w3, alice, order, django_capture_on_commit_callbacks)
    # 1,234 s of a 3-accelerator lease at 7 units per accelerator-second.
    Order.objects.filter(pk=order.pk).update(started_at=T0)
    _at(monkeypatch, T0 + timedelta(seconds=1_234))
    order_services.order_complete(order_id=order.pk)  # the settlement task is not run yet
    # Had settlement recomputed the seconds from the start time instead of the billed figure,
    # this would move them: what was billed at the end is what settles.
    Order.objects.filter(pk=order.pk).update(started_at=T0 - timedelta(seconds=600))
    from workers.chain_tasks import lease_settle

    lease_settle.apply(args=(order.pk,)).get()
    index()
    settled = ChainEvent.objects.get(name="LeaseSettled")
    assert not settled.flagged
    # owed 21 × 1,234 = 25,914; fee 10% rounded down = 2,591; provider 23,323;
    # refund 75,600 − 25,914 = 49,686.
    assert int(settled.args["secondsUsed"]) == 1_234
    assert int(settled.args["providerAmount"]) == 23_323
    assert int(settled.args["feeAmount"]) == 2_591
    assert int(settled.args["refundAmount"]) == 49_686
    # Credited, not paid: 75,600 stays in escrow until the payees withdraw.
    assert (credit_of(address=BOB), credit_of(address=ALICE), accrued_fees()) == (
        23_323,
        49_686,
        2_591,
    )
    assert token_balance(token, BOB) == 0
    assert token_balance(token, ALICE) == alice_start - 75_600
    # bob takes 10,000 now and the other 13,323 later; alice her whole refund; anyone pays the
    # fees to the treasury.
    withdraw_credit(chain_w3, BOB_KEY, amount="10000")
    index()
    assert (credit_of(address=BOB), token_balance(token, BOB)) == (13_323, 10_000)
    withdraw_credit(chain_w3, BOB_KEY)
    withdraw_credit(chain_w3, ALICE_KEY)
    withdraw_fees(chain_w3, BOB_KEY, deployed["escrow"])
    index()
    assert token_balance(token, BOB) == 23_323
    assert token_balance(token, treasury) == 2_591
    assert token_balance(token, ALICE) == alice_start - 25_914
    assert (credit_of(address=BOB), credit_of(address=ALICE), accrued_fees()) == (0, 0, 0)
    order.refresh_from_db()
    assert (order.state, order.billable_seconds, order.amount_owed) == ("settled", 1_234, 25_914)


def test_a_reserved_term_stopped_early_settles_the_whole_term_on_chain(
    chain_w3,
    deployed,
    alice,
    rich_alice,
    odd_listing,
    eager,
    monkeypatch,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.PLATFORM_FEE_BPS = 1_000
    ReservedPrice.objects.create(listing=odd_listing, term="1m", price_per_hour=21_600)
    token = deployed["token"]
    alice_start = token_balance(token, ALICE)
    _at(monkeypatch, T0)
    order = _order(alice, odd_listing, pricing_mode="reserved", reserved_term="1m", accelerators=1)
    # 21,600 units per hour = 6 per second, for 30 days = 2,592,000 s: 15,552,000 units.
    assert (order.rate_per_second, order.duration_seconds, order.escrow_amount) == (
        6,
        2_592_000,
        15_552_000,
    )
    _fund_and_activate(chain_w3, alice, order, django_capture_on_commit_callbacks)
    Order.objects.filter(pk=order.pk).update(started_at=T0)
    _at(monkeypatch, T0 + timedelta(days=2))
    with django_capture_on_commit_callbacks(execute=True):
        order_services.order_stop_by_renter(order_id=order.pk, user=alice)
    index()
    settled = ChainEvent.objects.get(name="LeaseSettled")
    # The whole term is owed: fee 1,555,200, provider 13,996,800, nothing refunded.
    assert int(settled.args["secondsUsed"]) == 2_592_000
    assert int(settled.args["feeAmount"]) == 1_555_200
    assert int(settled.args["providerAmount"]) == 13_996_800
    assert int(settled.args["refundAmount"]) == 0
    assert token_balance(token, ALICE) == alice_start - 15_552_000


def test_a_settlement_that_differs_from_the_bill_is_flagged(
    chain_w3,
    deployed,
    alice,
    rich_alice,
    odd_listing,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    _at(monkeypatch, T0)
    order = _order(alice, odd_listing, accelerators=1, hours=1)
    _fund_and_activate(chain_w3, alice, order, django_capture_on_commit_callbacks)
    Order.objects.filter(pk=order.pk).update(started_at=T0)
    _at(monkeypatch, T0 + timedelta(seconds=100))
    order_services.order_complete(order_id=order.pk)
    # Someone holding the operator key settles 3,000 s instead of the 100 billed.
    escrow = chain.contract("escrow")
    tx = chain.send_call(
        escrow.functions.settle(bytes.fromhex(order.lease_id[2:]), 3_000),
        idempotency_key=f"rogue:{order.pk}",
        purpose="lease_settle",
        order_id=order.pk,
    )
    chain.confirm(tx)
    index()
    event = ChainEvent.objects.get(name="LeaseSettled")
    assert event.flagged and event.flag_reason == "settled 3000 s, order billed 100 s"
