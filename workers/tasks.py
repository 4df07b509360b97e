"""Celery tasks: thin. Each loads by id and calls one service; business logic lives in services."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)

_PERIODIC = {"soft_time_limit": 60, "time_limit": 90, "acks_late": False}


@shared_task(**_PERIODIC)
def machines_expire_heartbeats() -> list[int]:
    from marketplace.benchmarks.services import machine_heartbeat_lapsed
    from marketplace.providers.selectors import machines_with_stale_heartbeat

    offline = [
        machine_id
        for machine_id in machines_with_stale_heartbeat().values_list("pk", flat=True)
        if machine_heartbeat_lapsed(machine_id=machine_id) is not None
    ]
    if offline:
        logger.info("marked offline: %s", offline)
    return offline


@shared_task(**_PERIODIC)
def orders_meter() -> list[int]:
    from marketplace.orders.services import orders_complete_elapsed

    return orders_complete_elapsed()


@shared_task(**_PERIODIC)
def orders_expire_unfunded() -> list[int]:
    from marketplace.orders.services import orders_cancel_unfunded

    return orders_cancel_unfunded()
