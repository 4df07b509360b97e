"""The beat entries reach the worker: every scheduled task name is one the worker registers
from its imports, and the webhook tasks do their work when run as a worker runs them."""

from django.conf import settings

from marketplace import celery_app
from marketplace.webhooks import tasks
from marketplace.webhooks.models import WebhookDelivery
from tests.webhooks.conftest import endpoint_for, running_lease


def test_every_beat_entry_names_a_task_the_worker_imports():
    """By module: a worker registers only the tasks of the modules in its imports (this test
    module importing one would register it here and prove nothing)."""
    imported = set(celery_app.conf.imports)
    missing = [
        entry["task"]
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"].rsplit(".", 1)[0] not in imported
    ]
    assert not missing
    celery_app.loader.import_default_modules()
    scheduled = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    assert all(name in celery_app.tasks for name in scheduled)


def test_the_beat_tasks_scan_and_deliver(alice, listing, receiver, eager):
    endpoint_for(alice, receiver.url)
    order = running_lease(alice, listing)
    assert tasks.webhooks_scan.delay().get() == {
        "orders": 1,
        "machine_staff_actions": 0,
        "verdicts": 0,
        "slashes": 0,
    }
    [sent] = tasks.webhooks_deliver.delay().get()
    assert WebhookDelivery.objects.get(pk=sent).state == "succeeded"
    assert [b["id"] for b in receiver.bodies()] == [f"order:{order.pk}:active"]
