"""Objects the API-level tests share: bob's provider, machines and listing, alice's order on it,
benchmark jobs on bob's agent's machine and on others."""

import pytest

from marketplace.orders.models import Order
from marketplace.orders.services import (
    order_activate,
    order_create,
    order_mark_funded,
    order_mark_starting,
)
from marketplace.providers.models import Machine
from tests.api.helpers import CHAIN_JOB_SPEC, COMMITMENT, JOB_SPEC
from tests.factories import WALLETS, MachineFactory, ProviderFactory

# The in-process chain of the payments tests (eth-tester): the funding endpoint reads the
# deployed contracts. Re-exported as fixtures of this package.
from tests.payments.conftest import chain_w3, deployed, tester_w3  # noqa: F401


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
    order_mark_starting(order_id=alice_order.pk)
    return order_activate(order_id=alice_order.pk)


def _job_in_state(machine, state: str, spec=None):
    """A periodic benchmark job on `machine`, driven through the real services up to `state`
    (queued, dispatched or challenged). The machine is made verified so that no onboarding
    suite is queued ahead of it."""
    from marketplace.benchmarks.services import (
        benchmark_commit,
        benchmark_dispatch_next,
        benchmark_issue_challenge,
        benchmark_job_create,
    )

    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.VERIFIED)
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=spec or JOB_SPEC)
    if state == "queued":
        return job
    assert benchmark_dispatch_next(machine_id=machine.pk).pk == job.pk
    if state == "dispatched":
        job.refresh_from_db()
        return job
    benchmark_commit(job_id=job.pk, machine_id=machine.pk, payload=COMMITMENT)
    job = benchmark_issue_challenge(job_id=job.pk)
    assert job.state == state == "challenged"
    return job


@pytest.fixture
def bob_queued_job(bob_agent):
    return _job_in_state(bob_agent[0], "queued")


@pytest.fixture
def bob_dispatched_job(bob_agent):
    """A job dispatched to the machine whose credential the `agent` role holds."""
    return _job_in_state(bob_agent[0], "dispatched")


@pytest.fixture
def bob_dispatched_chain_job(bob_agent):
    """A chain-sketch job dispatched to the `agent` role's machine."""
    return _job_in_state(bob_agent[0], "dispatched", spec=CHAIN_JOB_SPEC)


@pytest.fixture
def published_report(bob_agent):
    """A decided job's verdict with its report document (a job that expired undispatched)."""
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.benchmarks.models import BenchmarkJob, Verdict
    from marketplace.benchmarks.services import benchmark_expire

    job = _job_in_state(bob_agent[0], "queued")
    BenchmarkJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=2))
    benchmark_expire(job_id=job.pk)
    job.refresh_from_db()
    verdict = Verdict.objects.filter(job=job).first()
    if verdict is None:  # a no-fault expiry has no verdict: publish a pass's instead
        from marketplace.benchmarks.services.verdicts import _verdict_record

        verdict = _verdict_record(
            key=f"test-{job.pk}",
            kind=Verdict.Kind.PASS,
            machine_id=job.machine_id,
            job=job,
            report_hash="0x" + job.report_hash,
            reason="",
            penalised=False,
            order_ids=[],
        )
    return verdict


@pytest.fixture
def bob_challenged_job(bob_agent):
    return _job_in_state(bob_agent[0], "challenged")


@pytest.fixture
def other_machine_job(request, agent_of):
    """make(owner, state): a job on another machine than the `agent` role's, either mallory's or
    a second machine of bob's (the credential is per machine, not per provider)."""

    def make(owner: str, state: str):
        provider = request.getfixturevalue(f"{owner}_provider")
        machine, _ = agent_of(provider)
        return _job_in_state(machine, state)

    return make
