"""Signing, retries, a receiver that is down, redirects, and re-scans, against a real HTTP
receiver."""

import json
import time
from datetime import timedelta

from django.utils import timezone

from marketplace.orders import services as order_services
from marketplace.webhooks import services, signing
from marketplace.webhooks.models import WebhookCursor, WebhookDelivery
from tests.conftest import client_for
from tests.webhooks.conftest import endpoint_for, running_lease, scan_and_deliver


def test_lease_active_is_delivered_signed_with_the_endpoint_secret(alice, listing, receiver):
    endpoint = endpoint_for(alice, receiver.url)
    order = running_lease(alice, listing)

    assert scan_and_deliver()
    [request] = receiver.requests
    body, header = request["body"], request["headers"][signing.HEADER]
    assert signing.verify(secret=endpoint["secret"], header=header, body=body)
    assert not signing.verify(secret=signing.secret_new(), header=header, body=body)
    # The signature covers the body: one changed byte fails it.
    assert not signing.verify(secret=endpoint["secret"], header=header, body=body + b" ")
    # Replay window: the same signed request presented 6 minutes later is refused.
    assert not signing.verify(
        secret=endpoint["secret"], header=header, body=body, now=time.time() + 360
    )
    payload = json.loads(body)
    assert payload["id"] == f"order:{order.pk}:active"
    assert payload["type"] == "lease.active"
    assert payload["data"]["order_id"] == order.pk
    assert payload["data"]["escrow_amount"] == order.escrow_amount
    assert request["headers"]["X-Marketplace-Event-Id"] == payload["id"]
    assert request["path"] == "/hooks/marketplace"


def test_secret_is_shown_once_and_rotation_signs_with_both_during_the_rollover(
    alice, listing, receiver, settings
):
    endpoint = endpoint_for(alice, receiver.url)
    client = client_for(alice)
    shown = client.get(f"/api/v1/webhooks/{endpoint['id']}").json()
    assert "secret" not in shown
    assert all("secret" not in e for e in client.get("/api/v1/webhooks").json()["results"])

    rotated = client.post(f"/api/v1/webhooks/{endpoint['id']}/rotate-secret").json()
    assert rotated["secret"] != endpoint["secret"]
    running_lease(alice, listing)
    scan_and_deliver()
    [request] = receiver.requests
    header, body = request["headers"][signing.HEADER], request["body"]
    # During the rollover a receiver holding either secret verifies.
    assert signing.verify(secret=rotated["secret"], header=header, body=body)
    assert signing.verify(secret=endpoint["secret"], header=header, body=body)
    assert not signing.verify(secret=signing.secret_new(), header=header, body=body)


def test_a_second_rotation_ends_the_first_ones_rollover(alice, listing, receiver):
    """The way out when a secret leaked: after two rotations the leaked one signs nothing."""
    leaked = endpoint_for(alice, receiver.url)
    client = client_for(alice)
    client.post(f"/api/v1/webhooks/{leaked['id']}/rotate-secret")
    current = client.post(f"/api/v1/webhooks/{leaked['id']}/rotate-secret").json()
    running_lease(alice, listing)
    scan_and_deliver()
    [request] = receiver.requests
    header, body = request["headers"][signing.HEADER], request["body"]
    assert signing.verify(secret=current["secret"], header=header, body=body)
    assert not signing.verify(secret=leaked["secret"], header=header, body=body)


def test_after_the_rollover_only_the_new_secret_signs(alice, listing, receiver, settings):
    settings.WEBHOOK_SECRET_ROLLOVER_SECONDS = 0
    old = endpoint_for(alice, receiver.url)
    new = client_for(alice).post(f"/api/v1/webhooks/{old['id']}/rotate-secret").json()
    running_lease(alice, listing)
    scan_and_deliver()
    [request] = receiver.requests
    header, body = request["headers"][signing.HEADER], request["body"]
    assert header.count("v1=") == 1
    assert signing.verify(secret=new["secret"], header=header, body=body)
    assert not signing.verify(secret=old["secret"], header=header, body=body)


