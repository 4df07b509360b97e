"""Endpoint URLs may not point at the server's own network, at registration or at delivery."""

import pytest

from marketplace.webhooks.models import WebhookDelivery
from tests.conftest import client_for
from tests.webhooks.conftest import endpoint_for, running_lease, scan_and_deliver


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://[::ffff:127.0.0.1]/hook",  # loopback behind an IPv4-mapped IPv6 address
        "http://0.0.0.0/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    ],
)
def test_a_private_or_loopback_url_is_refused_at_registration(alice, url):
    response = client_for(alice).post("/api/v1/webhooks", {"url": url}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in {"webhooks_url_refused", "invalid_input"}


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "http://user:pw@example.com/x", "file:///etc/passwd", "not a url"],
)
def test_a_url_of_another_kind_is_refused(alice, url):
    response = client_for(alice).post("/api/v1/webhooks", {"url": url}, format="json")
    assert response.status_code == 400
    assert "error" in response.json()


def test_a_target_that_became_private_is_refused_at_delivery(alice, listing, receiver, settings):
    """Registered while allowed (a name that resolved publicly then, here the test setting); the
    check runs again before every POST, so the receiver is never contacted."""
    endpoint_for(alice, receiver.url)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    running_lease(alice, listing)
    scan_and_deliver()
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "pending" and delivery.attempts == 1
    assert delivery.last_error.startswith("refused:")
    assert receiver.requests == []


def test_endpoints_per_user_are_capped(alice, receiver, settings):
    settings.WEBHOOK_MAX_ENDPOINTS_PER_USER = 2
    endpoint_for(alice, receiver.url)
    endpoint_for(alice, receiver.url)
    response = client_for(alice).post("/api/v1/webhooks", {"url": receiver.url}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "webhooks_too_many_endpoints"


def test_an_unknown_event_type_is_a_400(alice, receiver):
    response = client_for(alice).post(
        "/api/v1/webhooks", {"url": receiver.url, "event_types": ["lease.exploded"]}, format="json"
    )
    assert response.status_code == 400
    assert "event_types" in response.json()["error"]["detail"]
