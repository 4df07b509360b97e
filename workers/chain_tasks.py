"""Chain tasks: thin. Each loads by id and calls one payments service.

Every money-moving task is idempotent by construction: the transaction it sends is keyed
("settle:<order id>", "slash:<job id>", ...) and recorded before broadcast, so a retry, a
redelivery (acks_late) or a second enqueue sends ONE transaction. Transient chain errors
(node unreachable, not confirmed yet, nonce raced) retry with backoff; a revert does not.
"""

import functools
import logging

from celery import shared_task
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout

from marketplace.payments.chain import TransientChainError

logger = logging.getLogger(__name__)

_TRANSIENT = (TransientChainError, RequestsConnectionError, Timeout)

_MONEY = {
    "soft_time_limit": 60,
    "time_limit": 90,
    # Safe only because the services are idempotent (see above).
    "acks_late": True,
    "autoretry_for": _TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 20,
}
_PERIODIC = {"soft_time_limit": 60, "time_limit": 90, "acks_late": False}
INDEX_SECONDS = 40


def unless_chain_reset(task_fn):
    """Runs the task only while the node is the chain this database belongs to. After a reset
    (payments/genesis.py) it stands down and returns None: one Alert says so, nothing is sent to
    a chain where it would mean nothing, and the beat sweeps pick the work up if the chain's
    state comes back."""

    @functools.wraps(task_fn)
    def guarded(*args, **kwargs):
        from marketplace.payments.genesis import chain_reset_check

        if chain_reset_check() is not None:
            return None
        return task_fn(*args, **kwargs)

    return guarded


@shared_task(bind=True, **_MONEY)
@unless_chain_reset
def lease_settle(self, order_id: int) -> str | None:
    from marketplace.payments.services.leases import VerdictPending
    from marketplace.payments.services.leases import lease_settle as settle

    try:
        tx = settle(order_id=order_id)
    except VerdictPending as exc:
        # A failed lease is never closed citing no report; its verdict is expected to appear.
        raise self.retry(exc=exc, countdown=30) from exc
    return tx.tx_hash if tx else None


@shared_task(**_MONEY)
@unless_chain_reset
def lease_start(order_id: int) -> str | None:
    from marketplace.payments.services.leases import lease_start as start

    tx = start(order_id=order_id)
    return tx.tx_hash if tx else None


@shared_task(**_MONEY)
@unless_chain_reset
def provider_slash(key: str) -> str | None:
    """`key` is the verdict's key (a job id, or "liveness-<machine>-<time>")."""
    from marketplace.payments.services.slashing import provider_slash as slash

    tx = slash(key=key)
    return tx.tx_hash if tx else None


@shared_task(**_PERIODIC)
@unless_chain_reset
def chain_index() -> int:
    from marketplace.payments.indexer import index

    # Well inside the soft time limit: a long catch-up stops between batches, not inside one.
    return index(seconds=INDEX_SECONDS).stored


@shared_task(**_PERIODIC)
@unless_chain_reset
def leases_settle_overdue() -> list[int]:
    from marketplace.payments.services.leases import leases_settle_overdue as sweep

    return sweep()


@shared_task(**_PERIODIC)
def verdicts_enqueue_effects() -> list[int]:
    from marketplace.payments.services.slashing import verdicts_enqueue_effects_due

    return verdicts_enqueue_effects_due()


@shared_task(**_PERIODIC)
@unless_chain_reset
def chain_transactions_confirm() -> int:
    from marketplace.payments.services.transactions import transactions_confirm_pending

    return transactions_confirm_pending()


@shared_task(**_PERIODIC)
@unless_chain_reset
def providers_reward() -> list[str]:
    from marketplace.payments.services.rewarding import providers_reward as reward

    return [tx.tx_hash for tx in reward()]
