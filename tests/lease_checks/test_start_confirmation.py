"""An order becomes active only once the escrow's `start` is final on chain; until then it is
`starting`, neither served nor billed. A start that never lands cancels the order for 0 seconds
(the renter gets every unit back), and the renter can no longer take back the escrow of a lease
it was served on: the reclaim gap is closed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from hexbytes import HexBytes
from web3.exceptions import ContractCustomError

from marketplace.orders.models import Order, OrderEvent
from marketplace.orders.services import orders_expire_unstarted
from marketplace.payments.models import ChainEvent, ChainTransaction
from marketplace.payments.reconciliation import ESCROW_STATUS, reconcile
from tests.conftest import client_for
from tests.lease_checks.conftest import fund, index_final, listing_of, run_committed
from tests.payments.helpers import (
    ALICE,
    ALICE_KEY,
    BOB,
    credit_of,
    make_order,
    sign_and_send,
    token_balance,
    withdraw_credit,
)

pytestmark = pytest.mark.django_db

# LeaseEscrow's custom error for a reclaim of a lease that is no longer merely funded, as the
# node reports it (its selector, in the revert data).
LEASE_NOT_FUNDED = keccak(text="LeaseNotFunded(bytes32,uint8)")[:4].hex()


@pytest.fixture
def start_never_lands(monkeypatch):
    """The `start` transaction is lost before it reaches the chain (a node that drops it, a
    worker killed with the message): nothing sends it."""
    monkeypatch.setattr("workers.chain_tasks.lease_start.delay", lambda *a: None)


def _history(order: Order) -> list[tuple[str, str]]:
    return list(
        OrderEvent.objects.filter(order=order).order_by("pk").values_list("from_state", "to_state")
    )


def test_an_order_is_active_only_once_its_start_is_final(chain_w3, alice, rich_alice, agent):
    order = make_order(renter=alice, listing=listing_of(agent), key="start-final")
    fund(chain_w3, alice, order)
    index_final()  # the deposit is final: `start` is sent and mined, not yet indexed
    order.refresh_from_db()
    assert (order.state, order.started_at) == (Order.State.STARTING, None)
    assert ChainTransaction.objects.get(purpose="lease_start").status == "confirmed"
    body = client_for(alice).get(f"/api/v1/orders/{order.pk}").json()
    assert body["state"] == "starting"

    index_final()  # LeaseStarted final
    order.refresh_from_db()
    assert order.state == Order.State.ACTIVE and order.started_at is not None
    assert _history(order) == [
        ("created", "funded"),
        ("funded", "starting"),
        ("starting", "active"),
    ]
    assert OrderEvent.objects.get(order=order, to_state="active").reason == (
        "LeaseStarted final on chain"
    )


def test_a_start_that_never_lands_cancels_the_order_without_charging_the_renter(
    chain_w3, deployed, alice, rich_alice, agent, start_never_lands, clock, settings
):
    token = deployed["token"]
    alice_before = token_balance(token, ALICE)
    order = make_order(renter=alice, listing=listing_of(agent), key="start-lost")
    fund(chain_w3, alice, order)
    index_final()
    order.refresh_from_db()
    assert order.state == Order.State.STARTING
    assert not ChainTransaction.objects.filter(purpose="lease_start").exists()
    deadline = order.start_deadline_at
    assert deadline >= order.funded_at + timedelta(seconds=settings.ORDER_START_DEADLINE_SECONDS)

    clock.at(deadline - timedelta(seconds=1))
    assert run_committed(orders_expire_unstarted) == []
    clock.at(deadline + timedelta(seconds=1))
    assert run_committed(orders_expire_unstarted) == [order.pk]  # settle(0) sent on commit
    clock.real()
    order.refresh_from_db()
    assert (order.state, order.billable_seconds, order.amount_owed) == ("cancelled", 0, 0)
    assert order.end_reason == "start not confirmed on chain in time"

    index_final()
    order.refresh_from_db()
    assert order.state == Order.State.SETTLED
    settled = ChainEvent.objects.get(name="LeaseSettled", lease_id=order.lease_id)
    assert int(settled.args["secondsUsed"]) == 0
    assert int(settled.args["refundAmount"]) == order.escrow_amount
    # The whole deposit is credited back to alice, nothing to bob; her tokens come back when
    # she withdraws.
    assert (credit_of(address=ALICE), credit_of(address=BOB)) == (order.escrow_amount, 0)
    assert token_balance(token, ALICE) == alice_before - order.escrow_amount
    withdraw_credit(chain_w3, ALICE_KEY)
    assert token_balance(token, ALICE) == alice_before
    assert token_balance(token, BOB) == 0
    assert _history(order) == [
        ("created", "funded"),
        ("funded", "starting"),
        ("starting", "cancelled"),
        ("cancelled", "settled"),
    ]


def _reverted_with(exc: Exception, selector: str) -> bool:
    """Whether a revert carries this custom error: a node gives its data as hex, eth-tester as
    the bytes' repr in its message."""
    text = str(exc)
    return selector in text or repr(bytes.fromhex(selector))[2:-1] in text


def _past_reclaim_delay(chain_w3, settings) -> None:
    tester = chain_w3.provider.ethereum_tester
    latest = chain_w3.eth.get_block("latest")["timestamp"]
    tester.time_travel(latest + settings.ESCROW_RECLAIM_DELAY_SECONDS + 60)
    tester.mine_blocks(1)


def test_a_renter_cannot_reclaim_the_escrow_of_a_lease_it_was_served(
    chain_w3, deployed, alice, rich_alice, agent, settings
):
    order = make_order(renter=alice, listing=listing_of(agent), key="no-reclaim")
    fund(chain_w3, alice, order)
    index_final()
    index_final()
    order.refresh_from_db()
    assert order.state == Order.State.ACTIVE  # served only now, with `start` final on chain
    _past_reclaim_delay(chain_w3, settings)
    escrow, lease = deployed["escrow"], bytes(HexBytes(order.lease_id))
    assert escrow.functions.getLease(lease).call()[-1] == ESCROW_STATUS.index("started")
    with pytest.raises((ContractCustomError, TransactionFailed)) as refused:
        escrow.functions.reclaim(lease).call({"from": ALICE})
    assert _reverted_with(refused.value, LEASE_NOT_FUNDED)


def test_a_renter_who_reclaims_before_the_start_lands_was_never_served_nor_charged(
    chain_w3, deployed, alice, rich_alice, agent, start_never_lands, settings
):
    # Give the start longer than the reclaim delay, so the order still waits when she reclaims.
    settings.ORDER_START_DEADLINE_SECONDS = settings.ESCROW_RECLAIM_DELAY_SECONDS * 2
    token, escrow = deployed["token"], deployed["escrow"]
    alice_before = token_balance(token, ALICE)
    order = make_order(renter=alice, listing=listing_of(agent), key="reclaimed")
    fund(chain_w3, alice, order)
    index_final()
    _past_reclaim_delay(chain_w3, settings)
    sign_and_send(
        chain_w3,
        ALICE_KEY,
        escrow.address,
        escrow.encode_abi("reclaim", [bytes(HexBytes(order.lease_id))]),
    )
    index_final()
    order.refresh_from_db()
    assert (order.state, order.billable_seconds) == (Order.State.CANCELLED, 0)
    assert order.end_reason == "deposit reclaimed before start"
    assert order.started_at is None
    assert token_balance(token, ALICE) == alice_before
    # Nothing is left to settle, and nothing is sent for it.
    assert not ChainTransaction.objects.filter(order=order, purpose="lease_settle").exists()
    assert reconcile().differences == []
