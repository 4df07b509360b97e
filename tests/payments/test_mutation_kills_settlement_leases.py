"""Tests written to kill mutation-testing survivors in the settlement scope: the effects of final
chain events (marketplace/payments/services/chain_events.py) and a lease's settlement and the
overdue sweep (marketplace/payments/services/leases.py).

Most use plain database rows: orders made by the order services and moved to the state under
test, chain events written as the indexer stores them, and chain_events_finalize called
directly. Only a settlement that is really sent runs on the in-process chain
(tests/payments/conftest.py). Every expected figure and message is written out by hand.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments import receivers
from marketplace.payments.indexer import index
from marketplace.payments.models import AccruedFees, ChainEvent, ChainTransaction, Credit
from marketplace.payments.selectors import order_funding_instructions
from marketplace.payments.services import leases
from marketplace.payments.services.chain_events import chain_events_finalize
from tests.factories import ChainEventFactory, ChainTransactionFactory
from tests.payments.helpers import ALICE, ALICE_KEY, BOB, fund_with_instructions, make_order

pytestmark = pytest.mark.django_db

CID = 31337
ESCROW = "0x" + "e5" * 20
UNKNOWN_LEASE = "0x" + "ab" * 32


def _event(name: str, *, lease_id: str, block: int, is_final: bool = False, **args) -> ChainEvent:
    """An escrow log of this lease as the indexer stores it, not final unless told."""
    return ChainEventFactory(
        name=name, lease_id=lease_id, block_number=block, is_final=is_final, args=args
    )


def _funded(order: Order, *, block: int) -> ChainEvent:
    """The lease's deposit, final: it names the parties a settlement credits."""
    return _event(
        "LeaseFunded",
        lease_id=order.lease_id,
        block=block,
        is_final=True,
        renter=ALICE,
        provider=BOB,
        amount=order.escrow_amount,
    )


def _order_in(state: str, *, alice, listing, key: str, **fields) -> Order:
    """An order moved straight to `state` (and `fields`), as its earlier transitions leave it."""
    order = make_order(renter=alice, listing=listing, key=key)
    Order.objects.filter(pk=order.pk).update(state=state, **fields)
    return Order.objects.get(pk=order.pk)


# --- chain_events: what a final event does ------------------------------------------------------


def test_a_settlement_for_zero_seconds_of_a_lease_billed_zero_is_not_flagged(alice, listing):
    """A lease that ended as it started was billed 0 s; the escrow settling it for 0 s agrees."""
    order = _order_in(
        Order.State.COMPLETED,
        alice=alice,
        listing=listing,
        key="zero-seconds",
        ended_at=timezone.now(),
        billable_seconds=0,
        amount_owed=0,
    )
    _funded(order, block=10)
    settled = _event(
        "LeaseSettled",
        lease_id=order.lease_id,
        block=11,
        secondsUsed=0,
        providerAmount=0,
        refundAmount=order.escrow_amount,
        feeAmount=0,
    )

    assert chain_events_finalize(event_ids=[settled.pk]) == 1

    settled.refresh_from_db()
    assert (settled.is_final, settled.flagged, settled.flag_reason) == (True, False, "")
    assert settled.order_id == order.pk
    assert Order.objects.get(pk=order.pk).state == Order.State.SETTLED


def test_a_reclaim_after_the_order_was_cancelled_is_not_flagged(alice, listing):
    order = _order_in(
        Order.State.CANCELLED,
        alice=alice,
        listing=listing,
        key="reclaimed-after-cancel",
        ended_at=timezone.now(),
        billable_seconds=0,
        amount_owed=0,
    )
    reclaimed = _event("LeaseReclaimed", lease_id=order.lease_id, block=20)

    assert chain_events_finalize(event_ids=[reclaimed.pk]) == 1

    reclaimed.refresh_from_db()
    assert (reclaimed.is_final, reclaimed.flagged, reclaimed.flag_reason) == (True, False, "")
    assert reclaimed.order_id == order.pk
    assert Order.objects.get(pk=order.pk).state == Order.State.CANCELLED


