"""Actors and listings for the capacity tests. The in-process chain fixtures come from the
payments tests, for the one scenario that follows the money."""

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.orders import services
from marketplace.orders.models import Order
from tests.factories import ListingFactory, UserFactory
from tests.payments.conftest import chain_w3, deployed, rich_alice, tester_w3  # noqa: F401


@pytest.fixture
def mallet(db):
    """A renter who orders everything and never pays: the squatter."""
    return UserFactory(username="mallet", role=User.Role.RENTER)


@pytest.fixture
def market(bob_provider):
    """Four 8-accelerator listings of bob's, on four machines."""
    return [ListingFactory(machine__provider=bob_provider) for _ in range(4)]


def order(renter, listing, key, *, accelerators=8, pricing_mode="on_demand", **kw) -> Order:
    if pricing_mode != "reserved":
        kw.setdefault("hours", 2)
    made, created = services.order_create(
        renter=renter,
        listing_id=listing.pk,
        pricing_mode=pricing_mode,
        accelerators=accelerators,
        idempotency_key=key,
        **kw,
    )
    assert created
    return made


def running(renter, listing, key, **kw) -> Order:
    """A lease its renter funded and that started."""
    made = order(renter, listing, key, **kw)
    services.order_mark_funded(order_id=made.pk)
    services.order_mark_starting(order_id=made.pk)
    return services.order_activate(order_id=made.pk)


def let_hold_expire(*orders: Order) -> None:
    """What the clock does after ORDER_UNFUNDED_HOLD_SECONDS: the hold is behind us."""
    Order.objects.filter(pk__in=[o.pk for o in orders]).update(
        hold_expires_at=timezone.now() - timedelta(seconds=1)
    )
