"""Orders under real concurrency: two threads, each with its own client and database connection,
released together by a barrier. Runs against SQLite (IMMEDIATE transactions, busy timeout) and,
when DATABASE_URL points at it, PostgreSQL (row locks on the listing)."""

import threading

import pytest
from django.db import connection
from django.utils import timezone

from marketplace.orders.models import Order
from marketplace.orders.services import order_create
from tests.api.helpers import assert_error
from tests.conftest import client_for

ORDER = {"pricing_mode": "on_demand", "accelerators": 2, "hours": 3}


def _race(*requests):
    """Runs each zero-argument callable in its own thread, all starting at once; returns their
    results in order. A thread's exception is re-raised here rather than lost."""
    barrier = threading.Barrier(len(requests))
    results: list = [None] * len(requests)
    errors: list = []

    def run(i, fn):
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    if errors:
        raise errors[0]
    return results


def _post_order(user, listing, key, **overrides):
    client = client_for(user)  # made here, in the main thread: each thread gets its own client

    def post():
        return client.post(
            "/api/v1/orders",
            {"listing_id": listing.pk, **ORDER, **overrides},
            format="json",
            HTTP_IDEMPOTENCY_KEY=key,
        )

    return post


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_with_one_idempotency_key_create_one_order(alice, listing):
    first, second = _race(
        _post_order(alice, listing, "race-key-0001"),
        _post_order(alice, listing, "race-key-0001"),
    )

    # The listing lock serialises the two: the first creates (201), the second finds the first's
    # order under the same key (200). Both describe the same order.
    assert sorted([first.status_code, second.status_code]) == [200, 201]
    assert first.json()["id"] == second.json()["id"]
    assert first.json() == second.json()
    order = Order.objects.get()
    assert order.pk == first.json()["id"]
    assert (order.renter, order.accelerators, order.idempotency_key) == (alice, 2, "race-key-0001")


@pytest.mark.django_db(transaction=True)
def test_many_concurrent_retries_of_one_order_create_one_order(alice, listing):
    responses = _race(*[_post_order(alice, listing, "race-key-0002") for _ in range(6)])

    assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
    assert {r.json()["id"] for r in responses} == {Order.objects.get().pk}


@pytest.mark.django_db(transaction=True)
def test_concurrent_reuse_of_a_key_for_a_different_order_is_refused(alice, listing):
    same_key, other_body = _race(
        _post_order(alice, listing, "race-key-0003"),
        _post_order(alice, listing, "race-key-0003", accelerators=3),
    )

    statuses = sorted([same_key.status_code, other_body.status_code])
    assert statuses == [201, 422]
    loser = same_key if same_key.status_code == 422 else other_body
    winner = other_body if loser is same_key else same_key
    error = assert_error(loser, 422, "orders_idempotency_key_reused")
    assert error["detail"]["order_id"] == winner.json()["id"]
    assert Order.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_same_key_from_two_renters_makes_two_orders(alice, carol, listing):
    # Keys are scoped per renter: carol cannot collide with, or fetch, alice's order.
    a, c = _race(
        _post_order(alice, listing, "shared-key-0001"),
        _post_order(carol, listing, "shared-key-0001"),
    )
    assert (a.status_code, c.status_code) == (201, 201)
    assert a.json()["id"] != c.json()["id"]
    assert Order.objects.filter(idempotency_key="shared-key-0001").count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_renters_racing_for_the_last_accelerators_one_wins(alice, carol, bob, listing):
    # 6 of the listing's 8 accelerators are already leased; alice and carol both want the last 2.
    order_create(
        renter=carol,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=6,
        hours=1,
        idempotency_key="earlier-order-01",
    )

    a, c = _race(
        _post_order(alice, listing, "last-two-alice"),
        _post_order(carol, listing, "last-two-carol"),
    )

    assert sorted([a.status_code, c.status_code]) == [201, 409]
    loser = a if a.status_code == 409 else c
    error = assert_error(loser, 409, "orders_capacity_exhausted")
    assert error["detail"] == {"requested": 2}
    holding = Order.objects.filter(listing=listing).filter(Order.holds_capacity(now=timezone.now()))
    assert holding.count() == 2
    assert sum(o.accelerators for o in holding) == listing.accelerator_count


@pytest.mark.django_db(transaction=True)
def test_many_renters_racing_never_oversell_a_listing(alice, carol, staff, listing):
    # 3 renters × 2 requests of 3 accelerators on an 8-accelerator listing: at most 2 can win.
    attempts = [
        _post_order(user, listing, f"oversell-{user.username}-{i}", accelerators=3)
        for user in (alice, carol, staff)
        for i in range(2)
    ]
    responses = _race(*attempts)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 201, 409, 409, 409, 409]
    for r in responses:
        if r.status_code == 409:
            assert_error(r, 409, "orders_capacity_exhausted")
    assert sum(o.accelerators for o in Order.objects.all()) == 6


@pytest.mark.django_db(transaction=True)
def test_concurrent_cancels_of_one_order_cancel_it_once(alice, listing):
    order, _ = order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=1,
        hours=1,
        idempotency_key="cancel-race-0001",
    )
    clients = [client_for(alice), client_for(alice)]

    first, second = _race(
        *[lambda c=c: c.post(f"/api/v1/orders/{order.pk}/cancel") for c in clients]
    )

    assert sorted([first.status_code, second.status_code]) == [200, 409]
    loser = first if first.status_code == 409 else second
    assert_error(loser, 409, "order_invalid_transition")
    order.refresh_from_db()
    assert order.state == Order.State.CANCELLED


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changed",
    [
        {"listing": True},
        {"accelerators": 1},
        {"hours": 4},
        {"pricing_mode": "interruptible", "bid_per_hour": None},
    ],
    ids=["listing", "accelerators", "hours", "pricing_mode"],
)
def test_same_key_with_any_field_changed_is_refused(alice, listing, changed):
    """Every field of the request is part of what the key stands for: reusing a key for another
    listing (or size, duration, mode) must not silently return the first order."""
    from tests.factories import ListingFactory

    first = _post_order(alice, listing, "key-fields")()
    assert first.status_code == 201
    overrides = dict(changed)
    target = listing
    if overrides.pop("listing", False):
        target = ListingFactory(machine__provider=listing.provider)
    if overrides.get("pricing_mode") == "interruptible":
        overrides["bid_per_hour"] = listing.interruptible_floor_per_hour or listing.price_per_hour
    second = _post_order(alice, target, "key-fields", **overrides)()
    error = assert_error(second, 422, "orders_idempotency_key_reused")
    assert error["detail"]["order_id"] == first.json()["id"]
    assert Order.objects.filter(renter=alice).count() == 1
