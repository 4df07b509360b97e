"""A lease's life on chain after funding: `start` once the deposit is seen, and the settlement
(settle, fail, or a full refund) once it ends."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone
from hexbytes import HexBytes

from marketplace.orders.models import Order
from marketplace.payments import chain
from marketplace.payments.models import ChainEvent, ChainTransaction
from marketplace.payments.selectors import order_failure_report_hash, order_is_funded_on_chain
from marketplace.payments.services.enqueue import task_enqueue

logger = logging.getLogger(__name__)

ZERO_HASH = "0x" + "00" * 32


def _lease_bytes(order: Order) -> bytes:
    return bytes(HexBytes(order.lease_id))


def _order_or_none(order_id: int, *, task: str) -> Order | None:
    """The order a chain task names, or None (with a warning) for one this database never had:
    another database's broker leftovers (`make clean-run`, a killed worker). Nothing to do for
    it, and retrying would not change that."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        logger.warning("%s: no order %s; dropping the task", task, order_id)
    return order


def lease_start(*, order_id: int) -> ChainTransaction | None:
    """Marks the lease started on chain, which ends the renter's right to reclaim it. Sent for a
    `starting` order; the order becomes active only when the indexer sees LeaseStarted final
    (chain_events._lease_started), so a renter is never served while the deposit is still
    reclaimable."""
    order = _order_or_none(order_id, task="lease_start")
    if order is None:
        return None
    if order.state != Order.State.STARTING:
        return None
    escrow = chain.contract("escrow")
    tx = chain.send_call(
        escrow.functions.start(_lease_bytes(order)),
        idempotency_key=f"start:{order.pk}",
        purpose="lease_start",
        order_id=order.pk,
    )
    return chain.confirm(tx)


class VerdictPending(Exception):
    """A failed lease whose verdict is not readable yet. Never settled citing the zero hash:
    the task retries (chain_tasks), and the overdue sweep sends it again later."""


def lease_settle(*, order_id: int) -> ChainTransaction | None:
    """Closes an ended lease on chain: completed → settle(billable seconds); failed → fail(...,
    report hash of its verdict); cancelled after funding → settle(0), a full refund; never
    funded → nothing. The DB learns the outcome only from the indexed LeaseSettled/LeaseFailed
    event."""
    order = _order_or_none(order_id, task="lease_settle")
    if order is None:
        return None
    if order.state not in Order.AWAITS_SETTLEMENT:
        return None
    if order.state == Order.State.CANCELLED and not order_is_funded_on_chain(order=order):
        return None
    if (
        order.state == Order.State.CANCELLED
        and ChainEvent.objects.filter(name="LeaseReclaimed", lease_id=order.lease_id).exists()
    ):
        return None  # the renter took it all back already; settle(0) would revert
    escrow = chain.contract("escrow")
    lease = _lease_bytes(order)
    seconds = order.billable_seconds or 0
    if order.state == Order.State.CANCELLED:
        seconds = 0
    if order.state == Order.State.FAILED:
        report = order_failure_report_hash(order=order)
        if report is None or report == ZERO_HASH:
            # The key "settle:<order>" makes the first transaction final: citing nothing now
            # would be citing nothing for good.
            logger.error("lease_settle: failed order %s has no verdict yet; retrying", order.pk)
            raise VerdictPending(f"failed order {order.pk} has no verdict")
        fn, purpose = escrow.functions.fail(lease, seconds, bytes(HexBytes(report))), "lease_fail"
    else:
        fn, purpose = escrow.functions.settle(lease, seconds), "lease_settle"
    tx = chain.send_call(
        fn, idempotency_key=f"settle:{order.pk}", purpose=purpose, order_id=order.pk
    )
    return chain.confirm(tx)


def leases_settle_overdue(*, older_than_seconds: int = 120) -> list[int]:
    """Beat: re-enqueues the settlement of every lease that ended a while ago and is still not
    settled. The task sent when it ended can be lost (a broker restarted without persistence, a
    worker killed holding the message); lease_settle is keyed per order, so a duplicate sends
    nothing twice."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        Order.objects.filter(state__in=Order.AWAITS_SETTLEMENT, ended_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for order_id in ids:
        task_enqueue("lease_settle", order_id)
    return ids
