"""Every claimed device runs its own job at the same time, against a live server and a real
Celery worker: the agent takes one job per device (the server hands out no second job for a
busy device) and runs them side by side, each pinned and reporting its own identity."""

import pytest

from marketplace.benchmarks.models import BenchmarkJob, BenchmarkSuite
from marketplace.providers.models import Machine
from marketplace.providers.services import machine_register, registration_token_create
from tests.factories import ProviderFactory, UserFactory
from tests.integration.test_agent_end_to_end import (  # noqa: F401, F811
    celery_worker_thread,
    market,
    no_chain,
)
from workers.agent.client import AgentApi, RequestsTransport
from workers.agent.runner import JobRunner

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DEVICES = 2


class TwoCards(JobRunner):
    """This host has one CPU; the test stands it in for two cards by giving each index its own
    identity (the binding under test is the server's one-device-per-index rule)."""

    def device_id(self, index, spec):
        return f"GPU-00000000-0000-0000-0000-{index:012d}"


def test_each_device_runs_its_own_job_side_by_side_and_the_machine_counts_both(market, settings):  # noqa: F811
    # This CPU stands in for two H100s: the test is about binding, not speed, so the chain
    # floor's plumbing allowance is an hour (the floor tests are in test_device_cheats.py).
    settings.BENCHMARK_CHAIN_FLOOR_BASE_SECONDS = 3600
    owner = UserFactory(username="olivia", role="provider_owner")
    provider = ProviderFactory(owner=owner)
    _, raw = registration_token_create(provider=provider, user=owner)
    gpu = {"kind": "gpu", "vendor": "NVIDIA", "model": "H100 80GB HBM3", "memory_gb": 80}
    machine, credential = machine_register(
        registration_token=raw,
        name="two-cards",
        hardware={"accelerators": [gpu, dict(gpu)], "cpu": {"cores": 2}, "backends": ["numpy"]},
    )
    runner = TwoCards(
        AgentApi(RequestsTransport(market, credential)), challenge_wait=2, verdict_timeout=120
    )
    batches = []
    for _ in range(40):
        results = runner.run_batch(wait=2)
        if not results:
            break
        batches.append(results)
    outcomes = {(r.state, r.reason) for batch in batches for r in batch}
    assert {state for state, _ in outcomes} == {"verified"}, outcomes
    # One batch per kernel: both devices' jobs of it, taken together.
    assert {len(batch) for batch in batches} == {DEVICES}
    for batch in batches:
        jobs = list(BenchmarkJob.objects.filter(pk__in=[r.job_id for r in batch]))
        assert sorted(j.device_index for j in jobs) == list(range(DEVICES))
        assert len({(j.kind, j.precision) for j in jobs}) == 1
        # Both were out before either came back: they ran side by side.
        assert max(j.dispatched_at for j in jobs) < min(j.committed_at for j in jobs)
    assert BenchmarkSuite.objects.get(machine=machine).state == BenchmarkSuite.State.PASSED
    machine.refresh_from_db()
    assert machine.state == Machine.State.VERIFIED and machine.verified_device_count == DEVICES
    assert [d["uuid"] for d in machine.verified_devices] == [
        f"GPU-00000000-0000-0000-0000-{i:012d}" for i in range(DEVICES)
    ]
