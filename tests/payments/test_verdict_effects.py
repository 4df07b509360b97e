"""A verdict is a row written by the decision itself; the tasks that move money read it.

The race on main: a lease re-verification fails; orders_end_for_machine registers the
settlement's on-commit callback before the failure signal's, and the outcome row the settlement
cites used to be written by a receiver of that signal. Run in the order they are registered
(real commits, eager tasks: the settlement runs inside the first callback, as a fast worker
would), the settlement failed the lease on chain citing the zero hash, for good."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob, Verdict
from marketplace.benchmarks.services import (
    benchmark_commit,
    benchmark_dispatch_next,
    benchmark_issue_challenge,
    benchmark_job_create,
    benchmark_submit_answer,
    benchmark_verify,
)
from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent, ChainTransaction, Slash
from marketplace.payments.selectors import order_funding_instructions
from marketplace.payments.services import faucet, leases, slashing
from marketplace.payments.services.leases import ZERO_HASH
from tests.payments.helpers import (
    ALICE_KEY,
    BOB,
    BOB_KEY,
    USDC,
    fund_with_instructions,
    make_active_order,
    make_order,
    sign_and_send,
)

SPEC = {"kind": "matmul", "n": 8, "precision": "fp32"}


def _bob_stakes(chain_w3, deployed, amount: int) -> None:
    faucet.demo_renter_fund(address=BOB, amount=amount)
    token, staking = deployed["token"], deployed["staking"]
    sign_and_send(
        chain_w3, BOB_KEY, token.address, token.encode_abi("approve", [staking.address, amount])
    )
    sign_and_send(chain_w3, BOB_KEY, staking.address, staking.encode_abi("stake", [amount]))


def _answered_lease_job(order: Order) -> BenchmarkJob:
    """bob's machine is re-verified during alice's lease and answers garbage: the job waits in
    'challenged' with its answer received, for benchmark_verify."""
    job = benchmark_job_create(
        machine_id=order.machine_id, purpose="lease", spec=SPEC, order_id=order.pk
    )
    benchmark_dispatch_next(machine_id=order.machine_id)
    benchmark_commit(
        job_id=job.pk,
        machine_id=order.machine_id,
        # The device verified at index 0 (tests/factories.py): re-verification binds to it.
        payload={"root": "a" * 64, "agent_seconds": 0.5, "device": f"GPU-{order.machine.name}-0"},
    )
    benchmark_issue_challenge(job_id=job.pk)
    benchmark_submit_answer(job_id=job.pk, machine_id=order.machine_id, payload=b"{}")
    return BenchmarkJob.objects.get(pk=job.pk)


@pytest.mark.django_db(transaction=True)
def test_a_lease_failed_by_reverification_settles_citing_the_verdict_not_zero(
    chain_w3, deployed, rich_alice, alice, listing, eager, settings, monkeypatch
):
    settings.SLASH_AMOUNT = 5 * USDC
    _bob_stakes(chain_w3, deployed, 40 * USDC)
    order = make_order(renter=alice, listing=listing)
    fund_with_instructions(
        chain_w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )
    index()  # funded → starting (`start` sent on commit); the stake is indexed too
    index()  # LeaseStarted final → active
    order.refresh_from_db()
    assert order.state == Order.State.ACTIVE
    Order.objects.filter(pk=order.pk).update(started_at=timezone.now() - timedelta(seconds=600))
    # The verification task queued on commit would run eagerly; it is run explicitly below.
    monkeypatch.setattr("workers.benchmark_tasks.benchmark_verify.delay", lambda *a: None)
    job = _answered_lease_job(order)

    # Real commit: on-commit callbacks run in the order they were registered, and each task
    # runs inline the moment it is sent.
    benchmark_verify(job_id=job.pk)

    job.refresh_from_db()
    assert (job.state, job.outcome_reason) == ("rejected", "malformed_answer")
    verdict = Verdict.objects.get(key=str(job.pk))
    assert verdict.report_hash == "0x" + job.report_hash != ZERO_HASH
    assert list(verdict.orders.all()) == [Order.objects.get(pk=order.pk)]
    assert verdict.effects_enqueued_at is not None
    index()
    failed = ChainEvent.objects.get(name="LeaseFailed", lease_id=order.lease_id)
    assert failed.args["reportHash"] == verdict.report_hash
    assert Slash.objects.get().report_hash == verdict.report_hash
    assert ChainTransaction.objects.filter(idempotency_key=f"settle:{order.pk}").count() == 1
    assert ChainTransaction.objects.filter(purpose="provider_slash").count() == 1
    assert Order.objects.get(pk=order.pk).state == Order.State.SETTLED


@pytest.fixture
def enqueued(monkeypatch):
    """What would have been sent to the broker: (task, args)."""
    sent = []
    for name in ("lease_settle", "provider_slash"):
        monkeypatch.setattr(
            f"workers.chain_tasks.{name}.delay", lambda *a, name=name: sent.append((name, a))
        )
    return sent


@pytest.mark.django_db
def test_a_crash_between_commit_and_after_commit_work_loses_no_slash_or_settlement(
    alice, listing, enqueued, monkeypatch
):
    monkeypatch.setattr("workers.benchmark_tasks.benchmark_verify.delay", lambda *a: None)
    order = make_active_order(renter=alice, listing=listing)
    job = _answered_lease_job(order)
    # The decision commits, and the process dies before any after-commit callback runs.
    with TestCase.captureOnCommitCallbacks(execute=False) as dropped:
        benchmark_verify(job_id=job.pk)
    assert dropped  # the settlement and the failure announcement were both lost
    verdict = Verdict.objects.get(key=str(job.pk))
    assert Order.objects.get(pk=order.pk).state == Order.State.FAILED
    assert verdict.effects_enqueued_at is None and enqueued == []

    # Too young: the normal path may still be on its way.
    assert slashing.verdicts_enqueue_effects_due() == []
    Verdict.objects.filter(pk=verdict.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    assert slashing.verdicts_enqueue_effects_due() == [verdict.pk]
    assert slashing.verdicts_enqueue_effects_due() == []  # run twice: nothing twice
    assert sorted(enqueued) == [("lease_settle", (order.pk,)), ("provider_slash", (str(job.pk),))]
    verdict.refresh_from_db()
    assert verdict.effects_enqueued_at is not None


@pytest.mark.django_db
def test_the_announcement_and_the_sweep_enqueue_the_effects_once_between_them(
    alice, listing, enqueued, monkeypatch
):
    monkeypatch.setattr("workers.benchmark_tasks.benchmark_verify.delay", lambda *a: None)
    order = make_active_order(renter=alice, listing=listing)
    job = _answered_lease_job(order)
    with TestCase.captureOnCommitCallbacks(execute=True):
        benchmark_verify(job_id=job.pk)
    Verdict.objects.update(created_at=timezone.now() - timedelta(minutes=2))
    assert slashing.verdicts_enqueue_effects_due() == []
    # The order_ended receiver sends the settlement as well; lease_settle is keyed per order.
    assert enqueued.count(("provider_slash", (str(job.pk),))) == 1


@pytest.mark.django_db
def test_a_failed_lease_without_a_verdict_is_never_settled_citing_zero(
    chain_w3, deployed, rich_alice, alice, listing, django_capture_on_commit_callbacks
):
    order = make_order(renter=alice, listing=listing)
    fund_with_instructions(
        chain_w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )
    index()
    leases.lease_start(order_id=order.pk)
    index()  # LeaseStarted final → active
    with django_capture_on_commit_callbacks(execute=False):
        order_services.order_fail(order_id=order.pk, reason="failed re-verification")
    with pytest.raises(leases.VerdictPending):
        leases.lease_settle(order_id=order.pk)
    assert not ChainTransaction.objects.filter(idempotency_key=f"settle:{order.pk}").exists()


@pytest.mark.django_db
def test_a_verdict_that_does_not_penalise_is_not_slashed(alice, listing, enqueued):
    from tests.payments.helpers import record_verdict

    order = make_active_order(renter=alice, listing=listing)
    with TestCase.captureOnCommitCallbacks(execute=False):
        order_services.order_fail(order_id=order.pk, reason="machine offline")
    verdict = record_verdict(
        machine_id=listing.machine_id,
        key="liveness-excused",
        report_hash="0x" + "ab" * 32,
        penalised=False,
        orders=[order],
        kind="liveness",
    )
    assert slashing.verdict_enqueue_effects(verdict_id=verdict.pk)
    assert enqueued == [("lease_settle", (order.pk,))]
    assert slashing.provider_slash(key="liveness-excused") is None


@pytest.mark.django_db
def test_a_broker_that_refuses_the_slash_leaves_the_verdict_for_the_sweep(
    alice, listing, enqueued, monkeypatch
):
    from tests.payments.helpers import announce_verdict, record_verdict

    verdict = record_verdict(machine_id=listing.machine_id, key="77", report_hash="0x" + "cd" * 32)

    def broker_down(*args):
        raise ConnectionError("redis is restarting")

    monkeypatch.setattr("workers.chain_tasks.provider_slash.delay", broker_down)
    with TestCase.captureOnCommitCallbacks(execute=True):
        announce_verdict(verdict)  # logged, not raised: the verdict itself is committed
    verdict.refresh_from_db()
    assert verdict.effects_enqueued_at is None  # the claim rolled back with the failed send

    monkeypatch.setattr(
        "workers.chain_tasks.provider_slash.delay", lambda *a: enqueued.append(("slash", a))
    )
    Verdict.objects.filter(pk=verdict.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    assert slashing.verdicts_enqueue_effects_due() == [verdict.pk]
    assert enqueued == [("slash", ("77",))]
