"""A lease's own checks have a short deadline; a machine that heartbeats but never fetches its
check fails the lease within that deadline as its fault (refund, slash), billed only to the last
check it passed. A machine that vanishes mid-lease fails it at the heartbeat timeout, slashed,
billed to its last heartbeat."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from marketplace.benchmarks.models import BenchmarkJob, Verdict
from marketplace.benchmarks.services import (
    benchmarks_expire_overdue,
    benchmarks_schedule_reverification,
    lease_checks_expire_unfetched,
)
from marketplace.orders.models import Order
from marketplace.payments.models import ChainEvent, ChainTransaction, Slash
from marketplace.providers.models import Machine
from tests.lease_checks.conftest import BOB_STAKE, index_final, run_committed
from tests.payments.helpers import (
    ALICE,
    ALICE_KEY,
    BOB,
    credit_of,
    token_balance,
    withdraw_credit,
)
from workers.tasks import machines_expire_heartbeats

pytestmark = pytest.mark.django_db


def _lease_checks(order: Order):
    return BenchmarkJob.objects.filter(order=order, purpose="lease").order_by("pk")


@pytest.fixture
def checked_lease(active_lease, agent):
    """alice's lease, started half an hour ago, whose first check bob's machine passed now."""
    created = run_committed(benchmarks_schedule_reverification)
    assert list(_lease_checks(active_lease).values_list("pk", flat=True)) == created
    results = agent.run_jobs()
    assert [r.state for r in results] == ["verified"] * len(created)
    active_lease.refresh_from_db()
    assert active_lease.state == Order.State.ACTIVE
    return active_lease


def _next_check_due(order: Order, settings) -> datetime:
    """A minute after the lease's next check is due (one lease interval after its last)."""
    last = _lease_checks(order).last().created_at
    return last + timedelta(seconds=settings.BENCHMARK_LEASE_INTERVAL_SECONDS + 60)


def _settled_on_chain(order: Order) -> ChainEvent:
    index_final()  # LeaseFailed and Slashed final
    order.refresh_from_db()
    assert order.state == Order.State.SETTLED
    return ChainEvent.objects.get(name="LeaseFailed", lease_id=order.lease_id)


def test_a_machine_that_heartbeats_but_never_fetches_its_check_fails_the_lease_in_minutes(
    checked_lease, agent, chain_w3, deployed, clock, settings
):
    order = checked_lease
    passed_at = _lease_checks(order).get().committed_at
    alice_before_settlement = token_balance(deployed["token"], ALICE)
    # An hour on, the next check is queued; the agent keeps heartbeating and never fetches it.
    t = _next_check_due(order, settings)
    clock.at(t)
    [dodged] = run_committed(benchmarks_schedule_reverification)
    agent.heartbeat()
    deadline = timedelta(seconds=settings.LEASE_CHECK_DEADLINE_SECONDS)
    clock.at(t + deadline - timedelta(seconds=1))
    agent.heartbeat()
    assert run_committed(lease_checks_expire_unfetched) == []
    assert Order.objects.get(pk=order.pk).state == Order.State.ACTIVE

    clock.at(t + deadline + timedelta(seconds=1))
    agent.heartbeat()
    assert run_committed(lease_checks_expire_unfetched) == [dodged]

    job = BenchmarkJob.objects.get(pk=dodged)
    assert (job.state, job.outcome_reason) == ("expired", "deadline_exceeded")
    order.refresh_from_db()
    assert order.state == Order.State.FAILED
    # Billed to the last check it passed, not to its last heartbeat (an hour later).
    expected = int((passed_at - order.started_at).total_seconds())
    assert order.billable_seconds == expected < settings.BENCHMARK_LEASE_INTERVAL_SECONDS
    assert order.amount_owed == expected * order.rate_per_second
    assert agent.refresh().state == Machine.State.SUSPENDED
    verdict = Verdict.objects.get(key=str(dodged))
    assert verdict.penalised and list(verdict.orders.all()) == [order]

    failed = _settled_on_chain(order)
    assert int(failed.args["secondsUsed"]) == expected
    assert int(failed.args["refundAmount"]) == order.escrow_amount - order.amount_owed
    assert failed.args["reportHash"] == verdict.report_hash
    # The refund is credited to alice (pull payments) and is hers once she withdraws it.
    assert credit_of(address=ALICE) == order.escrow_amount - order.amount_owed
    assert token_balance(deployed["token"], ALICE) == alice_before_settlement
    withdraw_credit(chain_w3, ALICE_KEY)
    assert token_balance(deployed["token"], ALICE) == (
        alice_before_settlement + order.escrow_amount - order.amount_owed
    )
    slash = Slash.objects.get()
    assert (slash.address, slash.report_hash) == (BOB, verdict.report_hash)
    # At least the flat slash (payments adds what the broken lease locked); bob's stake lost it.
    assert slash.amount >= settings.SLASH_AMOUNT
    assert deployed["staking"].functions.stakeOf(BOB).call()[0] == BOB_STAKE - slash.amount
    assert ChainTransaction.objects.filter(purpose="provider_slash").count() == 1


