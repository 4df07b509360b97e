"""Chain tasks: thin. Each loads by id and calls one payments service.

Every money-moving task is idempotent by construction: the transaction it sends is keyed
("settle:<order id>", "slash:<job id>", ...) and recorded before broadcast, so a retry, a
redelivery (acks_late) or a second enqueue sends ONE transaction. Transient chain errors
(node unreachable, not confirmed yet, nonce raced) retry with backoff; a revert does not.
"""

import logging

from celery import shared_task
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout

from contracts.chain import TransientChainError

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


@shared_task(bind=True, **_MONEY)
def lease_settle(self, order_id: int) -> str | None:
    from marketplace.payments.services import VerdictPending
    from marketplace.payments.services import lease_settle as settle

    try:
        tx = settle(order_id=order_id)
    except VerdictPending as exc:
        # A failed lease is never closed citing no report; its verdict is expected to appear.
        raise self.retry(exc=exc, countdown=30) from exc
    return tx.tx_hash if tx else None


@shared_task(**_MONEY)
def lease_start(order_id: int) -> str | None:
    from marketplace.payments.services import lease_start as start

    tx = start(order_id=order_id)
    return tx.tx_hash if tx else None


@shared_task(**_MONEY)
def provider_slash(key: str) -> str | None:
    """`key` is the verdict's key (a job id, or "liveness-<machine>-<time>")."""
    from marketplace.payments.services import provider_slash as slash

    tx = slash(key=key)
    return tx.tx_hash if tx else None


@shared_task(**_PERIODIC)
def chain_index() -> int:
    from contracts.indexer import index

    return index().stored


@shared_task(**_PERIODIC)
def leases_settle_overdue() -> list[int]:
    from marketplace.payments.services import leases_settle_overdue as sweep

    return sweep()


@shared_task(**_PERIODIC)
def verdicts_enqueue_effects() -> list[int]:
    from marketplace.payments.services import verdicts_enqueue_effects_due

    return verdicts_enqueue_effects_due()


@shared_task(**_PERIODIC)
def chain_transactions_confirm() -> int:
    from marketplace.payments.services import transactions_confirm_pending

    return transactions_confirm_pending()


@shared_task(**_PERIODIC)
def providers_reward() -> list[str]:
    from marketplace.payments.services import providers_reward as reward

    return [tx.tx_hash for tx in reward()]
