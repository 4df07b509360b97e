"""Retries of one order racing for a full listing (mutation testing, issue 14): the renter's lock
makes the later ones wait; once in, each must find the first order under its key before it
counts capacity, or it would be refused for the accelerators its own first attempt took."""

import threading
from functools import partial

import pytest

from marketplace.orders import services
from marketplace.orders.models import Order
from tests.races.conftest import race


def _every_accelerator(renter, listing, key):
    """One attempt at ordering all 8 of the listing's accelerators for an hour under `key`:
    (order, created), as order_create returns it."""
    return partial(
        services.order_create,
        renter=renter,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=8,
        hours=1,
        idempotency_key=key,
    )


@pytest.mark.django_db(transaction=True)
def test_racing_retries_for_every_accelerator_all_get_the_first_order(alice, listing):
    attempt = _every_accelerator(alice, listing, "race-full-0001")
    outcomes = race(*[attempt for _ in range(6)])
    assert [kind for kind, _ in outcomes] == ["ok"] * 6, outcomes
    made = Order.objects.get()
    assert {result[0].pk for _, result in outcomes} == {made.pk}
    assert sorted(result[1] for _, result in outcomes) == [False] * 5 + [True]


@pytest.mark.django_db(transaction=True)
def test_retries_that_all_missed_the_first_order_find_it_once_inside(alice, listing, monkeypatch):
    # Forces the race the renter lock is for: each attempt's first look (before the transaction)
    # finds nothing, and none goes on until all three have looked. Then they take the lock one
    # by one; the second and third must find the first's order inside, not be refused for the
    # 8 accelerators it took.
    real = services._existing_for_key
    looked = threading.Barrier(3)
    first_look = threading.local()

    def look_then_wait(**kw):
        found = real(**kw)
        if not getattr(first_look, "done", False):
            first_look.done = True
            looked.wait(timeout=20)
        return found

    monkeypatch.setattr(services, "_existing_for_key", look_then_wait)

    attempt = _every_accelerator(alice, listing, "race-full-0002")
    outcomes = race(attempt, attempt, attempt)
    assert [kind for kind, _ in outcomes] == ["ok"] * 3, outcomes
    made = Order.objects.get()
    assert sorted((result[0].pk, result[1]) for _, result in outcomes) == [
        (made.pk, False),
        (made.pk, False),
        (made.pk, True),
    ]
