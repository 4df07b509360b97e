import pytest
from django.test import TestCase

from marketplace.benchmarks import signals
from marketplace.providers.services import machine_register, registration_token_create
from tests.conftest import client_for, payments_receivers_detached
from workers.agent.client import AgentApi
from workers.agent.runner import JobRunner

CPU_HARDWARE = {
    "accelerators": [],
    "cpu": {"vendor": "AuthenticAMD", "model": "AMD EPYC", "cores": 2},
    "ram_gib": 8,
    "backends": ["numpy", "torch"],
}
H100_ON_A_CPU = {
    "accelerators": [
        {"kind": "gpu", "vendor": "NVIDIA", "model": "H100 80GB HBM3", "memory_gb": 80}
    ],
    "cpu": {"cores": 2},
    "ram_gib": 8,
    "backends": ["numpy"],
}


class DjangoTransport:
    """The agent's Transport over DRF's test client: the real URLs, views, auth and services.

    Each request runs its on-commit callbacks when it returns, as a committed request would:
    with eager Celery that issues challenges and verifies answers inline.
    """

    def __init__(self, client):
        self.client = client

    def request(self, method, path, *, params=None, body=None):
        with TestCase.captureOnCommitCallbacks(execute=True):
            if method == "GET":
                response = self.client.get(path, params or {})
            else:
                response = self.client.generic(
                    method, path, body or b"", content_type="application/json"
                )
        data = response.json() if response.content else None
        return response.status_code, data


@pytest.fixture(autouse=True)
def eager_celery(eager):
    """Challenges and verifications run inline in these tests, as a worker would run them."""


@pytest.fixture(autouse=True)
def no_chain_receivers():
    """The payments app turns verdicts and ended leases into chain transactions; these tests are
    about the verdicts, so its receivers are detached here (the signals themselves are
    asserted through `verdicts`)."""
    with payments_receivers_detached():
        yield


@pytest.fixture
def verdicts():
    """Every machine_verification_{passed,failed} signal sent, as (kind, kwargs)."""
    seen = []

    def on_failed(sender, **kwargs):
        seen.append(("failed", kwargs))

    def on_passed(sender, **kwargs):
        seen.append(("passed", kwargs))

    signals.machine_verification_failed.connect(on_failed, dispatch_uid="test-failed")
    signals.machine_verification_passed.connect(on_passed, dispatch_uid="test-passed")
    yield seen
    signals.machine_verification_failed.disconnect(dispatch_uid="test-failed")
    signals.machine_verification_passed.disconnect(dispatch_uid="test-passed")


@pytest.fixture
def make_agent(db):
    """Registers a machine through the real token exchange; returns (machine, AgentApi, client)."""

    def make(provider, *, hardware=CPU_HARDWARE, name="agent-box"):
        _, raw = registration_token_create(provider=provider, user=provider.owner)
        with TestCase.captureOnCommitCallbacks(execute=True):
            machine, credential = machine_register(
                registration_token=raw, name=name, hardware=hardware
            )
        client = client_for(token=credential)
        return machine, AgentApi(DjangoTransport(client)), client

    return make


@pytest.fixture
def runner_for():
    def make(api, cls=JobRunner, **kwargs):
        return cls(api, challenge_wait=0, verdict_timeout=5, **kwargs)

    return make
