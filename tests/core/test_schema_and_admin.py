import pytest
from django.core.management import call_command
from django.urls import reverse

from marketplace.orders.models import Order
from marketplace.providers.models import Machine
from tests.factories import ListingFactory
from tests.payments.helpers import make_active_order, make_order

pytestmark = pytest.mark.django_db


def test_openapi_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "/api/v1/orders" in text and "/api/v1/listings" in text


def test_swagger_ui_is_served_without_a_cdn(anon):
    response = anon.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "cdn." not in page and "unpkg" not in page and "jsdelivr" not in page


def test_unknown_api_path_is_a_json_404(anon):
    response = anon.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.fixture
def staff_client(client, staff):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    return client


ADMIN_MODELS = [
    "accounts_user",
    "accounts_apitoken",
    "providers_provider",
    "providers_machine",
    "providers_registrationtoken",
    "providers_agentcredential",
    "listings_listing",
    "orders_order",
]


@pytest.mark.parametrize("model", ADMIN_MODELS)
def test_admin_changelist_and_search_render(staff_client, bob_provider, model):
    ListingFactory(machine__provider=bob_provider)
    url = reverse(f"admin:{model}_changelist")
    assert staff_client.get(url).status_code == 200
    assert staff_client.get(url, {"q": "x"}).status_code == 200


def test_admin_suspend_goes_through_the_service(staff_client, bob_provider):
    # Suspension is a per-machine form with a reason (tests/admin covers it in full).
    listing = ListingFactory(machine__provider=bob_provider)
    response = staff_client.post(
        reverse("admin:providers_machine_suspend", args=[listing.machine_id]),
        {"reason": "renter reports wrong GPUs"},
    )
    assert response.status_code == 302
    machine = Machine.objects.get(pk=listing.machine_id)
    assert machine.state == Machine.State.SUSPENDED
    assert "staff" in machine.state_reason
    listing.refresh_from_db()
    assert not listing.is_searchable


def test_admin_cancel_action_refuses_an_active_order_and_cancels_a_created_one(
    staff_client, alice, bob_provider
):
    listing = ListingFactory(machine__provider=bob_provider)
    waiting = make_order(renter=alice, listing=listing, key="admin-key-1")
    running = make_active_order(renter=alice, listing=listing, key="admin-key-2")
    staff_client.post(
        reverse("admin:orders_order_changelist"),
        {"action": "cancel", "_selected_action": [waiting.pk, running.pk]},
    )
    assert Order.objects.get(pk=waiting.pk).state == Order.State.CANCELLED
    assert Order.objects.get(pk=running.pk).state == Order.State.ACTIVE


def test_admin_shows_money_and_state_read_only(staff_client, alice, bob_provider):
    listing = ListingFactory(machine__provider=bob_provider)
    order = make_order(renter=alice, listing=listing, key="admin-key-3")
    page = staff_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert 'name="escrow_amount"' not in page and 'name="state"' not in page
