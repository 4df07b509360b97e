"""Objects the API-level tests share: bob's provider, machines and listing, alice's order on it."""

import pytest

from marketplace.orders.models import Order
from marketplace.orders.services import order_activate, order_create, order_mark_funded
from marketplace.providers.models import Machine
from tests.factories import WALLETS, MachineFactory, ProviderFactory


@pytest.fixture
def mallory_provider(mallory):
    return ProviderFactory(owner=mallory, wallet_address=WALLETS[1])


@pytest.fixture
def bob_agent(bob_provider, agent_of):
    """(machine, agent APIClient) of a freshly registered 2× H100 box of bob's."""
    return agent_of(bob_provider)


@pytest.fixture
def bob_verified_machine(bob_provider):
    """A verified, not yet listed 8× H100 machine of bob's: what POST /listings publishes."""
    return MachineFactory(provider=bob_provider, state=Machine.State.VERIFIED)


@pytest.fixture
def mallory_verified_machine(mallory_provider):
    return MachineFactory(provider=mallory_provider, state=Machine.State.VERIFIED)


@pytest.fixture
def alice_order(alice, listing):
    """A created (unfunded) on-demand order of alice's for 1 accelerator of bob's listing."""
    order, _ = order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode=Order.PricingMode.ON_DEMAND,
        accelerators=1,
        hours=2,
        idempotency_key="alice-order-0001",
    )
    return order


@pytest.fixture
def alice_active_order(alice_order):
    order_mark_funded(order_id=alice_order.pk)
    return order_activate(order_id=alice_order.pk)
