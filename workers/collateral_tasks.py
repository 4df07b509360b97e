"""Collateral tasks: thin; each calls one payments service (marketplace/payments/collateral*)."""

from celery import shared_task

_PERIODIC = {"soft_time_limit": 60, "time_limit": 90, "acks_late": False}


@shared_task(**_PERIODIC)
def collateral_sync() -> int:
    from marketplace.payments.collateral_services import collateral_sync as sync

    return sync()