def test_a_start_for_a_lease_no_order_has_is_flagged_as_such(db, caplog):
    started = _event("LeaseStarted", lease_id=UNKNOWN_LEASE, block=30)

    with caplog.at_level(logging.WARNING, logger="marketplace.payments.services.chain_events"):
        assert chain_events_finalize(event_ids=[started.pk]) == 1

    # The operator's log names the event (name, block and log index) beside the reason.
    assert [r.getMessage() for r in caplog.records] == [
        "chain event LeaseStarted #30:0 flagged: no order has this lease id"
    ]

    started.refresh_from_db()
    assert (started.is_final, started.flagged) == (True, True)
    assert started.flag_reason == "no order has this lease id"
    assert started.order_id is None


def test_our_transaction_is_confirmed_at_the_block_of_its_final_event(alice, listing):
    order = _order_in(Order.State.STARTING, alice=alice, listing=listing, key="start-confirmed")
    started = _event("LeaseStarted", lease_id=order.lease_id, block=40)
    # The `start` this service sent: mined as far as its task saw, not yet confirmed.
    ChainTransactionFactory(
        to_address=ESCROW,
        purpose="lease_start",
        idempotency_key=f"start:{order.pk}",
        tx_hash=started.tx_hash,
        status=ChainTransaction.Status.MINED,
        order=order,
    )
    # Another transaction of ours, still pending: nothing in this batch is its effect.
    ChainTransactionFactory(
        to_address=ESCROW,
        purpose="lease_settle",
        idempotency_key="settle:elsewhere",
        tx_hash="0x" + "5e" * 32,
    )

    assert chain_events_finalize(event_ids=[started.pk]) == 1

    other = ChainTransaction.objects.get(idempotency_key="settle:elsewhere")
    assert (other.status, other.block_number) == (ChainTransaction.Status.PENDING, None)
    tx = ChainTransaction.objects.get(idempotency_key=f"start:{order.pk}")
    assert tx.status == ChainTransaction.Status.CONFIRMED
    # The block of the event: number 40, hash 40 + 1,000 = 1,040 = 0x410 (see _event).
    assert tx.block_number == 40
    assert tx.block_hash == "0x" + "0" * 61 + "410"
    assert Order.objects.get(pk=order.pk).state == Order.State.ACTIVE


def test_only_funded_and_started_leases_of_known_orders_update_the_stake_lock(
    alice, listing, monkeypatch, django_capture_on_commit_callbacks
):
    """A batch of three: a deposit nobody ordered (flagged, no order), the start of one order,
    the settlement of another. Only the start moves a lease's stake lock; the settlement's
    order already asked for that when it ended (order_ended)."""
    asked = []
    monkeypatch.setattr(
        receivers, "lease_locks_update", lambda *, order_ids: asked.append(order_ids)
    )
    starting = _order_in(Order.State.STARTING, alice=alice, listing=listing, key="lock-start")
    ended = _order_in(
        Order.State.COMPLETED,
        alice=alice,
        listing=listing,
        key="lock-settle",
        ended_at=timezone.now(),
        billable_seconds=60,
        amount_owed=60,
    )
    _funded(ended, block=50)
    stranger = _event(
        "LeaseFunded", lease_id=UNKNOWN_LEASE, block=51, renter=ALICE, provider=BOB, amount=1
    )
    started = _event("LeaseStarted", lease_id=starting.lease_id, block=52)
    settled = _event(
        "LeaseSettled",
        lease_id=ended.lease_id,
        block=53,
        secondsUsed=60,
        providerAmount=0,
        refundAmount=0,
        feeAmount=0,
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert chain_events_finalize(event_ids=[stranger.pk, started.pk, settled.pk]) == 3

    assert asked == [[starting.pk]]
    # The settlement was applied all the same (to its order, unflagged).
    settled.refresh_from_db()
    assert (settled.order_id, settled.flagged) == (ended.pk, False)


# --- leases: settling one lease ------------------------------------------------------------------


def test_settling_an_order_this_database_never_had_warns_under_the_task_name(db, caplog):
    with caplog.at_level(logging.WARNING, logger=leases.__name__):
        assert leases.lease_settle(order_id=987654) is None

    assert [r.getMessage() for r in caplog.records] == [
        "lease_settle: no order 987654; dropping the task"
    ]


def _failed_without_a_verdict(alice, listing) -> Order:
    order = _order_in(Order.State.ACTIVE, alice=alice, listing=listing, key="failed-no-verdict")
    return order_services.order_fail(order_id=order.pk, reason="failed re-verification")


def test_a_failed_lease_without_a_verdict_raises_naming_the_order(deployed, alice, listing):
    order = _failed_without_a_verdict(alice, listing)

    with pytest.raises(leases.VerdictPending, match=rf"^failed order {order.pk} has no verdict$"):
        leases.lease_settle(order_id=order.pk)


def test_a_failed_lease_without_a_verdict_logs_an_error_naming_the_order(
    deployed, alice, listing, caplog
):
    order = _failed_without_a_verdict(alice, listing)

    with (
        caplog.at_level(logging.ERROR, logger=leases.__name__),
        pytest.raises(leases.VerdictPending),
    ):
        leases.lease_settle(order_id=order.pk)

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, f"lease_settle: failed order {order.pk} has no verdict yet; retrying")
    ]


