import pytest

from tests.conftest import payments_receivers_detached
from tests.dashboard.seed import seed_market

# The in-process chain of the payments tests, for the lease the browser's admin walk follows.
from tests.payments.conftest import chain_w3, deployed, rich_alice, tester_w3  # noqa: F401


@pytest.fixture(autouse=True)
def no_chain_receivers():
    """Seeding funds and activates orders; the payments receivers would turn that into chain
    transactions, which are not what the dashboard tests are about."""
    with payments_receivers_detached():
        yield


@pytest.fixture
def market(db):
    return seed_market(hours=24, step_minutes=120)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client
