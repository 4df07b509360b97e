import pytest
from django.test import TestCase

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import (
    TRANSITIONS,
    benchmark_commit,
    benchmark_dispatch_next,
    benchmark_expire,
    benchmark_issue_challenge,
    benchmark_job_create,
    benchmark_submit_answer,
    benchmarks_schedule_reverification,
)
from marketplace.core.errors import ConflictError, InvalidTransition, NotFoundError
from marketplace.providers.models import Machine

pytestmark = pytest.mark.django_db
SPEC = {"kind": "matmul", "n": 8, "precision": "fp32"}
ROOT = {"root": "a" * 64, "agent_seconds": 0.5}


@pytest.fixture
def machine(bob_provider, make_agent):
    machine, _, _ = make_agent(bob_provider)
    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.VERIFIED)
    return machine


def test_final_states_allow_nothing_and_open_states_can_expire():
    for state in BenchmarkJob.FINAL_STATES:
        assert TRANSITIONS[state] == set()
    for state in BenchmarkJob.OPEN_STATES:
        assert BenchmarkJob.State.EXPIRED in TRANSITIONS[state]


def test_happy_path_transitions_in_order(machine):
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SPEC)
    assert job.state == "queued" and len(job.seed) == 64
    assert benchmark_dispatch_next(machine_id=machine.pk).pk == job.pk
    with TestCase.captureOnCommitCallbacks(execute=False) as callbacks:
        job = benchmark_commit(job_id=job.pk, machine_id=machine.pk, payload=ROOT)
    assert job.state == "committed" and job.challenge is None and len(callbacks) == 1
    job = benchmark_issue_challenge(job_id=job.pk)
    assert job.state == "challenged" and len(job.challenge["indices"]) == 8
    assert benchmark_issue_challenge(job_id=job.pk).state == "challenged"  # idempotent retry


def test_illegal_transitions_are_refused(machine):
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SPEC)
    with pytest.raises(InvalidTransition):
        benchmark_commit(job_id=job.pk, machine_id=machine.pk, payload=ROOT)
    with pytest.raises(InvalidTransition):
        benchmark_issue_challenge(job_id=job.pk)
    with pytest.raises(InvalidTransition):
        benchmark_submit_answer(job_id=job.pk, machine_id=machine.pk, payload=b"{}")
    with pytest.raises(ConflictError):
        benchmark_expire(job_id=job.pk)  # not overdue
    benchmark_dispatch_next(machine_id=machine.pk)
    benchmark_commit(job_id=job.pk, machine_id=machine.pk, payload=ROOT)
    with pytest.raises(InvalidTransition):  # a second commitment cannot replace the first
        benchmark_commit(job_id=job.pk, machine_id=machine.pk, payload={**ROOT, "root": "b" * 64})
    assert BenchmarkJob.objects.get(pk=job.pk).commitment_root == "a" * 64
    with pytest.raises(NotFoundError):
        benchmark_commit(job_id=job.pk, machine_id=machine.pk + 1000, payload=ROOT)


def test_answer_is_accepted_once(machine):
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SPEC)
    benchmark_dispatch_next(machine_id=machine.pk)
    benchmark_commit(job_id=job.pk, machine_id=machine.pk, payload=ROOT)
    benchmark_issue_challenge(job_id=job.pk)
    benchmark_submit_answer(job_id=job.pk, machine_id=machine.pk, payload=b'{"y": []}')
    with pytest.raises(ConflictError):
        benchmark_submit_answer(job_id=job.pk, machine_id=machine.pk, payload=b'{"y": []}')


def test_suspended_machine_gets_no_jobs(machine):
    benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SPEC)
    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.SUSPENDED)
    assert benchmark_dispatch_next(machine_id=machine.pk) is None


def test_reverification_queues_one_periodic_job_per_due_machine(machine):
    created = benchmarks_schedule_reverification()
    assert len(created) == 1
    job = BenchmarkJob.objects.get(pk=created[0])
    assert job.purpose == "periodic" and job.machine_id == machine.pk
    assert benchmarks_schedule_reverification() == []  # an open job already exists
