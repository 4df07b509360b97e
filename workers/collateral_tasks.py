"""Collateral tasks: thin; each calls one payments service (marketplace/payments/collateral*)."""

from celery import shared_task

from workers.chain_tasks import _MONEY, _PERIODIC, unless_chain_reset


@shared_task(**_PERIODIC)
def collateral_sync() -> int:
    from marketplace.payments.collateral_services import collateral_sync as sync

    return sync()


@shared_task(**_MONEY)
@unless_chain_reset
def provider_collateral_lock(provider_id: int) -> str | None:
    """Idempotent: the lock's key names its target (collateral_services.provider_lock_send)."""
    from marketplace.payments.collateral_services import provider_lock_send

    tx = provider_lock_send(provider_id=provider_id)
    return tx.tx_hash if tx else None
