from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.core.errors import ApplicationError, InvalidTransition
from marketplace.listings.models import Listing
from marketplace.providers import services
from marketplace.providers.models import Machine
from marketplace.providers.services import MACHINE_TRANSITIONS
from tests.factories import ListingFactory, MachineFactory
from workers.tasks import machines_expire_heartbeats

pytestmark = pytest.mark.django_db
State = Machine.State


def test_registration_token_works_once(bob_provider, anon):
    _, raw = services.registration_token_create(provider=bob_provider, user=bob_provider.owner)
    body = {
        "registration_token": raw,
        "name": "rig-1",
        "hardware": {"accelerators": [{"kind": "gpu", "vendor": "NVIDIA", "model": "L4"}]},
    }
    first = anon.post("/api/v1/agent/register", body, format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["credential"].startswith("agt_")
    again = anon.post("/api/v1/agent/register", body, format="json")
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "providers_bad_registration_token"
    assert Machine.objects.count() == 1


def test_an_expired_registration_token_is_refused(bob_provider, anon):
    token, raw = services.registration_token_create(provider=bob_provider, user=bob_provider.owner)
    token.expires_at = timezone.now() - timedelta(seconds=1)
    token.save()
    response = anon.post(
        "/api/v1/agent/register",
        {"registration_token": raw, "name": "rig", "hardware": {}},
        format="json",
    )
    assert response.status_code == 401
    assert not Machine.objects.exists()


def test_registration_derives_the_inventory_summary(agent_of, bob_provider):
    machine, _ = agent_of(bob_provider)
    assert machine.state == State.REGISTERED
    assert machine.accelerator_count == 2
    assert machine.accelerator_model == "H100 80GB HBM3"
    assert machine.accelerator_kind == "gpu"


def test_a_machine_without_accelerators_registers_as_cpu(agent_of, bob_provider):
    machine, _ = agent_of(bob_provider, hardware={"cpu": {"model": "EPYC", "cores": 2}})
    assert machine.accelerator_kind == "cpu"
    assert machine.accelerator_count == 1


def test_heartbeat_keeps_a_machine_online_and_brings_it_back(agent_of, bob_provider):
    machine, agent = agent_of(bob_provider)
    Machine.objects.filter(pk=machine.pk).update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert machines_expire_heartbeats() == [machine.pk]
    machine.refresh_from_db()
    assert machine.state == State.OFFLINE and machine.resume_state == State.REGISTERED
    response = agent.post("/api/v1/agent/heartbeat")
    assert response.status_code == 200
    assert response.json()["state"] == State.REGISTERED


def test_a_listed_machine_going_offline_leaves_search_and_comes_back_reverifying(bob_provider):
    listing = ListingFactory(machine__provider=bob_provider)
    Machine.objects.filter(pk=listing.machine_id).update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    machines_expire_heartbeats()
    listing.refresh_from_db()
    assert not listing.is_searchable
    services.machine_heartbeat(machine_id=listing.machine_id)
    listing.refresh_from_db()
    # Back, but not on the market until its re-verification passes (tests/lease_checks).
    assert not listing.is_searchable
    machine = Machine.objects.get(pk=listing.machine_id)
    assert (machine.state, machine.resume_state) == (State.REVERIFYING, State.LISTED)


def test_suspension_survives_coming_back_online(bob_provider):
    machine = MachineFactory(provider=bob_provider, state=State.OFFLINE, resume_state=State.LISTED)
    services.machine_suspend(machine_id=machine.pk, reason="failed verification")
    machine = services.machine_heartbeat(machine_id=machine.pk)
    assert machine.state == State.SUSPENDED


def test_suspension_needs_a_reason(bob_provider):
    machine = MachineFactory(provider=bob_provider)
    with pytest.raises(ApplicationError):
        services.machine_suspend(machine_id=machine.pk, reason="")


TRANSITIONS = {
    State.VERIFIED: lambda pk: services.machine_mark_verified(machine_id=pk),
    State.LISTED: lambda pk: services.machine_mark_listed(machine_id=pk),
    State.SUSPENDED: lambda pk: services.machine_suspend(machine_id=pk, reason="test"),
}


@pytest.mark.parametrize("source", [s for s in State.values if s != State.OFFLINE])
@pytest.mark.parametrize("target", list(TRANSITIONS))
def test_machine_transition_follows_the_state_machine(bob_provider, source, target):
    machine = MachineFactory(provider=bob_provider, state=source)
    allowed = target in MACHINE_TRANSITIONS[source] or (
        target == State.VERIFIED and source == State.LISTED
    )
    if allowed:
        TRANSITIONS[target](machine.pk)
        machine.refresh_from_db()
        expected = State.LISTED if (target == State.VERIFIED and source == State.LISTED) else target
        assert machine.state == expected
    else:
        with pytest.raises(InvalidTransition):
            TRANSITIONS[target](machine.pk)
        machine.refresh_from_db()
        assert machine.state == source


def test_closing_a_listing_returns_the_machine_to_verified(bob, bob_provider):
    from marketplace.listings.services import listing_set_status

    listing = ListingFactory(machine__provider=bob_provider)
    listing_set_status(listing_id=listing.pk, user=bob, status=Listing.Status.CLOSED)
    listing.refresh_from_db()
    assert not listing.is_searchable
    assert Machine.objects.get(pk=listing.machine_id).state == State.VERIFIED
