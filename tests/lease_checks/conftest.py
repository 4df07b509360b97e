"""Leases checked while they run, and orders active only on a confirmed start (issue 10, points
4 and 7), through the real services: a provider agent over the real agent API (DjangoTransport),
the contracts on the in-process chain, the indexer, eager tasks as a worker would run them.

Time moves by patching django.utils.timezone.now (as tests/payments/test_money_by_hand.py does)
only between the agent's jobs: a job itself always runs on the real clock, so its server-timed
span is real."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from marketplace.listings.models import Listing
from marketplace.orders.models import Order
from marketplace.payments.indexer import index
from marketplace.payments.selectors import order_funding_instructions
from marketplace.payments.services.faucet import demo_renter_fund
from marketplace.providers.models import Machine
from marketplace.providers.services import machine_mark_listed
from tests.benchmarks.conftest import CPU_HARDWARE, DjangoTransport
from tests.conftest import client_for
from tests.factories import ListingFactory
from tests.payments.conftest import chain_w3, deployed, rich_alice, tester_w3  # noqa: F401
from tests.payments.helpers import (
    ALICE_KEY,
    BOB,
    BOB_KEY,
    USDC,
    fund_with_instructions,
    make_order,
    sign_and_send,
)
from workers.agent.client import AgentApi
from workers.agent.runner import JobRunner

BOB_STAKE = 1_000 * USDC


@pytest.fixture(autouse=True)
def eager_tasks(eager, settings):
    settings.BENCHMARK_SMALL_SUITES = True
    # Dozens of agent requests in a second are a test's pace: lift the per-agent throttle.
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "agent": "100000/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


class Clock:
    """The platform's clock: real, or pinned at a moment (django.utils.timezone.now)."""

    def __init__(self, monkeypatch) -> None:
        self._monkeypatch = monkeypatch
        self._real: Callable[[], datetime] = timezone.now

    def at(self, moment: datetime) -> None:
        self._monkeypatch.setattr(timezone, "now", lambda: moment)

    def real(self) -> None:
        self._monkeypatch.setattr(timezone, "now", self._real)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def run_committed(fn, *args, **kwargs):
    """Calls a service as a committed request or task would: its on-commit work runs after."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return fn(*args, **kwargs)


def index_final():
    """The indexer's beat step, with the tasks its effects enqueue on commit."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return index()


@pytest.fixture
def bob_staked(chain_w3, deployed):  # noqa: F811
    """bob stakes on chain, and the stake is indexed (collateral, and something to slash)."""
    demo_renter_fund(address=BOB, amount=BOB_STAKE)
    token, staking = deployed["token"], deployed["staking"]
    sign_and_send(
        chain_w3, BOB_KEY, token.address, token.encode_abi("approve", [staking.address, BOB_STAKE])
    )
    sign_and_send(chain_w3, BOB_KEY, staking.address, staking.encode_abi("stake", [BOB_STAKE]))
    index_final()
    return BOB_STAKE


class Agent:
    """bob's provider agent on a CPU box, over the real agent API."""

    def __init__(self, machine: Machine, api: AgentApi) -> None:
        self.machine = machine
        self.api = api
        self.runner = JobRunner(api, challenge_wait=0, verdict_timeout=5)

    def heartbeat(self) -> None:
        self.api.heartbeat()

    def run_jobs(self) -> list:
        """Takes and answers every job it is given (honestly), until none is left."""
        results = []
        while (result := self.runner.run_once(wait=0)) is not None:
            results.append(result)
        return results

    def refresh(self) -> Machine:
        self.machine.refresh_from_db()
        return self.machine


@pytest.fixture
def agent(bob_provider, bob_staked) -> Agent:
    """A machine registered through the token exchange, onboarded by running its suite, and
    listed (one CPU)."""
    from marketplace.providers.services import machine_register, registration_token_create

    _, raw = registration_token_create(provider=bob_provider, user=bob_provider.owner)
    machine, credential = run_committed(
        machine_register, registration_token=raw, name="lease-box", hardware=CPU_HARDWARE
    )
    agent = Agent(machine, AgentApi(DjangoTransport(client_for(token=credential))))
    results = agent.run_jobs()
    assert results and {r.state for r in results} == {"verified"}, results
    assert agent.refresh().state == Machine.State.VERIFIED
    ListingFactory(
        machine=machine,
        accelerator_kind="cpu",
        vendor="",
        model=machine.accelerator_model,
        accelerator_count=1,
        precisions="," + ",".join(machine.verified_precisions) + ",",
        interconnect="none",
    )
    run_committed(machine_mark_listed, machine_id=machine.pk)
    assert agent.refresh().state == Machine.State.LISTED
    return agent


def listing_of(agent: Agent) -> Listing:
    return Listing.objects.get(machine_id=agent.machine.pk)


def fund(chain_w3, alice, order: Order) -> None:  # noqa: F811
    """alice signs approve and fund as the funding endpoint tells her to."""
    fund_with_instructions(
        chain_w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )


# How long ago alice's lease started when a test begins.
LEASE_SO_FAR = timedelta(seconds=1_800)


@pytest.fixture
def active_lease(chain_w3, alice, rich_alice, agent, clock) -> Order:  # noqa: F811
    """alice's one-hour lease on bob's machine, ordered, funded, started on chain and active
    LEASE_SO_FAR ago (the platform's clock pinned then; the chain keeps its own)."""
    clock.at(timezone.now() - LEASE_SO_FAR)
    order = make_order(renter=alice, listing=listing_of(agent), key="lease-checks")
    fund(chain_w3, alice, order)
    index_final()  # funded → starting; `start` sent on commit and confirmed
    index_final()  # LeaseStarted final → active
    clock.real()
    order.refresh_from_db()
    assert order.state == Order.State.ACTIVE
    return order
