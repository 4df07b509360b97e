"""End to end on a real node: alice funds a lease by signing the calldata the API gives her,
the indexer activates it, it completes, the settlement task settles it, the indexer marks it
settled, and every balance on chain equals the database to the unit. No chain mocks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments import chain
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent, ChainTransaction
from marketplace.payments.services.deployment import contracts_deploy
from marketplace.payments.services.faucet import demo_renter_fund
from tests.conftest import client_for
from tests.payments.helpers import (
    ALICE,
    ALICE_KEY,
    BOB,
    BOB_KEY,
    USDC,
    accrued_fees,
    credit_of,
    fund_with_instructions,
    make_order,
    withdraw_credit,
    withdraw_fees,
)
from workers.chain_tasks import lease_settle

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

USED_SECONDS = 1_500


@pytest.fixture
def market(live_chain):
    contracts_deploy(reward_pool=0)
    demo_renter_fund(address=ALICE, amount=100 * USDC)
    return {name: chain.contract(name) for name in chain.CONTRACT_ARTIFACTS}


def balances(token) -> dict[str, int]:
    treasury = chain.treasury_address()
    return {
        who: token.functions.balanceOf(addr).call()
        for who, addr in (("alice", ALICE), ("bob", BOB), ("treasury", treasury))
    }


def fund_and_activate(live_chain, alice, listing, capture) -> Order:
    order = make_order(renter=alice, listing=listing, key=f"e2e-{timezone.now().timestamp()}")
    funding = client_for(alice).get(f"/api/v1/orders/{order.pk}/funding")
    assert funding.status_code == 200
    fund_with_instructions(live_chain, ALICE_KEY, funding.json())
    with capture(execute=True):
        index()  # funded → starting, and the start transaction goes out
    index()  # LeaseStarted final → active
    order.refresh_from_db()
    assert order.state == Order.State.ACTIVE
    # The lease ran for USED_SECONDS (moving the clock, not the chain).
    Order.objects.filter(pk=order.pk).update(
        started_at=timezone.now() - timedelta(seconds=USED_SECONDS)
    )
    return order


def assert_settled_to_the_unit(order: Order, token, before: dict[str, int]) -> None:
    index()
    order.refresh_from_db()
    assert order.state == Order.State.SETTLED
    fee = order.amount_owed * settings.PLATFORM_FEE_BPS // 10_000
    # Credited (pull payments): the escrow still holds the deposit until the payees withdraw.
    assert credit_of(address=BOB) == order.amount_owed - fee
    assert credit_of(address=ALICE) == order.escrow_amount - order.amount_owed
    assert accrued_fees() == fee
    assert balances(token)["bob"] == before["bob"]
    assert before["alice"] - balances(token)["alice"] == order.escrow_amount
    w3 = chain.get_web3()
    withdraw_credit(w3, BOB_KEY)
    withdraw_credit(w3, ALICE_KEY)
    withdraw_fees(w3, ALICE_KEY, chain.contract("escrow"))
    index()
    assert credit_of(address=BOB) == credit_of(address=ALICE) == accrued_fees() == 0
    after = balances(token)
    assert after["bob"] - before["bob"] == order.amount_owed - fee
    assert after["treasury"] - before["treasury"] == fee
    assert before["alice"] - after["alice"] == order.amount_owed
    settled = ChainEvent.objects.get(name="LeaseSettled", lease_id=order.lease_id)
    assert int(settled.args["providerAmount"]) == order.amount_owed - fee
    assert int(settled.args["refundAmount"]) == order.escrow_amount - order.amount_owed
    assert ChainTransaction.objects.filter(purpose="lease_settle", order=order).count() == 1


def test_lease_from_funding_to_settlement(
    live_chain, market, alice, listing, eager, django_capture_on_commit_callbacks
):
    before = balances(market["token"])
    order = fund_and_activate(live_chain, alice, listing, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        order_services.order_complete(order_id=order.pk)  # order_ended → lease_settle
    order.refresh_from_db()
    assert order.billable_seconds == USED_SECONDS
    assert_settled_to_the_unit(order, market["token"], before)
    # Running the indexer again changes nothing.
    count = ChainEvent.objects.count()
    index()
    assert ChainEvent.objects.count() == count


def test_settlement_killed_after_broadcast_pays_once(
    live_chain, market, alice, listing, eager, django_capture_on_commit_callbacks, monkeypatch
):
    before = balances(market["token"])
    order = fund_and_activate(live_chain, alice, listing, django_capture_on_commit_callbacks)
    order_services.order_complete(order_id=order.pk)

    def killed(row, **kwargs):
        raise SystemExit("worker killed after broadcast, before the receipt was recorded")

    monkeypatch.setattr(chain, "confirm", killed)
    with pytest.raises(SystemExit):
        lease_settle.apply(args=(order.pk,))
    monkeypatch.undo()
    tx = ChainTransaction.objects.get(idempotency_key=f"settle:{order.pk}")
    assert tx.status == "pending"  # recorded and broadcast, receipt never seen

    lease_settle.apply(args=(order.pk,)).get()  # the redelivered task
    tx.refresh_from_db()
    assert tx.status == "confirmed"
    assert_settled_to_the_unit(order, market["token"], before)


# Anvil only: the restart keeps the chain through Anvil's --state file, which Ganache lacks.
@pytest.mark.parametrize("node", ["anvil"], indirect=True, scope="module")
def test_indexer_resumes_after_a_node_restart(
    node, live_chain, market, alice, listing, eager, django_capture_on_commit_callbacks
):
    before = balances(market["token"])
    order = fund_and_activate(live_chain, alice, listing, django_capture_on_commit_callbacks)
    index()  # nothing new: LeaseStarted was indexed when the order activated
    events_before = ChainEvent.objects.count()
    assert events_before >= 2
    head_before = live_chain.eth.block_number

    node.restart()
    assert live_chain.eth.block_number == head_before  # state (and blocks) came back

    index()
    assert ChainEvent.objects.count() == events_before  # nothing read twice
    with django_capture_on_commit_callbacks(execute=True):
        order_services.order_complete(order_id=order.pk)
    assert_settled_to_the_unit(order, market["token"], before)
    assert (
        ChainEvent.objects.values("tx_hash", "log_index").distinct().count()
        == ChainEvent.objects.count()
    )