def test_a_fetched_check_that_is_never_answered_fails_the_lease_at_its_deadline(
    checked_lease, agent, clock, settings
):
    order = checked_lease
    passed_at = _lease_checks(order).get().committed_at
    t = _next_check_due(order, settings)
    clock.at(t)
    [taken] = run_committed(benchmarks_schedule_reverification)
    job = agent.api.next_job(wait=0)  # fetched, and never answered
    assert job["id"] == taken
    deadline = BenchmarkJob.objects.get(pk=taken).deadline
    clock.at(deadline + timedelta(seconds=1))
    agent.heartbeat()
    assert run_committed(lease_checks_expire_unfetched) == []  # fetched: not this sweep's
    assert run_committed(benchmarks_expire_overdue) == [taken]
    order.refresh_from_db()
    assert order.state == Order.State.FAILED
    assert order.billable_seconds == int((passed_at - order.started_at).total_seconds())
    assert Verdict.objects.get(key=str(taken)).penalised


def test_a_machine_that_vanishes_mid_lease_is_slashed_and_billed_to_its_last_heartbeat(
    checked_lease, agent, deployed, clock, settings
):
    order = checked_lease
    last_seen = order.started_at + timedelta(seconds=2_400)
    clock.at(last_seen)
    agent.heartbeat()  # its last
    timeout = timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
    clock.at(last_seen + timeout - timedelta(seconds=1))
    assert run_committed(machines_expire_heartbeats) == []
    clock.at(last_seen + timeout + timedelta(seconds=1))
    assert run_committed(machines_expire_heartbeats) == [agent.machine.pk]

    order.refresh_from_db()
    assert order.billable_seconds == 2_400  # not the heartbeat timeout's dead time after it
    verdict = Verdict.objects.get(kind="liveness", machine_id=agent.machine.pk)
    assert verdict.penalised and list(verdict.orders.all()) == [order]
    failed = _settled_on_chain(order)
    assert int(failed.args["secondsUsed"]) == 2_400
    assert Slash.objects.get().report_hash == verdict.report_hash == failed.args["reportHash"]


def test_a_machine_that_vanishes_owing_a_check_is_billed_to_the_check_it_last_passed(
    checked_lease, agent, clock, settings
):
    order = checked_lease
    passed_at = _lease_checks(order).get().committed_at
    t = _next_check_due(order, settings)
    clock.at(t)
    run_committed(benchmarks_schedule_reverification)
    agent.heartbeat()  # alive when the check was queued, then gone before fetching it
    clock.at(t + timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS + 1))
    assert run_committed(machines_expire_heartbeats) == [agent.machine.pk]
    order.refresh_from_db()
    assert order.state == Order.State.FAILED
    assert order.billable_seconds == int((passed_at - order.started_at).total_seconds())
