from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import (
    benchmark_commit,
    benchmark_dispatch_next,
    benchmark_expire,
    benchmark_issue_challenge,
    benchmark_job_create,
    benchmark_submit_answer,
    benchmarks_requeue_stalled,
)
from marketplace.orders.models import Order
from marketplace.providers.models import Machine
from tests.factories import ListingFactory
from tests.payments.helpers import make_active_order
from workers.tasks import machines_expire_heartbeats

pytestmark = pytest.mark.django_db
SPEC = {"kind": "matmul", "n": 8, "precision": "fp32"}
ROOT = {"root": "a" * 64, "agent_seconds": 0.5}


def lapse(machine_id: int) -> None:
    Machine.objects.filter(pk=machine_id).update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )


def test_a_machine_that_drops_a_running_lease_is_reported_for_a_slash(
    alice, bob_provider, verdicts
):
    listing = ListingFactory(machine__provider=bob_provider)
    order = make_active_order(renter=alice, listing=listing, key="liveness-01")
    lapse(listing.machine_id)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert machines_expire_heartbeats() == [listing.machine_id]
    order.refresh_from_db()
    assert order.state == Order.State.FAILED and order.end_reason == "machine offline"
    assert [kind for kind, _ in verdicts] == ["failed"]
    verdict = verdicts[0][1]
    assert verdict["reason"] == "machine_offline"
    assert verdict["machine_id"] == listing.machine_id
    assert verdict["report_hash"].startswith("0x") and len(verdict["report_hash"]) == 66


def test_an_idle_machine_going_offline_is_not_reported(bob_provider, verdicts):
    listing = ListingFactory(machine__provider=bob_provider)
    lapse(listing.machine_id)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert machines_expire_heartbeats() == [listing.machine_id]
    assert Machine.objects.get(pk=listing.machine_id).state == Machine.State.OFFLINE
    assert verdicts == []


@pytest.fixture
def machine(bob_provider, make_agent):
    machine, _, _ = make_agent(bob_provider)
    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.VERIFIED)
    return machine


def committed_job(machine) -> BenchmarkJob:
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SPEC)
    benchmark_dispatch_next(machine_id=machine.pk)
    # The challenge task queued on commit is dropped here, as a restarted broker would drop it.
    with TestCase.captureOnCommitCallbacks(execute=False):
        benchmark_commit(job_id=job.pk, machine_id=machine.pk, payload=ROOT)
    return job


def test_a_lost_challenge_task_is_sent_again(machine):
    job = committed_job(machine)
    assert benchmarks_requeue_stalled() == []  # not stalled yet
    BenchmarkJob.objects.filter(pk=job.pk).update(
        committed_at=timezone.now() - timedelta(minutes=5)
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert benchmarks_requeue_stalled() == [job.pk]
    assert BenchmarkJob.objects.get(pk=job.pk).state == BenchmarkJob.State.CHALLENGED


def test_a_lost_verification_task_is_sent_again(machine):
    job = committed_job(machine)
    benchmark_issue_challenge(job_id=job.pk)
    with TestCase.captureOnCommitCallbacks(execute=False):
        benchmark_submit_answer(job_id=job.pk, machine_id=machine.pk, payload=b'{"y": []}')
    BenchmarkJob.objects.filter(pk=job.pk).update(
        answer_received_at=timezone.now() - timedelta(minutes=5)
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert benchmarks_requeue_stalled() == [job.pk]
    job.refresh_from_db()
    assert job.state == BenchmarkJob.State.REJECTED
    assert job.outcome_reason == "malformed_answer"


def test_a_job_we_never_challenged_expires_without_penalising_the_machine(machine, verdicts):
    job = committed_job(machine)
    BenchmarkJob.objects.filter(pk=job.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    with TestCase.captureOnCommitCallbacks(execute=True):
        job = benchmark_expire(job_id=job.pk)
    assert job.state == BenchmarkJob.State.EXPIRED
    assert job.outcome_reason == "challenge_not_issued"
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.VERIFIED
    assert verdicts == []
