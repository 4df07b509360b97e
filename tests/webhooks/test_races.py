"""Two beat runs at once (a slow run overlapping the next, or two beat processes by mistake):
the scan queues each event once and the sender POSTs each delivery once."""

import pytest

from marketplace.webhooks import services
from marketplace.webhooks.models import WebhookDelivery
from tests.races.conftest import race
from tests.webhooks.conftest import endpoint_for, running_lease

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_scans_and_senders_deliver_each_event_once(alice, listing, receiver):
    endpoint_for(alice, receiver.url)
    order = running_lease(alice, listing)

    outcomes = race(services.webhooks_scan, services.webhooks_scan, services.webhooks_scan)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    assert WebhookDelivery.objects.count() == 1

    outcomes = race(services.deliveries_send_due, services.deliveries_send_due)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    assert sorted(len(sent) for _, sent in outcomes) == [0, 1]
    assert [b["id"] for b in receiver.bodies()] == [f"order:{order.pk}:active"]
    assert WebhookDelivery.objects.get().tries.count() == 1
