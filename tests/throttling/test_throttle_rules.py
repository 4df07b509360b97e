"""Who is counted, and by what: every write by a signed-in user per user; sign-up and login per
client address, which is the socket's unless trusted proxies are configured; agents per machine.
Counts live in Redis, under the cache's own prefix."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.conftest import client_for


@pytest.fixture
def rates(settings):
    def set_rates(**overrides):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {
                **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
                **overrides,
            },
        }

    return set_rates


@pytest.fixture
def proxies(settings):
    def set_proxies(count):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": count}

    return set_proxies


def order_attempt(client):
    """A write that fails validation: it still counts, as every attempt does."""
    return client.post("/api/v1/orders", {"listing_id": "not-a-number"}, format="json")


def wrong_login(client, **headers):
    return client.post(
        "/api/v1/auth/tokens", {"username": "alice", "password": "guess"}, format="json", **headers
    )


def test_a_signed_in_users_writes_are_limited_per_user(rates, alice, carol):
    rates(user_write="3/minute")
    as_alice, as_carol = client_for(alice), client_for(carol)

    statuses = [order_attempt(as_alice).status_code for _ in range(5)]

    assert statuses == [400, 400, 400, 429, 429]
    throttled = order_attempt(as_alice)
    assert throttled.json()["error"]["code"] == "throttled"
    assert int(throttled["Retry-After"]) > 0
    # Per user: carol, on the same address, is not held back by alice.
    assert order_attempt(as_carol).status_code == 400


def test_a_throttled_user_can_still_read(rates, alice):
    rates(user_write="2/minute")
    as_alice = client_for(alice)
    for _ in range(3):
        order_attempt(as_alice)

    assert order_attempt(as_alice).status_code == 429
    assert as_alice.get("/api/v1/orders").status_code == 200
    assert as_alice.get("/api/v1/auth/me").status_code == 200


def test_reads_do_not_count_against_the_write_limit(rates, alice):
    rates(user_write="2/minute")
    as_alice = client_for(alice)

    for _ in range(10):
        assert as_alice.get("/api/v1/orders").status_code == 200

    assert [order_attempt(as_alice).status_code for _ in range(3)] == [400, 400, 429]


def test_user_write_limit_counts_every_write_route(rates, bob):
    """Not only orders: writes on any route share the one per-user count. Requests refused by
    authentication or permissions are not counted (DRF checks those first)."""
    rates(user_write="3/minute")
    as_bob = client_for(bob)

    assert as_bob.post("/api/v1/providers", {}, format="json").status_code == 400
    assert as_bob.put("/api/v1/providers/999999", {}, format="json").status_code in (404, 405)
    assert as_bob.post("/api/v1/providers/999999/registration-tokens").status_code == 404

    assert as_bob.delete("/api/v1/auth/tokens/current").status_code == 429
    assert as_bob.get("/api/v1/auth/me").status_code == 200  # the token was not revoked


def test_agents_keep_their_own_per_machine_scope(rates, agent_of, bob_provider):
    rates(user_write="1/minute", agent="3/minute")
    _, agent = agent_of(bob_provider)

    statuses = [agent.post("/api/v1/agent/heartbeat").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]


def test_login_limit_ignores_a_client_sent_x_forwarded_for(rates, db):
    rates(auth="3/minute")
    anon = APIClient()

    statuses = [
        wrong_login(anon, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code for n in range(5)
    ]

    assert statuses == [401, 401, 401, 429, 429]


def test_behind_one_trusted_proxy_the_address_it_appended_is_the_client(rates, proxies, db):
    """The proxy appends the address it saw; anything before it was written by the client."""
    rates(auth="3/minute")
    proxies(1)
    anon = APIClient(REMOTE_ADDR="10.0.0.2")  # the proxy

    mallory = [
        wrong_login(anon, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.66").status_code
        for n in range(5)
    ]
    someone_else = wrong_login(anon, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code

    assert mallory == [401, 401, 401, 429, 429]
    assert someone_else == 401


def test_counts_are_in_redis_with_an_expiry(rates, db):
    rates(auth="3/minute")
    wrong_login(APIClient())

    client = redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    keys = list(client.scan_iter(match="mkt-cache:*throttle_auth_127.0.0.1"))
    assert len(keys) == 1
    assert client.get(keys[0]) == b"1"
    assert 0 < client.ttl(keys[0]) <= 60  # never a count that outlives its window


def test_clearing_the_cache_leaves_celerys_queue_in_the_same_database():
    """Tests clear the cache between tests; Celery's broker may use the same Redis database."""
    client = redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    client.lpush("celery-queue-of-this-test", "a queued task")
    try:
        cache.set("something", 1)

        cache.clear()

        assert cache.get("something") is None
        assert client.lrange("celery-queue-of-this-test", 0, -1) == [b"a queued task"]
    finally:
        client.delete("celery-queue-of-this-test")
