"""Retries of one order racing for a full listing (mutation testing, issue 14): the renter's lock
makes the later ones wait; once in, each must find the first order under its key before it
counts capacity, or it would be refused for the accelerators its own first attempt took."""

import pytest

from marketplace.orders import services
from marketplace.orders.models import Order
from tests.races.conftest import race


@pytest.mark.django_db(transaction=True)
def test_racing_retries_for_every_accelerator_all_get_the_first_order(alice, listing):
    def attempt():
        return services.order_create(
            renter=alice,
            listing_id=listing.pk,
            pricing_mode="on_demand",
            accelerators=8,
            hours=1,
            idempotency_key="race-full-0001",
        )

    outcomes = race(*[attempt for _ in range(6)])
    assert [kind for kind, _ in outcomes] == ["ok"] * 6, outcomes
    made = Order.objects.get()
    assert {result[0].pk for _, result in outcomes} == {made.pk}
    assert sorted(result[1] for _, result in outcomes) == [False] * 5 + [True]