def test_a_cancelled_funded_lease_is_refunded_although_another_lease_was_reclaimed(
    chain_w3, deployed, rich_alice, alice, listing
):
    order = make_order(renter=alice, listing=listing)
    fund_with_instructions(
        chain_w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )
    index()  # LeaseFunded final → starting (its `start` would be sent on commit)
    order_services.order_cancel(order_id=order.pk, reason="start never final")
    # Some other renter took her deposit back: nothing to do with this lease.
    _event("LeaseReclaimed", lease_id=UNKNOWN_LEASE, block=60, is_final=True)

    tx = leases.lease_settle(order_id=order.pk)

    assert tx is not None
    assert (tx.purpose, tx.idempotency_key, tx.order_id) == (
        "lease_settle",
        f"settle:{order.pk}",
        order.pk,
    )
    assert tx.status == ChainTransaction.Status.CONFIRMED


def test_a_failed_lease_that_served_nothing_is_failed_on_chain_for_0_s_citing_its_verdict(
    chain_w3, deployed, rich_alice, alice, listing, eager, django_capture_on_commit_callbacks
):
    """The machine went silent before its lease started, and the lease failed: it served 0 s,
    so the escrow's `fail` is sent for 0 s (the whole deposit back to alice), as a "lease_fail"
    transaction citing the verdict's report."""
    from marketplace.providers.models import Machine
    from tests.payments.helpers import record_verdict

    order = make_order(renter=alice, listing=listing, key="failed-at-once")
    fund_with_instructions(
        chain_w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )
    with django_capture_on_commit_callbacks(execute=True):
        index()  # LeaseFunded final → starting; `start` sent on commit
    index()  # LeaseStarted final → active
    order.refresh_from_db()
    Machine.objects.filter(pk=order.machine_id).update(
        last_heartbeat_at=order.started_at - timedelta(seconds=10)
    )
    failed = order_services.order_fail(order_id=order.pk, reason="machine offline")
    assert failed.billable_seconds == 0
    report = "0x" + "9a" * 32
    record_verdict(machine_id=order.machine_id, key="offline", report_hash=report, orders=[order])

    tx = leases.lease_settle(order_id=order.pk)
    assert (tx.purpose, tx.idempotency_key, tx.status) == (
        "lease_fail",
        f"settle:{order.pk}",
        ChainTransaction.Status.CONFIRMED,
    )
    index()
    event = ChainEvent.objects.get(name="LeaseFailed", lease_id=order.lease_id)
    assert int(event.args["secondsUsed"]) == 0
    assert int(event.args["refundAmount"]) == order.escrow_amount
    assert event.args["reportHash"] == report


# --- leases: the overdue sweep --------------------------------------------------------------------


