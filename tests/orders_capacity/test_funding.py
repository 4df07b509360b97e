"""Funding is when an order takes its accelerators: it pre-empts lower interruptible bids then,
and when the accelerators went to someone else first, the deposit goes back in full."""

import pytest
from eth_account import Account

from marketplace.orders import services
from marketplace.orders.models import Order
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent
from marketplace.payments.reconciliation import reconcile
from marketplace.payments.selectors import order_funding_instructions
from marketplace.payments.services.faucet import demo_renter_fund
from tests.orders_capacity.conftest import let_hold_expire, order, running
from tests.payments.helpers import (
    ALICE,
    ALICE_KEY,
    USDC,
    credit_of,
    fund_with_instructions,
    token_balance,
    withdraw_credit,
)
from tests.races.conftest import race

State = Order.State


@pytest.mark.django_db
def test_funding_preempts_the_lowest_interruptible_bids_in_its_way(alice, carol, listing):
    floor = listing.interruptible_floor_per_hour
    low = running(
        alice, listing, "low-0001", accelerators=4, pricing_mode="interruptible", bid_per_hour=floor
    )
    mid = running(
        alice,
        listing,
        "mid-0001",
        accelerators=4,
        pricing_mode="interruptible",
        bid_per_hour=floor + 3600,
    )
    carols = order(carol, listing, "carol-0001", accelerators=4)
    low.refresh_from_db()
    assert low.state == State.ACTIVE

    funded = services.order_mark_funded(order_id=carols.pk)

    low.refresh_from_db()
    mid.refresh_from_db()
    assert funded.state == State.FUNDED
    assert low.state == State.COMPLETED and low.end_reason == "preempted"
    assert mid.state == State.ACTIVE


@pytest.mark.django_db
def test_funding_after_the_accelerators_were_taken_cancels_the_order_for_a_full_refund(
    alice, carol, listing, django_capture_on_commit_callbacks
):
    late = order(alice, listing, "late-0001")
    let_hold_expire(late)
    services.order_mark_funded(order_id=order(carol, listing, "carol-0002").pk)

    with django_capture_on_commit_callbacks() as announced:
        late = services.order_mark_funded(order_id=late.pk)

    assert late.state == State.CANCELLED
    assert late.end_reason == "capacity taken before funding"
    assert late.funded_at is not None
    assert (late.amount_owed, late.refund_amount) == (0, late.escrow_amount)
    # order_ended (payments settles it for 0 seconds); cached search pages are refreshed besides.
    ended = [c for c in announced if c.__module__ != "marketplace.listings.search_cache"]
    assert len(ended) == 1


@pytest.mark.django_db
def test_a_deposit_for_accelerators_someone_else_took_comes_back_on_chain(
    chain_w3, deployed, rich_alice, alice, carol, listing, eager, django_capture_on_commit_callbacks
):
    token = deployed["token"]
    carol_wallet = Account.create()
    demo_renter_fund(address=carol_wallet.address, amount=100 * USDC)
    alice_start = token_balance(token, ALICE)

    alices = order(alice, listing, "chain-alice-1")
    alice_funding = order_funding_instructions(user=alice, order_id=alices.pk)
    assert alice_funding["funding_deadline"] == alices.hold_expires_at
    # alice is slow: her hold runs out, carol orders the same accelerators and pays first.
    let_hold_expire(alices)
    carols = order(carol, listing, "chain-carol-1")
    fund_with_instructions(
        chain_w3, carol_wallet.key.hex(), order_funding_instructions(user=carol, order_id=carols.pk)
    )
    fund_with_instructions(chain_w3, ALICE_KEY, alice_funding)

    with django_capture_on_commit_callbacks(execute=True):
        index()  # carol's deposit activates her lease; alice's cancels hers and settles it
    with django_capture_on_commit_callbacks(execute=True):
        index()

    alices.refresh_from_db()
    carols.refresh_from_db()
    assert carols.state == State.ACTIVE
    assert alices.state == State.SETTLED and alices.end_reason == "capacity taken before funding"
    deposit = ChainEvent.objects.get(name="LeaseFunded", lease_id=alices.lease_id)
    assert not deposit.flagged  # a deposit on the order's own terms, not an anomaly
    settled = ChainEvent.objects.get(name="LeaseSettled", lease_id=alices.lease_id)
    assert int(settled.args["refundAmount"]) == alices.escrow_amount
    # Refunded in full as a credit in the escrow (pull payments), hers once she withdraws.
    assert credit_of(address=ALICE) == alices.escrow_amount
    assert token_balance(token, ALICE) == alice_start - alices.escrow_amount
    assert reconcile().differences == []
    withdraw_credit(chain_w3, ALICE_KEY)
    index()
    assert token_balance(token, ALICE) == alice_start
    assert credit_of(address=ALICE) == 0
    assert reconcile().differences == []


@pytest.mark.django_db(transaction=True)
def test_two_deposits_racing_for_the_same_accelerators_one_lease_wins(alice, carol, listing):
    # Both holds ran out, so either deposit could take the 8 accelerators: the first one seen
    # under the listing lock does, the other is turned away for a refund.
    alices = order(alice, listing, "race-alice-1")
    let_hold_expire(alices)
    carols = order(carol, listing, "race-carol-1")
    let_hold_expire(carols)

    outcomes = race(
        lambda: services.order_mark_funded(order_id=alices.pk).state,
        lambda: services.order_mark_funded(order_id=carols.pk).state,
    )

    states = sorted(result for kind, result in outcomes if kind == "ok")
    assert states == [State.CANCELLED, State.FUNDED], outcomes
    held = sum(o.accelerators for o in Order.objects.filter(state=State.FUNDED))
    assert held == listing.accelerator_count


@pytest.mark.django_db
def test_an_equal_bid_is_not_outbid(alice, carol, listing):
    # Pre-emption takes only bids strictly below the new order's price: an interruptible lease
    # bidding exactly the on-demand price keeps its accelerators.
    equal = running(
        alice,
        listing,
        "equal-0001",
        accelerators=listing.accelerator_count,
        pricing_mode="interruptible",
        bid_per_hour=listing.price_per_hour,
    )
    with pytest.raises(services.ConflictError) as refused:
        order(carol, listing, "carol-equal", accelerators=1)
    assert refused.value.code == "orders_capacity_exhausted"
    equal.refresh_from_db()
    assert equal.state == State.ACTIVE
