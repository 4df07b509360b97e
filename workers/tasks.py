"""Celery tasks: thin. Each loads by id and calls one service; business logic lives in services."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)

_PERIODIC = {"soft_time_limit": 60, "time_limit": 90, "acks_late": False}


@shared_task(**_PERIODIC)
def machines_expire_heartbeats() -> list[int]:
    from marketplace.benchmarks.services import machines_expire_heartbeats as expire
    from marketplace.providers.heartbeats import heartbeats_flush

    heartbeats_flush()  # the sweep reads the database's last-seen times: bring them up to date
    offline = expire()
    if offline:
        logger.info("marked offline: %s", offline)
    return offline


@shared_task(**_PERIODIC)
def machines_flush_heartbeats() -> int:
    from marketplace.providers.heartbeats import heartbeats_flush

    return heartbeats_flush()


@shared_task(**_PERIODIC)
def orders_meter() -> list[int]:
    from marketplace.orders.services import orders_complete_elapsed

    return orders_complete_elapsed()


@shared_task(**_PERIODIC)
def orders_expire_unfunded() -> list[int]:
    from marketplace.orders.services import orders_cancel_unfunded

    return orders_cancel_unfunded()


@shared_task(**_PERIODIC)
def orders_expire_unstarted() -> list[int]:
    from marketplace.orders.services import orders_expire_unstarted as expire

    return expire()
