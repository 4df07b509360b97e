"""The effects of final chain events, applied by the indexer in chain order, a batch per database
transaction: deposits activate orders, settlements close them and credit the lease's provider
and renter (and the platform's fees), withdrawals take credits back out, slashes and rewards are
recorded, stakes are replayed."""

from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from web3 import Web3

from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments import receivers
from marketplace.payments.models import (
    AccruedFees,
    ChainEvent,
    ChainTransaction,
    Credit,
    Reward,
    Slash,
)
from marketplace.payments.selectors import provider_for_wallet
from marketplace.payments.services.enqueue import task_enqueue
from marketplace.payments.services.stakes import STAKE_EVENTS, stakes_recompute
from marketplace.providers.models import Provider

logger = logging.getLogger(__name__)


def _flag(event: ChainEvent, reason: str) -> None:
    event.flagged = True
    event.flag_reason = reason
    logger.warning("chain event %s flagged: %s", event, reason)


class _Batch:
    """What the events of one finalize batch share: which lease ids have an order at all (one
    query, not one per deposit nobody ordered), provider wallets looked up once, the parties of
    the leases it settles, and the payout rows and credit movements written together at the
    end."""

    def __init__(self, events: list[ChainEvent]) -> None:
        # An order exists before its lease can be funded (the lease id comes from the order), so
        # a lease id without an order at the start of the batch has none for any of its events.
        self.leases_with_order = set(
            Order.objects.filter(
                lease_id__in={e.lease_id for e in events if e.lease_id}
            ).values_list("lease_id", flat=True)
        )
        self.providers: dict[str, Provider | None] = {}
        self.payouts: list[Slash | Reward] = []
        # (chain id, account) → units credited (+) or withdrawn (−) by this batch; chain id →
        # fees accrued (+) or paid to the treasury (−).
        self.credits: dict[tuple[int, str], int] = defaultdict(int)
        self.fees: dict[int, int] = defaultdict(int)
        # A settlement's LeaseSettled / LeaseFailed names amounts, not payees (fewer bytes of
        # log in the hot path): the payees are the renter and provider of the lease's deposit,
        # which is always an earlier event of the same escrow (final, or in this batch).
        closed = {
            (e.address, e.lease_id)
            for e in events
            if e.name in ("LeaseSettled", "LeaseFailed") and e.lease_id
        }
        self.parties: dict[tuple[str, str], tuple[str, str]] = {}
        if closed:
            for address, lease, args in ChainEvent.objects.filter(
                name="LeaseFunded",
                chain_id=events[0].chain_id,
                lease_id__in={lease for _, lease in closed},
            ).values_list("address", "lease_id", "args"):
                self.parties[(address, lease)] = (args["renter"], args["provider"])

    def order(self, event: ChainEvent) -> Order | None:
        # Read fresh: an earlier event of the same batch may have moved this order on.
        if event.lease_id not in self.leases_with_order:
            return None
        return Order.objects.select_related("provider").filter(lease_id=event.lease_id).first()

    def provider(self, address: str) -> Provider | None:
        if address not in self.providers:
            self.providers[address] = provider_for_wallet(address=address)
        return self.providers[address]


def _lease_funded(event: ChainEvent, batch: _Batch) -> None:
    order = batch.order(event)
    if order is None:
        _flag(event, "no order has this lease id")
        return
    event.order = order
    args = event.args
    expected = {
        "amount": order.escrow_amount,
        "ratePerSecond": order.rate_per_second,
        "maxDuration": order.duration_seconds,
    }
    wrong = [f"{k} {args[k]} != {v}" for k, v in expected.items() if int(args[k]) != v]
    if args["provider"] != Web3.to_checksum_address(order.provider.wallet_address):
        wrong.append(f"provider {args['provider']} != {order.provider.wallet_address}")
    if wrong:
        # The renter's money is in escrow but not on the terms the order was priced at; it
        # stays there until the renter reclaims it. The order never activates on it.
        _flag(event, "funding does not match the order: " + "; ".join(wrong))
        return
    if order.state != Order.State.CREATED:
        _flag(event, f"order is {order.state}, not awaiting funding")
        if order.state == Order.State.CANCELLED:
            # Funded after it was cancelled: give it all back rather than wait for a reclaim.
            order_pk = order.pk
            transaction.on_commit(lambda: task_enqueue("lease_settle", order_pk))
        return
    order = order_services.order_mark_funded(order_id=order.pk)
    if order.state != Order.State.FUNDED:
        # Its accelerators went to another order before this deposit was seen: it was cancelled
        # instead, and that cancellation settles the deposit for 0 seconds, a full refund.
        return
    # Not active yet: served and billed only once `start` is final (_lease_started).
    order_services.order_mark_starting(order_id=order.pk)
    order_pk = order.pk
    transaction.on_commit(lambda: task_enqueue("lease_start", order_pk))


