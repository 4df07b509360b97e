"""Celery tasks of the webhooks app: thin, as in workers/tasks.py."""

from celery import shared_task


@shared_task(soft_time_limit=60, time_limit=90, acks_late=False)
def webhooks_scan() -> dict[str, int]:
    from marketplace.webhooks.services import webhooks_scan as scan

    return scan()


# A batch is WEBHOOK_DELIVERY_BATCH POSTs of at most WEBHOOK_TIMEOUT_SECONDS each (20 × 5 s =
# 100 s in the worst case, every receiver hanging): inside the soft limit.
@shared_task(soft_time_limit=150, time_limit=180, acks_late=False)
def webhooks_deliver() -> list[int]:
    from marketplace.webhooks.services import deliveries_send_due

    return deliveries_send_due()