def test_a_500_is_retried_with_growing_jittered_waits_until_it_succeeds(
    alice, listing, receiver, settings
):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10
    endpoint_for(alice, receiver.url)
    running_lease(alice, listing)
    receiver.statuses = [500, 503]
    now = timezone.now()

    scan_and_deliver(now=now)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    first_wait = (delivery.next_attempt_at - now).total_seconds()
    assert 5 <= first_wait <= 10  # upper half of base·2⁰

    # Not due yet: nothing is sent.
    assert services.deliveries_send_due(now=now + timedelta(seconds=4)) == []
    assert len(receiver.requests) == 1

    later = delivery.next_attempt_at
    services.deliveries_send_due(now=later)
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code) == (2, 503)
    assert 10 <= (delivery.next_attempt_at - later).total_seconds() <= 20  # base·2¹

    services.deliveries_send_due(now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("succeeded", 3, 200)
    assert [t.status_code for t in delivery.tries.all()] == [500, 503, 200]
    # Every try carried the same event: a receiver deduplicates on its id.
    assert len({b["id"] for b in receiver.bodies()}) == 1 and len(receiver.requests) == 3


def test_backoff_stops_growing_at_the_cap(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10
    settings.WEBHOOK_RETRY_CAP_SECONDS = 600
    waits = [services.retry_delay_seconds(n) for n in range(1, 12)]
    assert all(300 <= w <= 600 for w in waits[6:])  # 10·2⁶ = 640 > 600: capped from try 7
    assert waits[0] <= 10


def test_a_receiver_that_is_down_is_marked_failed_after_the_last_try(
    alice, listing, closed_port_url, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    endpoint_for(alice, closed_port_url)
    running_lease(alice, listing)
    now = timezone.now()
    scan_and_deliver(now=now)
    for _ in range(5):
        now += timedelta(hours=2)
        services.deliveries_send_due(now=now)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    assert delivery.last_status_code is None
    assert "Connection" in delivery.last_error or "refused" in delivery.last_error.lower()
    assert delivery.tries.count() == 3


def test_a_redirect_is_not_followed(alice, listing, receiver):
    endpoint_for(alice, receiver.url)
    running_lease(alice, listing)
    receiver.statuses = [302]
    scan_and_deliver()
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "pending" and delivery.last_status_code == 302
    assert "redirect" in delivery.last_error
    assert [r["path"] for r in receiver.requests] == ["/hooks/marketplace"]


def test_rescanning_the_same_rows_delivers_each_event_once(alice, listing, receiver):
    endpoint_for(alice, receiver.url)
    order = running_lease(alice, listing)
    now = timezone.now()
    scan_and_deliver(now=now)
    # Later scans re-read the overlap window, which still holds the order's row.
    for seconds in (1, 30, 120):
        scan_and_deliver(now=now + timedelta(seconds=seconds))
    assert [b["id"] for b in receiver.bodies()] == [f"order:{order.pk}:active"]

    order_services.order_stop_by_renter(order_id=order.pk, user=alice)
    for seconds in (130, 140):
        scan_and_deliver(now=now + timedelta(seconds=seconds))
    assert [b["type"] for b in receiver.bodies()] == ["lease.active", "lease.ended"]
    assert receiver.bodies()[1]["data"]["end_reason"] == "stopped_by_renter"
    assert WebhookDelivery.objects.count() == 2


def test_a_row_committed_after_the_scan_passed_its_time_is_still_delivered(
    alice, listing, receiver
):
    """A transaction stamps its row, a scan runs before it commits and moves the cursor past the
    stamp, then the commit lands: the next scan's overlap window still reads the row."""
    endpoint_for(alice, receiver.url)
    order = running_lease(alice, listing)
    WebhookCursor.objects.create(source="orders", position=order.updated_at + timedelta(seconds=5))
    scan_and_deliver(now=order.updated_at + timedelta(seconds=15))
    assert [b["id"] for b in receiver.bodies()] == [f"order:{order.pk}:active"]
