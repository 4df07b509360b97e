"""alice's active lease on a machine of bob's with a registered agent: the ground every workload
test stands on."""

import pytest

from marketplace.orders.models import Order
from marketplace.orders.services import order_activate, order_create, order_mark_funded
from marketplace.providers.models import Machine
from tests.conftest import payments_receivers_detached
from tests.factories import ListingFactory


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _no_chain():
    """Ending a lease in these tests must not enqueue settlements: there is no chain here."""
    with payments_receivers_detached():
        yield


@pytest.fixture
def bob_box(bob_provider, agent_of):
    """(machine, agent client) of bob's registered 2-GPU box, listed."""
    machine, agent = agent_of(bob_provider)
    Machine.objects.filter(pk=machine.pk).update(
        state=Machine.State.LISTED,
        verified_devices=[{"index": 0, "uuid": "GPU-a"}, {"index": 1, "uuid": "GPU-b"}],
        verified_device_count=2,
    )
    machine.refresh_from_db()
    listing = ListingFactory(machine=machine, provider=bob_provider, accelerator_count=2)
    return machine, agent, listing


def active_order(renter, listing, *, key: str, accelerators: int = 1, hours: int = 2) -> Order:
    order, _ = order_create(
        renter=renter,
        listing_id=listing.pk,
        pricing_mode=Order.PricingMode.ON_DEMAND,
        accelerators=accelerators,
        hours=hours,
        idempotency_key=key,
    )
    order_mark_funded(order_id=order.pk)
    return order_activate(order_id=order.pk)


@pytest.fixture
def alice_lease(alice, bob_box):
    return active_order(alice, bob_box[2], key="alice-lease-0001")