def _lease_started(event: ChainEvent, batch: _Batch) -> None:
    """`start` is final: the renter can no longer reclaim the deposit, so the lease runs (and
    is billed) from now. A start that lands after the order gave up waiting for it changes
    nothing: the order was cancelled for 0 seconds, and settle(0) refunds a started lease too."""
    order = batch.order(event)
    if order is None:
        _flag(event, "no order has this lease id")
        return
    event.order = order
    if order.state != Order.State.STARTING:
        _flag(event, f"order is {order.state}, not starting")
        return
    order_services.order_activate(order_id=order.pk)


def _credit_split(event: ChainEvent, batch: _Batch) -> bool:
    """Credits a settlement's split, as the escrow did, whatever the order's state: the money
    moved on chain all the same. False when the lease's deposit is unknown here."""
    parties = batch.parties.get((event.address, event.lease_id))
    if parties is None:
        return False
    renter, provider = parties
    args, cid = event.args, event.chain_id
    batch.credits[(cid, provider)] += int(args["providerAmount"])
    batch.credits[(cid, renter)] += int(args["refundAmount"])
    batch.fees[cid] += int(args["feeAmount"])
    return True


def _lease_closed(event: ChainEvent, batch: _Batch) -> None:
    if not _credit_split(event, batch):
        # Cannot happen with our escrow (settle needs a funded lease); reconciliation would
        # then report the credits as different.
        _flag(event, "no deposit is indexed for this lease: its credits are not recorded")
        return
    order = batch.order(event)
    if order is None:
        _flag(event, "no order has this lease id")
        return
    event.order = order
    if order.state not in Order.AWAITS_SETTLEMENT:
        _flag(event, f"order is {order.state}, not awaiting settlement")
        return
    expected_seconds = 0 if order.state == Order.State.CANCELLED else order.billable_seconds or 0
    if int(event.args["secondsUsed"]) != expected_seconds:
        _flag(event, f"settled {event.args['secondsUsed']} s, order billed {expected_seconds} s")
    order_services.order_mark_settled(order_id=order.pk)


def _lease_reclaimed(event: ChainEvent, batch: _Batch) -> None:
    order = batch.order(event)
    event.order = order
    if order is not None and order.state in (Order.State.FUNDED, Order.State.STARTING):
        # The renter took the deposit back before `start` was final (it never was, in the
        # reclaim delay): the order was never served, so it ends here for 0 seconds; the escrow
        # already paid everything back, so lease_settle sends nothing for it.
        order_services.order_cancel(order_id=order.pk, reason="deposit reclaimed before start")
        return
    if order is None or order.state not in (Order.State.CANCELLED, Order.State.SETTLED):
        _flag(event, f"reclaimed while the order is {order.state if order else 'unknown'}")


def _credit_withdrawn(event: ChainEvent, batch: _Batch) -> None:
    batch.credits[(event.chain_id, event.args["account"])] -= int(event.args["amount"])


def _fees_withdrawn(event: ChainEvent, batch: _Batch) -> None:
    batch.fees[event.chain_id] -= int(event.args["amount"])


def _credits_apply(batch: _Batch) -> None:
    """The batch's credit movements, one UPDATE per account (in a fixed order, so concurrent
    batches lock rows alike; only one batch holds a given event anyway)."""
    now = timezone.now()
    moves = sorted((key, delta) for key, delta in batch.credits.items() if delta)
    if moves:
        Credit.objects.bulk_create(
            [Credit(chain_id=cid, address=address) for (cid, address), _ in moves],
            ignore_conflicts=True,
        )
        for (cid, address), delta in moves:
            Credit.objects.filter(chain_id=cid, address=address).update(
                amount=F("amount") + delta, updated_at=now
            )
    for cid, delta in sorted(batch.fees.items()):
        if delta:
            AccruedFees.objects.get_or_create(chain_id=cid)
            AccruedFees.objects.filter(chain_id=cid).update(
                amount=F("amount") + delta, updated_at=now
            )


