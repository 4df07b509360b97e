"""Our own transactions after they are sent: waiting for one (management commands), and the beat
that confirms or rebroadcasts the ones no task waits on."""

from __future__ import annotations

import logging
import time

from web3 import Web3

from marketplace.payments import chain
from marketplace.payments.models import ChainTransaction

logger = logging.getLogger(__name__)


def transaction_confirm_blocking(
    *, tx: ChainTransaction, w3: Web3, timeout: float = 60.0
) -> ChainTransaction:
    """For management commands only; tasks retry instead of waiting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return chain.confirm(tx, w3=w3)
        except chain.NotConfirmed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def transactions_confirm_pending(*, limit: int = 100) -> int:
    """Beat: rebroadcasts pending transactions the node lost and records confirmations of the
    ones no task is waiting on any more (e.g. rewards). Returns how many got confirmed."""
    confirmed = 0
    live = ChainTransaction.objects.filter(
        status__in=[ChainTransaction.Status.PENDING, ChainTransaction.Status.MINED]
    ).order_by("chain_id", "sender", "nonce")[:limit]
    for tx in live:
        try:
            chain.confirm(tx)
            confirmed += 1
        except chain.ChainError as exc:
            logger.info("transaction %s: %s", tx.tx_hash, exc)
    return confirmed
