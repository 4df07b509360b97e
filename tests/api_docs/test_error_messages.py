"""Error messages an integrator can act on without reading the source."""

import json

import pytest

from marketplace.accounts import authentication as accounts_auth
from marketplace.orders.services import order_stop_by_renter
from marketplace.providers import authentication as providers_auth
from tests.api.helpers import assert_error, nothing_written
from tests.conftest import client_for
from tests.factories import ListingFactory

pytestmark = pytest.mark.django_db


# --- counts read as English ---------------------------------------------------------------


def _order(client, listing, accelerators, key="msg-order-0001"):
    return client.post(
        "/api/v1/orders",
        {
            "listing_id": listing.pk,
            "pricing_mode": "on_demand",
            "accelerators": accelerators,
            "hours": 1,
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_a_one_accelerator_listing_says_1_accelerator(alice, bob_provider):
    single = ListingFactory(
        machine__provider=bob_provider, machine__accelerator_count=1, accelerator_count=1
    )
    error = assert_error(_order(client_for(alice), single, 2), 400, "orders_too_many_accelerators")
    assert error["message"] == "This listing has 1 accelerator; 2 requested."


def test_capacity_messages_count_in_the_singular_and_the_plural(alice, carol, listing):
    """listing: 8 accelerators. alice takes 7 (1 left), then carol asks for 2."""
    assert _order(client_for(alice), listing, 7).status_code == 201
    error = assert_error(_order(client_for(carol), listing, 2), 409, "orders_capacity_exhausted")
    assert error["message"] == "1 accelerator of 8 is free on this listing; 2 requested."
    assert _order(client_for(carol), listing, 1, key="msg-order-0002").status_code == 201
    error = assert_error(
        _order(client_for(carol), listing, 1, key="msg-order-0003"),
        409,
        "orders_capacity_exhausted",
    )
    assert error["message"] == "0 accelerators of 8 are free on this listing; 1 requested."


def test_the_unfunded_cap_names_one_order_in_the_singular(alice, bob_provider, settings):
    settings.ORDER_MAX_UNFUNDED_PER_RENTER = 1
    first, second = (ListingFactory(machine__provider=bob_provider) for _ in range(2))
    made = _order(client_for(alice), first, 1).json()
    error = assert_error(
        _order(client_for(alice), second, 1, key="msg-order-0002"), 409, "orders_too_many_unfunded"
    )
    assert "at most 1 unfunded order and" in error["message"]
    assert f"fund or cancel order {made['id']} first." in error["message"]


# --- stopping twice -----------------------------------------------------------------------


def test_stopping_a_lease_twice_says_it_is_already_stopped(alice, alice_active_order):
    client = client_for(alice)
    assert client.post(f"/api/v1/orders/{alice_active_order.pk}/stop").status_code == 200
    with nothing_written():
        response = client.post(f"/api/v1/orders/{alice_active_order.pk}/stop")
    error = assert_error(response, 409, "order_invalid_transition")
    assert (
        error["message"] == f"Order {alice_active_order.pk} is already stopped (it is completed)."
    )
    # Clients that branch on the detail keep working.
    assert error["detail"] == {"current_state": "completed", "requested_state": "completed"}


def test_stopping_an_unstarted_order_says_to_cancel_it(alice, alice_order):
    error = assert_error(client_for(alice).post(f"/api/v1/orders/{alice_order.pk}/stop"), 409)
    assert "has not started" in error["message"] and "cancel it instead" in error["message"]


def test_cancelling_twice_or_a_running_lease_says_what_to_do(alice, alice_order, listing):
    client = client_for(alice)
    assert client.post(f"/api/v1/orders/{alice_order.pk}/cancel").status_code == 200
    error = assert_error(client.post(f"/api/v1/orders/{alice_order.pk}/cancel"), 409)
    assert error["message"] == f"Order {alice_order.pk} is already cancelled."


def test_cancelling_a_running_lease_says_to_stop_it(alice, alice_active_order):
    error = assert_error(
        client_for(alice).post(f"/api/v1/orders/{alice_active_order.pk}/cancel"), 409
    )
    assert error["message"] == f"Order {alice_active_order.pk} is running; stop it instead."


def test_a_stop_by_the_meter_and_then_by_the_renter_says_already_stopped(alice, alice_active_order):
    order_stop_by_renter(order_id=alice_active_order.pk, user=alice)
    error = assert_error(
        client_for(alice).post(f"/api/v1/orders/{alice_active_order.pk}/stop"), 409
    )
    assert "already stopped" in error["message"]


# --- an agent credential on the user API --------------------------------------------------


def test_an_agent_credential_on_the_user_api_says_it_is_an_agent_credential(bob_agent):
    _, agent = bob_agent
    for path in ("/api/v1/orders", "/api/v1/auth/me", "/api/v1/machines", "/api/v1/webhooks"):
        error = assert_error(agent.get(path), 401, "agent_credential_on_user_api")
        assert "agent credential" in error["message"] and "Token mkt_" in error["message"]
    # A public endpoint still serves it, as it serves anyone.
    assert agent.get("/api/v1/listings").status_code == 200
    # And the agent's own endpoints still take it.
    assert agent.post("/api/v1/agent/heartbeat").status_code == 200


def test_a_garbage_token_is_still_plain_not_authenticated(anon):
    anon.credentials(HTTP_AUTHORIZATION="Token nonsense")
    assert_error(anon.get("/api/v1/orders"), 401, "not_authenticated")


def test_accounts_and_providers_agree_on_the_agent_prefix():
    assert accounts_auth.AGENT_TOKEN_PREFIX == providers_auth.AGENT_TOKEN_PREFIX


# --- a float where an integer is required --------------------------------------------------

NOT_INTEGERS = [1.5, "1.5", 1e3, 1.0, "2", True, None, [], {}]


def _raw(client, method, path, body, **headers):
    return getattr(client, method)(
        path, json.dumps(body), content_type="application/json", **headers
    )


@pytest.mark.parametrize("field", ["accelerators", "hours", "listing_id"])
@pytest.mark.parametrize("value", NOT_INTEGERS, ids=repr)
def test_order_create_refuses_a_non_integer_count(alice, listing, field, value):
    body = {"listing_id": listing.pk, "pricing_mode": "on_demand", "accelerators": 1, "hours": 1}
    body[field] = value
    client = client_for(alice)
    with nothing_written():
        response = _raw(client, "post", "/api/v1/orders", body, HTTP_IDEMPOTENCY_KEY="float-0001")
    error = assert_error(response, 400, "invalid_input")
    assert field in error["detail"]


@pytest.mark.parametrize("value", NOT_INTEGERS, ids=repr)
def test_order_create_refuses_a_non_integer_bid(alice, listing, value):
    body = {
        "listing_id": listing.pk,
        "pricing_mode": "interruptible",
        "accelerators": 1,
        "hours": 1,
        "bid_per_hour": value,
    }
    client = client_for(alice)
    with nothing_written():
        response = _raw(client, "post", "/api/v1/orders", body, HTTP_IDEMPOTENCY_KEY="float-0002")
    assert "bid_per_hour" in assert_error(response, 400, "invalid_input")["detail"]


@pytest.mark.parametrize("field", ["price_per_hour", "interruptible_floor_per_hour"])
@pytest.mark.parametrize("value", [1.5, "1.5", 1e3, 1.0, "2", True], ids=repr)
def test_listing_prices_refuse_a_non_integer_amount(bob, listing, field, value):
    client = client_for(bob)
    with nothing_written():
        response = _raw(client, "patch", f"/api/v1/listings/{listing.pk}/prices", {field: value})
    assert field in assert_error(response, 400, "invalid_input")["detail"]


@pytest.mark.parametrize("raw", [b'{"accelerators": 1e400}', b'{"accelerators": NaN}'])
def test_an_infinite_or_nan_count_is_a_400_not_a_500(alice, listing, raw):
    body = raw.replace(
        b"{", f'{{"listing_id": {listing.pk}, "pricing_mode": "on_demand", "hours": 1, '.encode(), 1
    )
    response = client_for(alice).post(
        "/api/v1/orders", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="float-0003"
    )
    assert_error(response, 400)


# --- a dependency that does not answer ----------------------------------------------------


def test_funding_while_the_chain_node_is_down_is_a_503_to_retry(alice, alice_order, settings):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{port}"  # nothing listens there
    client = client_for(alice)
    with nothing_written():
        response = client.get(f"/api/v1/orders/{alice_order.pk}/funding")
    error = assert_error(response, 503, "payments_chain_unavailable")
    assert "Retry" in error["message"]
