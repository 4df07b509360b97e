"""The indexer on the in-process chain: funding, settlement, stakes, reorgs, idempotency."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from eth_utils import keccak

from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments import chain
from marketplace.payments.indexer import index
from marketplace.payments.models import (
    ChainEvent,
    ChainTransaction,
    IndexedBlock,
    IndexerCursor,
    Slash,
    Stake,
)
from marketplace.payments.selectors import order_funding_instructions
from marketplace.payments.services import faucet, rewarding, slashing
from tests.payments.helpers import (
    ALICE,
    ALICE_KEY,
    BOB,
    BOB_KEY,
    USDC,
    accrued_fees,
    announce_verdict,
    credit_of,
    fund_with_instructions,
    make_order,
    record_verdict,
    sign_and_send,
    token_balance,
    withdraw_credit,
    withdraw_fees,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(alice, listing, rich_alice):
    return make_order(renter=alice, listing=listing)


def _fund(chain_w3, alice, order):
    fund_with_instructions(
        chain_w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )


def test_funding_is_indexed_once_and_activates_the_order(
    chain_w3, alice, order, eager, django_capture_on_commit_callbacks
):
    _fund(chain_w3, alice, order)
    with django_capture_on_commit_callbacks(execute=True):
        index()
    order.refresh_from_db()
    # Funded, and `start` sent on commit: not active (nor billed) until LeaseStarted is final.
    assert order.state == Order.State.STARTING and order.funded_at and not order.started_at
    funded = ChainEvent.objects.get(name="LeaseFunded")
    assert funded.is_final and not funded.flagged and funded.order == order
    assert funded.block_hash == chain_w3.eth.get_block(funded.block_number)["hash"].to_0x_hex()
    # The lease was started on chain (the renter can no longer reclaim it) ...
    assert ChainTransaction.objects.get(idempotency_key=f"start:{order.pk}").status == "confirmed"
    index()
    assert ChainEvent.objects.filter(name="LeaseStarted").count() == 1
    order.refresh_from_db()
    assert order.state == Order.State.ACTIVE and order.started_at
    # ... and running again, or re-reading the same blocks, stores nothing twice.
    stored = ChainEvent.objects.count()
    assert index().stored == 0
    IndexerCursor.objects.update(last_block=0)
    index()
    assert ChainEvent.objects.count() == stored


def test_a_mismatching_deposit_is_flagged_and_never_activates(chain_w3, alice, order, deployed):
    funding = order_funding_instructions(user=alice, order_id=order.pk)
    escrow = deployed["escrow"]
    bigger = order.escrow_amount + 1
    sign_and_send(
        chain_w3,
        ALICE_KEY,
        funding["token_address"],
        deployed["token"].encode_abi("approve", [escrow.address, bigger]),
    )
    sign_and_send(
        chain_w3,
        ALICE_KEY,
        escrow.address,
        escrow.encode_abi(
            "fund",
            [
                bytes.fromhex(order.lease_id[2:]),
                funding["provider_wallet"],
                bigger,
                order.rate_per_second,
                order.duration_seconds,
            ],
        ),
    )
    index()
    event = ChainEvent.objects.get(name="LeaseFunded")
    assert event.flagged and "amount" in event.flag_reason
    order.refresh_from_db()
    assert order.state == Order.State.CREATED


def test_a_reorg_rewinds_unconfirmed_events(chain_w3, alice, order, settings):
    settings.CHAIN_CONFIRMATIONS = 3
    tester = chain_w3.provider.ethereum_tester
    before = tester.take_snapshot()
    _fund(chain_w3, alice, order)
    index()
    funded = ChainEvent.objects.get(name="LeaseFunded")
    assert not funded.is_final
    order.refresh_from_db()
    assert order.state == Order.State.CREATED  # not final yet: no effect

    # The funding block is replaced by a fork of the same height without the deposit.
    tester.revert_to_snapshot(before)
    tester.mine_blocks(3)
    result = index()
    assert result.rewound_to is not None and result.rewound_to < funded.block_number
    assert not ChainEvent.objects.filter(name="LeaseFunded").exists()
    order.refresh_from_db()
    assert order.state == Order.State.CREATED


def test_a_tampered_block_hash_rewinds_and_rereads(chain_w3, alice, order, settings):
    settings.CHAIN_CONFIRMATIONS = 10
    _fund(chain_w3, alice, order)
    index()
    event = ChainEvent.objects.get(name="LeaseFunded")
    IndexedBlock.objects.filter(number=event.block_number).update(hash="0x" + "00" * 32)
    # The chain is known to agree up to the last stored block below the mismatch (a hash commits
    # to its ancestors); the unstored blocks in between are read again too.
    agreeing = IndexedBlock.objects.filter(number__lt=event.block_number).latest("number")
    result = index()
    assert result.rewound_to == agreeing.number
    # The same log is read again from the (unchanged) chain: one row, same identity.
    again = ChainEvent.objects.get(name="LeaseFunded")
    assert (again.tx_hash, again.log_index) == (event.tx_hash, event.log_index)
    chain_w3.provider.ethereum_tester.mine_blocks(10)
    index()
    order.refresh_from_db()
    assert order.state == Order.State.STARTING  # funded; active once `start` is final


def _run_lease(chain_w3, alice, order, seconds: int, django_capture_on_commit_callbacks):
    _fund(chain_w3, alice, order)
    with django_capture_on_commit_callbacks(execute=True):
        index()  # funded → starting; `start` sent on commit
    index()  # LeaseStarted final → active
    Order.objects.filter(pk=order.pk).update(started_at=timezone.now() - timedelta(seconds=seconds))


def test_settlement_pays_out_what_the_database_says(
    chain_w3, deployed, alice, order, eager, django_capture_on_commit_callbacks
):
    token = deployed["token"]
    treasury = chain.treasury_address()
    alice_start = token_balance(token, ALICE)
    _run_lease(chain_w3, alice, order, 1_200, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        order_services.order_complete(order_id=order.pk)  # order_ended → settlement task
    settle_tx = ChainTransaction.objects.get(idempotency_key=f"settle:{order.pk}")
    assert settle_tx.status == "confirmed" and settle_tx.purpose == "lease_settle"
    index()
    order.refresh_from_db()
    assert order.state == Order.State.SETTLED
    settled = ChainEvent.objects.get(name="LeaseSettled")
    owed = order.amount_owed
    fee = owed * settings_fee_bps() // 10_000
    assert int(settled.args["secondsUsed"]) == order.billable_seconds
    assert int(settled.args["providerAmount"]) == owed - fee
    assert int(settled.args["feeAmount"]) == fee
    assert int(settled.args["refundAmount"]) == order.escrow_amount - owed
    # Settlement credits (pull payments); each payee's tokens move only when it withdraws.
    assert credit_of(address=BOB) == owed - fee
    assert credit_of(address=ALICE) == order.escrow_amount - owed
    assert accrued_fees() == fee
    assert token_balance(token, BOB) == 0
    assert token_balance(token, ALICE) == alice_start - order.escrow_amount

    withdraw_credit(chain_w3, BOB_KEY)
    withdraw_credit(chain_w3, ALICE_KEY)
    withdraw_fees(chain_w3, ALICE_KEY, deployed["escrow"])
    index()
    assert token_balance(token, BOB) == owed - fee
    assert token_balance(token, treasury) == fee
    assert token_balance(token, ALICE) == alice_start - owed
    assert credit_of(address=BOB) == credit_of(address=ALICE) == accrued_fees() == 0
    assert token_balance(token, deployed["escrow"].address) == 0


def test_a_reorged_withdrawal_leaves_the_credit_as_the_chain_has_it(
    chain_w3, deployed, alice, order, eager, django_capture_on_commit_callbacks, settings
):
    _run_lease(chain_w3, alice, order, 600, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        order_services.order_complete(order_id=order.pk)
    index()
    order.refresh_from_db()
    credited = order.amount_owed - order.amount_owed * settings_fee_bps() // 10_000
    assert credit_of(address=BOB) == credited > 0

    settings.CHAIN_CONFIRMATIONS = 3
    tester = chain_w3.provider.ethereum_tester
    before = tester.take_snapshot()
    withdraw_credit(chain_w3, BOB_KEY, amount="1000")
    index()
    withdrawn = ChainEvent.objects.get(name="CreditWithdrawn")
    assert not withdrawn.is_final and withdrawn.account == BOB
    assert credit_of(address=BOB) == credited  # not final yet: no effect

    # The withdrawal's block is replaced by a fork without it: the credit never moved.
    tester.revert_to_snapshot(before)
    tester.mine_blocks(3)
    result = index()
    assert result.rewound_to is not None and result.rewound_to < withdrawn.block_number
    assert not ChainEvent.objects.filter(name="CreditWithdrawn").exists()
    assert credit_of(address=BOB) == credited
    assert deployed["escrow"].functions.credits(BOB).call() == credited

    # Withdrawn again on the new branch, final after three blocks: now it counts, once.
    withdraw_credit(chain_w3, BOB_KEY, amount="1000")
    tester.mine_blocks(3)
    index()
    assert credit_of(address=BOB) == credited - 1_000
    assert deployed["escrow"].functions.credits(BOB).call() == credited - 1_000


def settings_fee_bps() -> int:
    from django.conf import settings

    return settings.PLATFORM_FEE_BPS


def test_settlement_task_twice_sends_one_transaction(
    chain_w3, deployed, alice, order, eager, django_capture_on_commit_callbacks
):
    from workers.chain_tasks import lease_settle

    _run_lease(chain_w3, alice, order, 60, django_capture_on_commit_callbacks)
    order_services.order_complete(order_id=order.pk)  # on_commit not executed: no task yet
    first = lease_settle.apply(args=(order.pk,)).get()
    second = lease_settle.apply(args=(order.pk,)).get()
    assert first == second
    assert ChainTransaction.objects.filter(purpose="lease_settle").count() == 1


def test_cancelled_never_funded_order_sends_nothing(
    alice, order, deployed, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        order_services.order_cancel(order_id=order.pk, user=alice)
    assert not ChainTransaction.objects.filter(order=order).exists()


def test_funding_after_cancellation_is_refunded_in_full(
    chain_w3, deployed, alice, order, eager, django_capture_on_commit_callbacks
):
    alice_start = token_balance(deployed["token"], ALICE)
    funding = order_funding_instructions(user=alice, order_id=order.pk)
    order_services.order_cancel(order_id=order.pk, user=alice)
    fund_with_instructions(chain_w3, ALICE_KEY, funding)
    with django_capture_on_commit_callbacks(execute=True):
        index()  # flags the late deposit and settles it with 0 seconds
    index()
    order.refresh_from_db()
    assert order.state == Order.State.SETTLED
    assert ChainEvent.objects.get(name="LeaseFunded").flagged
    assert int(ChainEvent.objects.get(name="LeaseSettled").args["refundAmount"]) == (
        order.escrow_amount
    )
    assert credit_of(address=ALICE) == order.escrow_amount
    withdraw_credit(chain_w3, ALICE_KEY)
    assert token_balance(deployed["token"], ALICE) == alice_start


def _bob_stakes(chain_w3, deployed, amount: int) -> None:
    faucet.demo_renter_fund(address=BOB, amount=amount)
    staking = deployed["staking"]
    sign_and_send(
        chain_w3,
        BOB_KEY,
        deployed["token"].address,
        deployed["token"].encode_abi("approve", [staking.address, amount]),
    )
    sign_and_send(chain_w3, BOB_KEY, staking.address, staking.encode_abi("stake", [amount]))


def test_a_failed_verification_slashes_with_the_report_hash(
    chain_w3, deployed, listing, eager, django_capture_on_commit_callbacks, settings
):
    settings.SLASH_AMOUNT = 1_000 * USDC  # more than bob has: capped at his stake
    _bob_stakes(chain_w3, deployed, 40 * USDC)
    index()
    assert Stake.objects.get(address=BOB).staked == 40 * USDC
    report = "0x" + keccak(b"report 7").hex()
    verdict = record_verdict(machine_id=listing.machine_id, key="7", report_hash=report)
    with django_capture_on_commit_callbacks(execute=True):
        announce_verdict(verdict)
        # Delivered twice (a retried sender): still one slash.
        announce_verdict(verdict)
    slashing.provider_slash(key="7")  # and a redelivered task: still one transaction
    assert ChainTransaction.objects.filter(purpose="provider_slash").count() == 1
    index()
    slash = Slash.objects.get()
    assert slash.report_hash == report and slash.amount == 40 * USDC
    assert slash.tx_hash == ChainTransaction.objects.get(purpose="provider_slash").tx_hash
    assert slash.provider == listing.provider
    assert Stake.objects.get(address=BOB).staked == 0
    assert deployed["staking"].functions.stakeOf(BOB).call()[0] == 0


def test_failed_lease_cites_the_failing_report(
    chain_w3, deployed, alice, order, eager, django_capture_on_commit_callbacks
):
    _run_lease(chain_w3, alice, order, 300, django_capture_on_commit_callbacks)
    report = "0x" + keccak(b"bad matmul").hex()
    with django_capture_on_commit_callbacks(execute=True):
        order_services.order_fail(order_id=order.pk, reason="failed re-verification")
        record_verdict(machine_id=order.machine_id, key="9", report_hash=report, orders=[order])
    index()
    failed = ChainEvent.objects.get(name="LeaseFailed")
    assert failed.args["reportHash"] == report
    order.refresh_from_db()
    assert order.state == Order.State.SETTLED


def test_passes_without_service_earn_no_reward(chain_w3, deployed, listing, settings):
    """Rewards are per leased accelerator-hour (tests/collateral/test_rewards.py pays them):
    a machine that passed its checks but served no lease earns nothing for existing."""
    settings.REWARD_PERIOD_SECONDS = 3_600
    for key, digest in (("1", "11"), ("2", "22")):
        record_verdict(
            machine_id=listing.machine_id, key=key, report_hash="0x" + digest * 32, passed=True
        )
    later = timezone.now() + timedelta(seconds=3_600)
    assert rewarding.providers_reward(now=later) == []
    assert not ChainTransaction.objects.filter(purpose="provider_reward").exists()


def test_a_provider_with_a_failure_is_not_rewarded(chain_w3, deployed, listing, settings):
    record_verdict(
        machine_id=listing.machine_id, key="1", report_hash="0x" + "11" * 32, passed=True
    )
    record_verdict(machine_id=listing.machine_id, key="2", report_hash="0x" + "22" * 32)
    later = timezone.now() + timedelta(seconds=settings.REWARD_PERIOD_SECONDS)
    assert rewarding.providers_reward(now=later) == []
