"""Staff suspend and reinstate a machine with a reason, through the providers services; every
reason stays in the machine's history, beside the verdicts that suspended it automatically."""

import pytest
from django.urls import reverse

from marketplace.dashboard.models import MachineStaffAction
from marketplace.listings.models import Listing
from marketplace.providers.models import Machine
from marketplace.providers.services import machine_mark_offline, machine_suspend
from tests.factories import ListingFactory, MachineFactory
from tests.payments.helpers import make_active_order, record_verdict

pytestmark = pytest.mark.django_db


def _suspend(client, machine, reason):
    return client.post(
        reverse("admin:providers_machine_suspend", args=[machine.pk]), {"reason": reason}
    )


def _reinstate(client, machine, reason):
    return client.post(
        reverse("admin:providers_machine_reinstate", args=[machine.pk]), {"reason": reason}
    )


def test_suspend_then_reinstate_with_reasons_and_history(
    operator_client, operator, alice, bob_provider, no_chain_receivers
):
    listing = ListingFactory(machine__provider=bob_provider)
    machine = listing.machine
    lease = make_active_order(renter=alice, listing=listing)

    assert _suspend(operator_client, machine, "renter reports 4 GPUs, not 8").status_code == 302
    machine.refresh_from_db()
    listing.refresh_from_db()
    lease.refresh_from_db()
    assert machine.state == Machine.State.SUSPENDED
    assert not listing.is_searchable
    # No new renter finds it; the running lease runs on (only a verdict fails a lease).
    assert lease.state == "active"

    assert (
        _reinstate(operator_client, machine, "GPUs checked on site: 8 present").status_code == 302
    )
    machine.refresh_from_db()
    listing.refresh_from_db()
    # Its listing is still active, so it goes straight back on the market.
    assert machine.state == Machine.State.LISTED and listing.is_searchable

    actions = list(MachineStaffAction.objects.filter(machine=machine).order_by("pk"))
    assert [(a.action, a.state_before, a.state_after, a.staff_id) for a in actions] == [
        ("suspend", "listed", "suspended", operator.pk),
        ("reinstate", "suspended", "listed", operator.pk),
    ]
    page = operator_client.get(
        reverse("admin:providers_machine_change", args=[machine.pk])
    ).content.decode()
    assert "renter reports 4 GPUs, not 8" in page and "GPUs checked on site: 8 present" in page
    assert "listed → suspended" in page and "suspended → listed" in page
    assert page.index("GPUs checked on site") < page.index("renter reports 4 GPUs")  # newest first


def test_reinstate_without_an_open_listing_goes_back_to_verified(operator_client, bob_provider):
    listing = ListingFactory(machine__provider=bob_provider)
    Listing.objects.filter(pk=listing.pk).update(status=Listing.Status.CLOSED)
    machine_suspend(machine_id=listing.machine_id, reason="test")
    _reinstate(operator_client, listing.machine, "false alarm")
    assert Machine.objects.get(pk=listing.machine_id).state == Machine.State.VERIFIED


def test_a_reason_is_required(operator_client, bob_provider):
    machine = MachineFactory(provider=bob_provider)
    response = _suspend(operator_client, machine, "   ")
    assert response.status_code == 200
    assert "reason" in response.content.decode().lower()
    machine.refresh_from_db()
    assert machine.state == Machine.State.VERIFIED
    assert not MachineStaffAction.objects.exists()


def test_reinstating_a_machine_that_is_not_suspended_is_refused(operator_client, bob_provider):
    machine = MachineFactory(provider=bob_provider, state=Machine.State.VERIFIED)
    response = _reinstate(operator_client, machine, "why not")
    assert response.status_code == 200
    assert "cannot go from" in response.content.decode()
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.VERIFIED
    assert not MachineStaffAction.objects.exists()


