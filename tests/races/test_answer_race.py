"""An agent answers one challenge twice at the same moment, through two clients: one answer is
accepted (202), the other gets a 409, and the job is verified exactly once."""

from __future__ import annotations

import pytest

from marketplace.benchmarks import signals
from marketplace.benchmarks.models import BenchmarkJob, Verdict
from marketplace.benchmarks.services import (
    benchmark_commit,
    benchmark_dispatch_next,
    benchmark_issue_challenge,
    benchmark_job_create,
)
from marketplace.providers.models import Machine
from tests.conftest import client_for
from tests.races.conftest import race
from workers.agent.runner import JobRunner
from workers.kernels import spec_from_dict

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"kind": "matmul", "n": 16, "precision": "fp32"}


@pytest.fixture
def verdicts():
    seen = []

    def on_passed(sender, **kwargs):
        seen.append(("passed", kwargs["job_id"]))

    def on_failed(sender, **kwargs):
        seen.append(("failed", kwargs["job_id"]))

    signals.machine_verification_passed.connect(on_passed, weak=False, dispatch_uid="race-p")
    signals.machine_verification_failed.connect(on_failed, weak=False, dispatch_uid="race-f")
    yield seen
    signals.machine_verification_passed.disconnect(dispatch_uid="race-p")
    signals.machine_verification_failed.disconnect(dispatch_uid="race-f")


def _challenged_job(machine):
    """A job committed honestly and challenged; returns it with the agent's correct answer."""
    runner = JobRunner(api=None, backend="numpy")
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SPEC)
    job = benchmark_dispatch_next(machine_id=machine.pk)
    spec = spec_from_dict(job.spec)
    output = runner.compute(spec, job.seed)
    root, tree = runner.commitment(spec, output)
    benchmark_commit(
        job_id=job.pk,
        machine_id=machine.pk,
        payload={"root": root, "agent_seconds": 0.01, "device": "GPU-test-0"},
    )
    job = benchmark_issue_challenge(job_id=job.pk)
    return job, runner.answer_body(runner.answer(spec, output, tree, job.challenge))


@pytest.mark.parametrize("racers", [2, 3])
def test_answer_posted_twice_at_once_is_accepted_once(
    bob_provider, agent_of, eager, verdicts, racers
):
    machine, client = agent_of(bob_provider)
    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.VERIFIED)
    token = client._credentials["HTTP_AUTHORIZATION"].split()[1]
    job, body = _challenged_job(machine)
    clients = [client_for(token=token) for _ in range(racers)]
    url = f"/api/v1/agent/jobs/{job.pk}/answer"

    def post(c):
        return lambda: c.generic("POST", url, body, content_type="application/json")

    outcomes = race(*[post(c) for c in clients])

    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    statuses = sorted(r.status_code for _, r in outcomes)
    assert statuses == [202] + [409] * (racers - 1), [r.content for _, r in outcomes]
    for _, response in outcomes:
        if response.status_code == 409:
            error = response.json()["error"]
            assert error["code"] in ("benchmarks_answer_exists", "benchmarkjob_invalid_transition")
            assert error["message"]
    job.refresh_from_db()
    assert job.state == BenchmarkJob.State.VERIFIED, job.outcome_detail
    assert verdicts == [("passed", job.pk)]
    assert Verdict.objects.filter(key=str(job.pk), passed=True).count() == 1
