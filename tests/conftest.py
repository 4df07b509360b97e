from contextlib import contextmanager
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from marketplace.accounts.models import User
from marketplace.accounts.services import api_token_create
from marketplace.providers.services import registration_token_create
from tests.factories import ListingFactory, ProviderFactory, UserFactory

# Tests whose outcome cannot depend on the database engine: kernels and verification (no Django),
# the contracts on the in-process chain, settings checks, the agent's own code, and the chain
# process's restarts (their database use is a few plain ORM rows). CI's PostgreSQL run leaves them
# out (`-m "not engine_agnostic"`): they ran on SQLite already, and the PostgreSQL run exists for
# locking, isolation and query behaviour, which these never reach.
ENGINE_AGNOSTIC_DIRS = (
    "workers",
    "contracts",
    "deploy",
    "agent",
    "restart",
    "verification_sketch",
    "sandbox",
)
ENGINE_AGNOSTIC_FILES = (
    "hostile/test_safe_json.py",
    "benchmarks/test_honest_sweep.py",
    # The agent computing whole suites against the services; the database work is plain ORM
    # reads and row locks taken one request at a time (the race that needs PostgreSQL is
    # device_truth/test_sibling_commit_race.py, which stays in its run).
    "device_truth/test_device_cheats.py",
    "device_truth/test_precision_and_skipping_cheats.py",
    "device_truth/test_parallel_devices.py",
)


# Engine-agnostic tests that CI runs in its PostgreSQL run instead of its SQLite run (.ci/run
# starts the two at the same time): the demo keeps its own SQLite file whatever DATABASE_URL
# says, and the honest sweeps are kernels and verification. Moving them makes the two runs take
# about as long (SQLite was ~550 s the longer). `make test` runs them as usual.
CI_POSTGRES_RUN_FILES = (
    "demo/test_make_demo.py",
    "verification_sketch/test_honest.py",
)


def pytest_collection_modifyitems(config, items):
    tests_dir = Path(__file__).parent
    for item in items:
        relative = Path(item.fspath).relative_to(tests_dir).as_posix()
        if relative.split("/", 1)[0] in ENGINE_AGNOSTIC_DIRS or relative in ENGINE_AGNOSTIC_FILES:
            item.add_marker(pytest.mark.engine_agnostic)
        if relative in CI_POSTGRES_RUN_FILES:
            item.add_marker(pytest.mark.engine_agnostic)
            item.add_marker(pytest.mark.ci_postgres_run)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def eager():
    """Tasks run in-process when enqueued, as a worker would run them."""
    from marketplace import celery_app

    old = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = old


@pytest.fixture(autouse=True)
def _no_throttle_state_between_tests():
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _no_buffered_heartbeats_between_tests():
    """Machine ids restart with each test's database: a heartbeat buffered in Redis by an earlier
    test must not keep this test's machine alive (marketplace/providers/heartbeats.py)."""
    import redis
    from django.conf import settings

    from marketplace.providers.heartbeats import KEY

    redis.Redis.from_url(settings.REDIS_URL).delete(KEY)


def client_for(user: User | None = None, *, token: str | None = None) -> APIClient:
    client = APIClient()
    if user is not None:
        _, token = api_token_create(user=user)
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def anon():
    return APIClient()


@pytest.fixture
def alice(db):
    """A renter."""
    return UserFactory(username="alice", role=User.Role.RENTER)


@pytest.fixture
def carol(db):
    """Another renter, who must never see alice's orders."""
    return UserFactory(username="carol", role=User.Role.RENTER)


@pytest.fixture
def bob(db):
    """An honest provider owner."""
    return UserFactory(username="bob", role=User.Role.PROVIDER_OWNER)


@pytest.fixture
def mallory(db):
    """A provider owner who tries what bob's account may do, on bob's objects."""
    return UserFactory(username="mallory", role=User.Role.PROVIDER_OWNER)


@pytest.fixture
def staff(db):
    return UserFactory(username="sam", role=User.Role.RENTER, is_staff=True)


@pytest.fixture
def bob_provider(bob):
    return ProviderFactory(owner=bob, wallet_address="0x70997970C51812dc3A010C7d01b50e0d17dc79C8")


@pytest.fixture
def listing(bob_provider):
    return ListingFactory(machine__provider=bob_provider)


@pytest.fixture
def agent_of(db):
    """Registers a machine for a provider through the real token exchange; returns (machine_id,
    an APIClient holding its agent credential)."""
    from marketplace.providers.services import machine_register

    def make(provider, *, hardware=None):
        _, raw = registration_token_create(provider=provider, user=provider.owner)
        machine, credential = machine_register(
            registration_token=raw,
            name="agent-box",
            hardware=hardware
            or {
                "accelerators": [
                    {"kind": "gpu", "vendor": "NVIDIA", "model": "H100 80GB HBM3", "memory_gb": 80}
                ]
                * 2,
                "cpu": {"cores": 32},
                "ram_gib": 256,
            },
        )
        return machine, client_for(token=credential)

    return make


@contextmanager
def payments_receivers_detached():
    """Detaches the payments app's receivers (verdicts and ended leases → chain transactions)
    for tests that are about something else and have no chain to send to."""
    from marketplace.benchmarks import signals
    from marketplace.orders.signals import order_ended
    from marketplace.payments import receivers

    hooks = [
        (
            signals.machine_verification_failed,
            "on_verification_failed",
            "payments_verification_failed",
        ),
        (order_ended, "on_order_ended", "payments_order_ended"),
    ]
    detached = [
        (signal, getattr(receivers, name), uid)
        for signal, name, uid in hooks
        if signal.disconnect(dispatch_uid=uid)
    ]
    try:
        yield
    finally:
        for signal, receiver, uid in detached:
            signal.connect(receiver, dispatch_uid=uid)
