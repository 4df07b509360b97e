"""Two workers settle the same ended lease at the same moment, on a real Anvil: one settlement
transaction is recorded and broadcast, one LeaseSettled is emitted, and the balances move once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.orders.signals import order_ended
from marketplace.payments import chain, receivers
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent, ChainTransaction
from marketplace.payments.selectors import order_funding_instructions
from marketplace.payments.services.deployment import contracts_deploy
from marketplace.payments.services.faucet import demo_renter_fund
from tests.integration.test_chain_end_to_end import balances
from tests.payments.helpers import (
    ALICE,
    ALICE_KEY,
    BOB,
    USDC,
    fund_with_instructions,
    make_order,
)
from tests.races.conftest import race
from workers import chain_tasks

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

USED_SECONDS = 1_234


@pytest.fixture
def no_auto_settlement():
    """The race is between two explicit settlement calls, so the receiver that would settle on
    completion is detached; the signals sent are counted instead."""
    sent = []
    order_ended.disconnect(dispatch_uid="payments_order_ended")
    order_ended.connect(
        lambda sender, **kw: sent.append(kw["order_id"]), weak=False, dispatch_uid="race-count"
    )
    yield sent
    order_ended.disconnect(dispatch_uid="race-count")
    order_ended.connect(receivers.on_order_ended, dispatch_uid="payments_order_ended")


@pytest.mark.parametrize("racers", [2, 4])
def test_one_lease_settled_by_concurrent_workers_pays_once(
    live_anvil, alice, listing, eager, no_auto_settlement, racers
):
    contracts_deploy(reward_pool=0)
    demo_renter_fund(address=ALICE, amount=100 * USDC)
    token, escrow = chain.contract("token"), chain.contract("escrow")
    before = balances(token)
    credits_before = _credits(escrow)
    order = make_order(renter=alice, listing=listing, key=f"race-settle-{racers}")
    fund_with_instructions(
        live_anvil, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )
    index()  # funded → starting; lease_start runs eagerly on commit
    index()  # LeaseStarted final → active
    order.refresh_from_db()
    assert order.state == Order.State.ACTIVE
    Order.objects.filter(pk=order.pk).update(
        started_at=timezone.now() - timedelta(seconds=USED_SECONDS)
    )
    order_services.order_complete(order_id=order.pk)
    assert no_auto_settlement == [order.pk]

    outcomes = race(*[lambda: chain_tasks.lease_settle(order.pk)] * racers)

    # A racer may find the winner's transaction not mined yet: a transient error that Celery
    # retries (autoretry_for). The retry, run here, must settle through the same transaction.
    errors = [o[1] for o in outcomes if o[0] == "error"]
    assert all(isinstance(e, chain.TransientChainError) for e in errors), errors
    assert len(errors) < racers
    hashes = {o[1] for o in outcomes if o[0] == "ok"}
    if errors:
        hashes.add(chain_tasks.lease_settle(order.pk))
    settle_txs = ChainTransaction.objects.filter(order=order, purpose="lease_settle")
    assert settle_txs.count() == 1
    assert hashes == {settle_txs.get().tx_hash}
    index()
    order.refresh_from_db()
    assert order.state == Order.State.SETTLED
    events = ChainEvent.objects.filter(lease_id=order.lease_id, name="LeaseSettled")
    assert events.count() == 1
    receipt_logs = live_anvil.eth.get_logs(
        {"address": chain.contract("escrow").address, "fromBlock": 0, "toBlock": "latest"}
    )
    settled_topic = events.get().tx_hash
    assert sum(1 for log in receipt_logs if log["transactionHash"].to_0x_hex() == settled_topic)
    after, credits_after = balances(token), _credits(escrow)
    fee = order.amount_owed * settings.PLATFORM_FEE_BPS // 10_000
    assert order.amount_owed == USED_SECONDS * order.rate_per_second
    # Settlement credits once (pull payments): bob's share, alice's refund, the fee accrued.
    assert credits_after["bob"] - credits_before["bob"] == order.amount_owed - fee
    assert credits_after["alice"] - credits_before["alice"] == (
        order.escrow_amount - order.amount_owed
    )
    assert credits_after["fees"] - credits_before["fees"] == fee
    # No token moved at settlement: alice paid the deposit at funding, nobody was paid yet.
    assert after["bob"] == before["bob"] and after["treasury"] == before["treasury"]
    assert before["alice"] - after["alice"] == order.escrow_amount


def _credits(escrow) -> dict[str, int]:
    """What the escrow holds for bob and alice, and the fees it accrued, on chain."""
    return {
        "bob": escrow.functions.credits(BOB).call(),
        "alice": escrow.functions.credits(ALICE).call(),
        "fees": escrow.functions.accruedFees().call(),
    }