def test_an_offline_suspended_machine_is_reinstated_for_its_return(
    operator_client, bob_provider, settings
):
    settings.HEARTBEAT_TIMEOUT_SECONDS = 1
    machine = MachineFactory(provider=bob_provider, last_heartbeat_at=None)
    machine_suspend(machine_id=machine.pk, reason="failed verification")
    Machine.objects.filter(pk=machine.pk).update(last_heartbeat_at="2020-01-01T00:00:00Z")
    machine_mark_offline(machine_id=machine.pk)
    machine.refresh_from_db()
    assert (machine.state, machine.resume_state) == ("offline", "suspended")
    page = operator_client.get(reverse("admin:providers_machine_change", args=[machine.pk]))
    assert 'id="reinstate-link"' in page.content.decode()

    _reinstate(operator_client, machine, "owner replaced the card")
    machine.refresh_from_db()
    assert (machine.state, machine.resume_state) == ("offline", "verified")


def test_staff_without_the_change_permission_cannot_suspend(viewer_client, bob_provider):
    machine = MachineFactory(provider=bob_provider)
    page = viewer_client.get(reverse("admin:providers_machine_change", args=[machine.pk]))
    assert page.status_code == 200 and 'id="suspend-link"' not in page.content.decode()
    assert _suspend(viewer_client, machine, "no").status_code == 403
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.VERIFIED


def test_a_renter_is_sent_to_the_login(client, alice, bob_provider):
    machine = MachineFactory(provider=bob_provider)
    client.force_login(alice)
    response = _suspend(client, machine, "mine now")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.VERIFIED


def test_history_shows_the_verdict_that_suspended_it_automatically(operator_client, bob_provider):
    machine = MachineFactory(provider=bob_provider)
    record_verdict(machine_id=machine.pk, key="job-77", report_hash="0x" + "cd" * 32)
    page = operator_client.get(
        reverse("admin:providers_machine_change", args=[machine.pk])
    ).content.decode()
    assert "fail verdict" in page


def test_hardware_facts_and_owner_cannot_be_posted(operator_client, bob_provider, mallory):
    machine = MachineFactory(provider=bob_provider, accelerator_count=8)
    response = operator_client.post(
        reverse("admin:providers_machine_change", args=[machine.pk]),
        {"accelerator_count": 16, "provider": 999, "hardware": "{}"},
    )
    assert response.status_code == 403
    machine.refresh_from_db()
    assert machine.accelerator_count == 8 and machine.provider_id == bob_provider.pk


def test_a_reason_is_shown_as_text_never_as_markup(operator_client, bob_provider):
    machine = MachineFactory(provider=bob_provider)
    _suspend(operator_client, machine, '<script>alert("x")</script> bad GPUs')
    page = operator_client.get(
        reverse("admin:providers_machine_change", args=[machine.pk])
    ).content.decode()
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; bad GPUs" in page


def test_a_suspension_without_the_csrf_token_is_refused(operator, bob_provider):
    from django.test import Client

    machine = MachineFactory(provider=bob_provider)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    response = _suspend(browser, machine, "cross-site")
    assert response.status_code == 403
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.VERIFIED


def test_an_unknown_machine_is_a_404(operator_client):
    assert _suspend(operator_client, Machine(pk=999_999), "ghost").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_two_staff_reinstating_at_once_make_one_reinstatement(bob_provider):
    """Both lock the machine row; the second finds it no longer suspended and is refused, so the
    history holds one reinstatement (meaningful on PostgreSQL, where the threads overlap)."""
    from marketplace.core.errors import InvalidTransition
    from marketplace.dashboard.services import machine_staff_reinstate
    from tests.factories import UserFactory
    from tests.races.conftest import race

    listing = ListingFactory(machine__provider=bob_provider)
    machine_suspend(machine_id=listing.machine_id, reason="test")
    otto, vera = (UserFactory(username=n, is_staff=True) for n in ("otto2", "vera2"))
    outcomes = race(
        *(
            lambda u=u: machine_staff_reinstate(machine_id=listing.machine_id, staff=u, reason="ok")
            for u in (otto, vera)
        )
    )
    assert sorted(kind for kind, _ in outcomes) == ["error", "ok"]
    assert isinstance(next(v for k, v in outcomes if k == "error"), InvalidTransition)
    assert MachineStaffAction.objects.filter(action="reinstate").count() == 1
    assert Machine.objects.get(pk=listing.machine_id).state == Machine.State.LISTED
