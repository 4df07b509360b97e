import pytest
from django.contrib.auth.models import Permission

from tests.conftest import payments_receivers_detached
from tests.factories import UserFactory

# The in-process chain of the payments tests: an order's chain story is told from real contract
# events and real signed transactions.
from tests.payments.conftest import chain_w3, deployed, rich_alice, tester_w3  # noqa: F401


@pytest.fixture
def no_chain_receivers():
    with payments_receivers_detached():
        yield


def _staff(username: str, codenames: list[str]):
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


ALL_MODELS = [
    "order",
    "listing",
    "machine",
    "provider",
    "chaintransaction",
    "chainevent",
    "stake",
    "slash",
    "reward",
    "verificationoutcome",
    "contractdeployment",
    "benchmarkjob",
    "benchmarksuite",
    "machineuptime",
    "verdict",
    "platformincident",
    "alert",
    "user",
    "apitoken",
]


@pytest.fixture
def viewer(db):
    """Staff who may look at everything and change nothing (Django's view permissions only)."""
    return _staff("vera", [f"view_{m}" for m in ALL_MODELS])


@pytest.fixture
def operator(db):
    """Staff holding every view and change permission Django has for these models: the admin's
    read-only rule must hold even for them."""
    return _staff("otto", [f"{p}_{m}" for m in ALL_MODELS for p in ("view", "change", "delete")])


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client
