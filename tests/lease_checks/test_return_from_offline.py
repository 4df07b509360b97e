"""A machine back from offline is re-verified before it is listed again: one heartbeat no longer
puts it back on the market. A staff reinstatement stays a deliberate undo with its reason kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import machines_reverify_returned
from marketplace.dashboard.models import MachineStaffAction
from marketplace.dashboard.services import machine_staff_reinstate, machine_staff_suspend
from marketplace.providers.models import Machine
from tests.conftest import client_for
from tests.lease_checks.conftest import listing_of, run_committed
from workers.tasks import machines_expire_heartbeats

pytestmark = pytest.mark.django_db

State = Machine.State


def _searchable(agent, renter) -> bool:
    """Whether alice finds bob's listing in search."""
    listing = listing_of(agent)
    response = client_for(renter).get("/api/v1/listings")
    assert response.status_code == 200
    return listing.pk in {row["id"] for row in response.json()["results"]}


def _lapse(agent, clock, settings) -> None:
    """bob's agent falls silent for longer than the heartbeat timeout."""
    clock.at(timezone.now() + timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS + 1))
    assert run_committed(machines_expire_heartbeats) == [agent.machine.pk]
    clock.real()
    assert agent.refresh().state == State.OFFLINE


def test_a_machine_back_from_offline_is_listed_only_after_its_check_passes(
    agent, alice, clock, settings
):
    assert _searchable(agent, alice)
    _lapse(agent, clock, settings)
    assert not _searchable(agent, alice)

    run_committed(agent.heartbeat)
    assert agent.refresh().state == State.REVERIFYING
    assert agent.machine.resume_state == State.LISTED
    assert not _searchable(agent, alice)  # one heartbeat does not put it back

    assert run_committed(machines_reverify_returned) == []  # its check is scheduled
    since = agent.machine.state_changed_at
    checks = BenchmarkJob.objects.filter(machine=agent.machine, created_at__gte=since)
    assert checks.count() == 1 and checks.get().state == BenchmarkJob.State.QUEUED
    assert not _searchable(agent, alice)

    assert [r.state for r in agent.run_jobs()] == ["verified"]
    assert run_committed(machines_reverify_returned) == [agent.machine.pk]
    assert agent.refresh().state == State.LISTED
    assert _searchable(agent, alice)


def test_a_returned_machine_that_does_not_take_its_check_stays_off_the_market(
    agent, alice, clock, settings
):
    _lapse(agent, clock, settings)
    run_committed(agent.heartbeat)
    run_committed(machines_reverify_returned)
    run_committed(agent.heartbeat)
    assert run_committed(machines_reverify_returned) == []  # waiting on its open check
    assert agent.refresh().state == State.REVERIFYING
    assert not _searchable(agent, alice)


def test_a_machine_lost_again_while_reverifying_still_returns_through_a_check(
    agent, alice, clock, settings
):
    _lapse(agent, clock, settings)
    run_committed(agent.heartbeat)
    assert agent.refresh().state == State.REVERIFYING
    _lapse(agent, clock, settings)
    assert agent.refresh().resume_state == State.LISTED
    run_committed(agent.heartbeat)
    assert agent.refresh().state == State.REVERIFYING
    run_committed(machines_reverify_returned)
    agent.run_jobs()
    run_committed(machines_reverify_returned)
    assert agent.refresh().state == State.LISTED


def test_staff_reinstatement_is_a_deliberate_undo_and_keeps_its_reasons(
    agent, alice, staff, clock, settings
):
    machine_id = agent.machine.pk
    run_committed(
        machine_staff_suspend, machine_id=machine_id, staff=staff, reason="renter complaint"
    )
    assert agent.refresh().state == State.SUSPENDED
    # Online and suspended: the reinstatement undoes it at once (staff decided).
    run_committed(
        machine_staff_reinstate, machine_id=machine_id, staff=staff, reason="complaint withdrawn"
    )
    assert agent.refresh().state == State.LISTED
    assert _searchable(agent, alice)

    # Suspended, then offline, then reinstated while away: back through a check, not at once.
    run_committed(machine_staff_suspend, machine_id=machine_id, staff=staff, reason="second look")
    _lapse(agent, clock, settings)
    run_committed(
        machine_staff_reinstate, machine_id=machine_id, staff=staff, reason="cleared on review"
    )
    assert (agent.refresh().state, agent.machine.resume_state) == (State.OFFLINE, State.LISTED)
    run_committed(agent.heartbeat)
    assert agent.refresh().state == State.REVERIFYING
    assert not _searchable(agent, alice)
    run_committed(machines_reverify_returned)
    agent.run_jobs()
    run_committed(machines_reverify_returned)
    assert agent.refresh().state == State.LISTED

    history = list(
        MachineStaffAction.objects.filter(machine_id=machine_id)
        .order_by("pk")
        .values_list("action", "reason", "state_before", "state_after")
    )
    assert history == [
        ("suspend", "renter complaint", "listed", "suspended"),
        ("reinstate", "complaint withdrawn", "suspended", "listed"),
        ("suspend", "second look", "listed", "suspended"),
        ("reinstate", "cleared on review", "offline", "offline"),
    ]