def test_the_overdue_sweep_resends_every_ended_unsettled_lease_in_pk_order(
    alice, listing, monkeypatch
):
    sent = []
    monkeypatch.setattr("workers.chain_tasks.lease_settle.delay", lambda *a: sent.append(a))
    now = timezone.now()

    def ended(state: str, key: str, seconds_ago: int | None) -> Order:
        at = None if seconds_ago is None else now - timedelta(seconds=seconds_ago)
        return _order_in(state, alice=alice, listing=listing, key=key, ended_at=at)

    # Created in pk order; the overdue three ended in the opposite order (900, 600, 300 s ago).
    completed = ended(Order.State.COMPLETED, "overdue-completed", 300)
    cancelled = ended(Order.State.CANCELLED, "overdue-cancelled", 600)
    failed = ended(Order.State.FAILED, "overdue-failed", 900)
    ended(Order.State.SETTLED, "already-settled", 900)  # nothing left to send
    ended(Order.State.COMPLETED, "just-ended", 60)  # 60 s < the default 120 s: not yet
    ended(Order.State.ACTIVE, "still-running", None)

    ids = leases.leases_settle_overdue()

    assert ids == [completed.pk, cancelled.pk, failed.pk]
    assert sent == [(completed.pk,), (cancelled.pk,), (failed.pk,)]


# --- third sample (seed 20261202) ---


def test_two_refunds_to_one_renter_in_one_batch_add_up_in_her_credit(alice, listing):
    """Two of alice's leases settle in the same finalize batch: her credit is both refunds,
    bob's both provider shares, the fees both fees."""
    first, second = (
        _order_in(
            Order.State.COMPLETED,
            alice=alice,
            listing=listing,
            key=f"two-refunds-{n}",
            ended_at=timezone.now(),
            billable_seconds=60,
            amount_owed=600,
        )
        for n in (1, 2)
    )
    _funded(first, block=70)
    _funded(second, block=71)
    settled = [
        _event(
            "LeaseSettled",
            lease_id=order.lease_id,
            block=block,
            secondsUsed=60,
            providerAmount=provider,
            refundAmount=refund,
            feeAmount=fee,
        )
        for order, block, provider, refund, fee in (
            (first, 72, 500, 400, 100),
            (second, 73, 700, 250, 50),
        )
    ]

    assert chain_events_finalize(event_ids=[e.pk for e in settled]) == 2

    credits = dict(Credit.objects.filter(chain_id=CID).values_list("address", "amount"))
    # alice: refunds 400 + 250 = 650; bob: provider shares 500 + 700 = 1,200.
    assert {address: int(amount) for address, amount in credits.items()} == {
        ALICE: 650,
        BOB: 1_200,
    }
    # Fees 100 + 50 = 150.
    assert int(AccruedFees.objects.get(chain_id=CID).amount) == 150


def test_a_settlement_of_a_deposit_no_order_has_is_credited_and_flagged(db):
    """A deposit and its settlement, both final, for a lease no order has (another deployment's
    client on the same escrow, say): the escrow moved the money, so the credits are recorded;
    the settlement is flagged for the operator."""
    _event(
        "LeaseFunded",
        lease_id=UNKNOWN_LEASE,
        block=84,
        is_final=True,
        renter=ALICE,
        provider=BOB,
        amount=1_000,
    )
    settled = _event(
        "LeaseSettled",
        lease_id=UNKNOWN_LEASE,
        block=85,
        secondsUsed=60,
        providerAmount=540,
        refundAmount=400,
        feeAmount=60,
    )

    assert chain_events_finalize(event_ids=[settled.pk]) == 1

    settled.refresh_from_db()
    assert (settled.is_final, settled.flagged) == (True, True)
    assert settled.flag_reason == "no order has this lease id"
    assert settled.order_id is None
    credits = {c.address: int(c.amount) for c in Credit.objects.filter(chain_id=CID)}
    assert credits == {BOB: 540, ALICE: 400}


def test_a_reclaim_of_a_lease_no_order_has_is_flagged_as_of_an_unknown_order(db):
    reclaimed = _event("LeaseReclaimed", lease_id=UNKNOWN_LEASE, block=80)

    assert chain_events_finalize(event_ids=[reclaimed.pk]) == 1

    reclaimed.refresh_from_db()
    assert (reclaimed.is_final, reclaimed.flagged) == (True, True)
    assert reclaimed.flag_reason == "reclaimed while the order is unknown"
    assert reclaimed.order_id is None


# --- third sample (seed 20261202), continued ---


def test_a_deposit_for_a_lease_no_order_has_is_flagged_as_such(db):
    funded = _event(
        "LeaseFunded", lease_id=UNKNOWN_LEASE, block=90, renter=ALICE, provider=BOB, amount=1
    )

    assert chain_events_finalize(event_ids=[funded.pk]) == 1

    funded.refresh_from_db()
    assert (funded.is_final, funded.flagged) == (True, True)
    assert funded.flag_reason == "no order has this lease id"
    assert funded.order_id is None


