"""One device commits two sibling jobs (two device indices of one suite) at the same moment,
through two clients: the suite row is locked while the binding is decided, so exactly one
commitment is taken and the other is rejected device_reused, however the two interleave."""

import json

import pytest

from marketplace.benchmarks.models import BenchmarkJob, BenchmarkSuite
from marketplace.benchmarks.services import benchmark_dispatch_next, benchmark_job_create
from marketplace.providers.models import Machine
from marketplace.providers.services import machine_register, registration_token_create
from tests.conftest import client_for
from tests.races.conftest import race

pytestmark = pytest.mark.django_db(transaction=True)


def test_one_device_committing_two_siblings_at_once_is_taken_once(bob_provider, eager):
    _, raw = registration_token_create(provider=bob_provider, user=bob_provider.owner)
    gpu = {"kind": "gpu", "vendor": "NVIDIA", "model": "H100 80GB HBM3", "memory_gb": 80}
    machine, token = machine_register(
        registration_token=raw,
        name="two-claimed",
        hardware={"accelerators": [gpu, dict(gpu)], "cpu": {"cores": 2}, "backends": ["numpy"]},
    )
    # Two sibling int8 jobs (the Merkle protocol's commitment; the chain protocol's one message
    # goes through the same binding, tested in test_device_cheats.py).
    suite = BenchmarkSuite.objects.create(machine=machine, purpose="onboarding")
    for index in (0, 1):
        benchmark_job_create(
            machine_id=machine.pk,
            purpose="onboarding",
            spec={"kind": "matmul", "n": 64, "precision": "int8"},
            suite_id=suite.pk,
            device_index=index,
        )
    first = benchmark_dispatch_next(machine_id=machine.pk)
    second = benchmark_dispatch_next(machine_id=machine.pk)
    assert {first.device_index, second.device_index} == {0, 1}
    body = json.dumps({"root": "a" * 64, "agent_seconds": 0.5, "device": "GPU-same-card"})
    clients = [client_for(token=token), client_for(token=token)]

    def commit(client, job):
        url = f"/api/v1/agent/jobs/{job.pk}/commitment"
        return lambda: client.generic("POST", url, body, content_type="application/json")

    outcomes = race(commit(clients[0], first), commit(clients[1], second))
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    assert sorted(r.status_code for _, r in outcomes) == [202, 422]
    rejected = next(r for _, r in outcomes if r.status_code == 422)
    assert rejected.json()["error"]["detail"]["reason"] == "device_reused"
    states = sorted(
        BenchmarkJob.objects.filter(pk__in=[first.pk, second.pk]).values_list(
            "outcome_reason", flat=True
        )
    )
    # The taken one is closed as its suite failed (no penalty); the reused one is the cheat.
    assert states == ["device_reused", "suite_failed"]
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.SUSPENDED