def _payout(event: ChainEvent, batch: _Batch) -> None:
    model = Slash if event.name == "Slashed" else Reward
    batch.payouts.append(
        model(
            event=event,
            address=event.account,
            provider=batch.provider(event.account),
            amount=int(event.args["amount"]),
            report_hash=event.args["reportHash"],
            tx_hash=event.tx_hash,
        )
    )


_HANDLERS = {
    "LeaseFunded": _lease_funded,
    "LeaseStarted": _lease_started,
    "LeaseSettled": _lease_closed,
    "LeaseFailed": _lease_closed,
    "LeaseReclaimed": _lease_reclaimed,
    "CreditWithdrawn": _credit_withdrawn,
    "FeesWithdrawn": _fees_withdrawn,
    "Slashed": _payout,
    "Rewarded": _payout,
}


# Events after which the provider's stake lock on chain follows its leases.
_LOCK_EVENTS = ("LeaseFunded", "LeaseStarted")


def chain_events_finalize(*, event_ids: list[int]) -> int:
    """Applies the effects of stored events once they have enough confirmations, in chain order,
    in one database transaction: the batch commits whole or not at all. Exactly once: the rows
    are locked, and only those not yet final are flipped and applied, in the same transaction
    as their effects. Returns how many became final."""
    with transaction.atomic():
        events = list(
            ChainEvent.objects.select_for_update()
            .filter(pk__in=event_ids, is_final=False)
            .order_by("block_number", "log_index")
        )
        if not events:
            return 0
        now = timezone.now()
        batch = _Batch(events)
        outcomes: dict[tuple, list[int]] = {}
        wallets: dict[tuple[int, str], None] = {}
        for event in events:
            handler = _HANDLERS.get(event.name)
            if handler is not None:
                handler(event, batch)
            key = (event.order_id, event.flagged, event.flag_reason)
            outcomes.setdefault(key, []).append(event.pk)
            if event.name in STAKE_EVENTS:
                wallets[(event.chain_id, event.account)] = None
        # Each row is written once, final with its outcome: one UPDATE per distinct outcome
        # (most events have none, most deposits nobody ordered share one), not one per event.
        # No handler reads another event's row, so flipping the batch together after its
        # handlers equals flipping each event before its own.
        for (order_id, flagged, reason), pks in outcomes.items():
            ChainEvent.objects.filter(pk__in=pks).update(
                is_final=True,
                order_id=order_id,
                flagged=flagged,
                flag_reason=reason,
                updated_at=now,
            )
        for event in events:
            event.is_final = True
        for model in (Slash, Reward):
            rows = [p for p in batch.payouts if isinstance(p, model)]
            # An event is final once, so its payout row is new; the conflict guard is the
            # unique event key, kept as a second lock.
            model.objects.bulk_create(rows, ignore_conflicts=True)
        _credits_apply(batch)
        # A stake is the replay of all its wallet's final events (the batch's included now):
        # replaying once after the batch gives what replaying after each event would have left.
        for cid in {cid for cid, _ in wallets}:
            stakes_recompute(cid=cid, addresses=[a for c, a in wallets if c == cid])
        leases_moved = [e.order_id for e in events if e.name in _LOCK_EVENTS and e.order_id]
        if leases_moved:
            transaction.on_commit(lambda: receivers.lease_locks_update(order_ids=leases_moved))
        _transactions_confirm_by_events(events)
    return len(events)


def _transactions_confirm_by_events(events: list[ChainEvent]) -> None:
    """A transaction of ours whose effect is final is confirmed, whatever its task saw."""
    live = Q(status=ChainTransaction.Status.PENDING) | Q(status=ChainTransaction.Status.MINED)
    where = {e.tx_hash: e for e in events}
    ours = ChainTransaction.objects.filter(live, tx_hash__in=list(where)).values_list(
        "tx_hash", flat=True
    )
    for tx_hash in set(ours):
        event = where[tx_hash]
        ChainTransaction.objects.filter(live, tx_hash=tx_hash).update(
            status=ChainTransaction.Status.CONFIRMED,
            block_number=event.block_number,
            block_hash=event.block_hash,
        )


def chain_event_finalize(*, event_id: int) -> bool:
    """One event's effects (see chain_events_finalize)."""
    return chain_events_finalize(event_ids=[event_id]) == 1