def test_a_batch_applies_a_deposit_before_a_start_in_a_later_block_with_a_lower_log_index(
    alice, listing
):
    """The deposit is log 7 of block 100, the start log 0 of block 101: in chain order the
    order is funded, starting, then active, and neither event is flagged."""
    order = make_order(renter=alice, listing=listing, key="chain-order")
    funded = ChainEventFactory(
        name="LeaseFunded",
        lease_id=order.lease_id,
        block_number=100,
        log_index=7,
        is_final=False,
        args={
            "leaseId": order.lease_id,
            "renter": ALICE,
            "provider": BOB,
            "amount": order.escrow_amount,
            "ratePerSecond": order.rate_per_second,
            "maxDuration": order.duration_seconds,
        },
    )
    started = ChainEventFactory(
        name="LeaseStarted",
        lease_id=order.lease_id,
        block_number=101,
        log_index=0,
        is_final=False,
        args={"leaseId": order.lease_id},
    )

    assert chain_events_finalize(event_ids=[funded.pk, started.pk]) == 2

    for event in (funded, started):
        event.refresh_from_db()
        assert (event.is_final, event.flagged, event.flag_reason) == (True, False, "")
        assert event.order_id == order.pk
    assert Order.objects.get(pk=order.pk).state == Order.State.ACTIVE


# --- leases.py run whole ---


def test_the_overdue_sweep_waits_two_minutes_after_a_lease_ends(alice, listing, monkeypatch):
    """The task sent when a lease ended gets two minutes before the sweep sends it again. The
    clock is pinned, so the ages are exact: 121 and 120.5 s are overdue, 120 and 119 s not."""
    now = timezone.now().replace(microsecond=0)
    monkeypatch.setattr("workers.chain_tasks.lease_settle.delay", lambda *a: None)
    ages = [121, 120.5, 120, 119]
    orders = [
        _order_in(
            Order.State.COMPLETED,
            alice=alice,
            listing=listing,
            key=f"ended-{age}",
            ended_at=now - timedelta(seconds=age),
        )
        for age in ages
    ]
    monkeypatch.setattr(timezone, "now", lambda: now)

    assert leases.leases_settle_overdue() == [orders[0].pk, orders[1].pk]


def test_starting_an_order_this_database_never_had_warns_under_the_task_name(db, caplog):
    with caplog.at_level(logging.WARNING, logger=leases.__name__):
        assert leases.lease_start(order_id=987655) is None

    assert [r.getMessage() for r in caplog.records] == [
        "lease_start: no order 987655; dropping the task"
    ]


def test_an_order_is_funded_on_chain_only_once_its_own_deposit_is_final(alice, listing):
    from marketplace.payments.selectors import order_is_funded_on_chain

    order = make_order(renter=alice, listing=listing, key="funded-on-chain")
    other = make_order(renter=alice, listing=listing, key="funded-other")
    _funded(other, block=100)  # another lease's deposit, final
    _event("LeaseStarted", lease_id=order.lease_id, block=101, is_final=True)  # not a deposit
    pending = _event(
        "LeaseFunded", lease_id=order.lease_id, block=102, renter=ALICE, provider=BOB, amount=1
    )
    assert order_is_funded_on_chain(order=order) is False

    ChainEvent.objects.filter(pk=pending.pk).update(is_final=True)
    assert order_is_funded_on_chain(order=order) is True


def test_the_start_of_a_funded_lease_is_recorded_against_its_order(
    chain_w3, deployed, rich_alice, alice, listing
):
    """The `start` transaction's row names its order: the order page and the admin find the
    transaction that made the lease unreclaimable through it."""
    order = make_order(renter=alice, listing=listing, key="start-recorded")
    fund_with_instructions(
        chain_w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )
    index()  # LeaseFunded final → starting (the task sent on commit is not run here)

    tx = leases.lease_start(order_id=order.pk)

    assert (tx.purpose, tx.idempotency_key, tx.order_id, tx.status) == (
        "lease_start",
        f"start:{order.pk}",
        order.pk,
        ChainTransaction.Status.CONFIRMED,
    )
