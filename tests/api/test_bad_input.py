"""Bad input on every write endpoint: each request is a valid one with one thing spoiled, and must
get a specific 4xx in the one error shape, with no row created, deleted or changed."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.listings.models import Listing
from marketplace.orders.services import order_cancel
from marketplace.providers.models import Machine, Provider, RegistrationToken
from marketplace.providers.services import registration_token_create
from tests.api.endpoints import AGENT_HARDWARE, ENDPOINTS, send_raw
from tests.api.helpers import assert_error, nothing_written, publish_body
from tests.conftest import client_for
from tests.factories import ListingFactory

pytestmark = pytest.mark.django_db

BOB_WALLET = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
HUGE_ID = 10**30

# Endpoints that read a JSON body, and who normally calls each.
BODY_ENDPOINTS = {
    ("POST", "/api/v1/auth/signup"): None,
    ("POST", "/api/v1/auth/tokens"): None,
    ("POST", "/api/v1/providers"): "bob",
    ("POST", "/api/v1/agent/register"): None,
    ("POST", "/api/v1/listings"): "bob",
    ("PATCH", "/api/v1/listings/{id}/prices"): "bob",
    ("POST", "/api/v1/listings/{id}/status"): "bob",
    ("POST", "/api/v1/orders"): "alice",
    ("POST", "/api/v1/machines/{id}/suspend"): "staff",
}


def _caller(request, endpoint):
    f = request.getfixturevalue
    call = ENDPOINTS[endpoint](f)
    user = BODY_ENDPOINTS[endpoint]
    client = client_for(f(user)) if user else APIClient()
    return client, call


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS, ids=" ".join)
@pytest.mark.parametrize(
    "raw",
    [b'{"name": ', b"{'name': 'x'}", b"not json", b'{"a": 1}}', b"\xff\xfe"],
    ids=["truncated", "single-quoted", "bare-words", "trailing-brace", "not-utf8"],
)
def test_write_endpoint_rejects_malformed_json(request, endpoint, raw):
    client, call = _caller(request, endpoint)
    with nothing_written():
        response = send_raw(client, call, raw)
    assert_error(response, 400, "malformed_request")


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS, ids=" ".join)
@pytest.mark.parametrize(
    "raw", [b"[]", b'[{"status": "paused"}]', b'"paused"', b"null", b"12", b"true", b""]
)
def test_write_endpoint_rejects_a_body_that_is_not_an_object(request, endpoint, raw):
    client, call = _caller(request, endpoint)
    with nothing_written():
        response = send_raw(client, call, raw)
    assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS, ids=" ".join)
def test_write_endpoint_rejects_a_form_encoded_body(request, endpoint):
    client, call = _caller(request, endpoint)
    with nothing_written():
        response = send_raw(
            client, call, b"status=paused", content_type="application/x-www-form-urlencoded"
        )
    assert_error(response, 415, "unsupported_media_type")


# --- POST /auth/signup -----------------------------------------------------------------------

SIGNUP = {"username": "eve", "password": "correct horse battery", "role": "renter"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"username": "ab"},
        {"username": "eve smith"},
        {"username": "eve\u0000"},
        {"username": ["eve"]},
        {"username": None},
        {"username": "e" * 151},
        {"password": "short"},
        {"password": 12345678},
        {"password": "12345678"},
        {"password": "x" * 129},
        {"password": None},
        {"role": "staff"},
        {"role": "admin"},
        {"role": ""},
        {"role": 1},
        {"role": None},
        {"email": "not-an-email"},
        {"email": 12},
    ],
    ids=repr,
)
def test_signup_rejects_bad_fields_without_creating_a_user(anon, overrides):
    with nothing_written():
        response = anon.post("/api/v1/auth/signup", {**SIGNUP, **overrides}, format="json")
    assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize("missing", ["username", "password", "role"])
def test_signup_rejects_a_missing_field(anon, missing):
    body = {k: v for k, v in SIGNUP.items() if k != missing}
    with nothing_written():
        response = anon.post("/api/v1/auth/signup", body, format="json")
    assert missing in assert_error(response, 400, "invalid_input")["detail"]


# --- POST /auth/tokens ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"username": "alice"}, 400, "invalid_input"),
        ({"password": "correct horse battery"}, 400, "invalid_input"),
        ({"username": ["alice"], "password": "correct horse battery"}, 400, "invalid_input"),
        ({"username": "alice", "password": None}, 400, "invalid_input"),
        ({"username": "alice", "password": "x" * 129}, 400, "invalid_input"),
        (
            {"username": "alice", "password": "correct horse battery", "token_name": "t" * 101},
            400,
            "invalid_input",
        ),
        ({"username": "alice", "password": "wrong password"}, 401, "accounts_bad_credentials"),
        ({"username": "nobody", "password": "correct horse battery"}, 401, None),
        ({"username": "ALICE", "password": "correct horse battery"}, 401, None),
    ],
    ids=repr,
)
def test_login_rejects_bad_credentials_without_issuing_a_token(anon, alice, body, status, code):
    with nothing_written():
        response = anon.post("/api/v1/auth/tokens", body, format="json")
    assert_error(response, status, code)


def test_login_of_a_deactivated_user_issues_no_token(anon, alice):
    alice.is_active = False
    alice.save()
    with nothing_written():
        response = anon.post(
            "/api/v1/auth/tokens",
            {"username": "alice", "password": "correct horse battery"},
            format="json",
        )
    assert_error(response, 401, "accounts_bad_credentials")


# --- POST /providers ------------------------------------------------------------------------


def _flip_checksum_case(address: str) -> str:
    """The same address with one letter's case flipped: a typo the EIP-55 checksum catches."""
    i = next(i for i, c in enumerate(address) if i >= 2 and c.isalpha())
    return address[:i] + address[i].swapcase() + address[i + 1 :]


@pytest.mark.parametrize(
    ("wallet", "code"),
    [
        ("0x1234", "providers_bad_wallet_address"),
        ("0x" + "g" * 40, "providers_bad_wallet_address"),
        (BOB_WALLET[:-1], "providers_bad_wallet_address"),
        ("0x" + BOB_WALLET[2:-1] + "Z", "providers_bad_wallet_address"),
        ("wallet", "providers_bad_wallet_address"),
        (12, "providers_bad_wallet_address"),
        (_flip_checksum_case(BOB_WALLET), "providers_bad_wallet_checksum"),
        (BOB_WALLET + "0", "invalid_input"),
        ("", "invalid_input"),
        (None, "invalid_input"),
        ([BOB_WALLET], "invalid_input"),
        ({"address": BOB_WALLET}, "invalid_input"),
    ],
    ids=repr,
)
def test_provider_create_rejects_a_bad_wallet_address(bob, wallet, code):
    client = client_for(bob)
    with nothing_written():
        response = client.post(
            "/api/v1/providers", {"name": "bob gpus", "wallet_address": wallet}, format="json"
        )
    assert_error(response, 400, code)


@pytest.mark.parametrize("name", ["", "   ", "n" * 101, None, ["bob gpus"]], ids=repr)
def test_provider_create_rejects_a_bad_name(bob, name):
    client = client_for(bob)
    with nothing_written():
        response = client.post(
            "/api/v1/providers", {"name": name, "wallet_address": BOB_WALLET}, format="json"
        )
    assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize("wallet", [BOB_WALLET.lower(), "0x" + BOB_WALLET[2:].upper(), BOB_WALLET])
def test_provider_create_accepts_unchecksummed_case_and_stores_the_checksum_form(bob, wallet):
    response = client_for(bob).post(
        "/api/v1/providers", {"name": "bob gpus", "wallet_address": wallet}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["wallet_address"] == BOB_WALLET
    assert Provider.objects.get(pk=response.json()["id"]).wallet_address == BOB_WALLET


# --- POST /providers/{id}/registration-tokens -----------------------------------------------


@pytest.mark.parametrize("provider_id", ["mallory_provider", 999_999, HUGE_ID], ids=str)
def test_registration_token_for_a_provider_not_owned_is_404(request, bob, provider_id):
    if isinstance(provider_id, str):
        provider_id = request.getfixturevalue(provider_id).pk
    client = client_for(bob)
    with nothing_written():
        response = client.post(f"/api/v1/providers/{provider_id}/registration-tokens")
    assert_error(response, 404, "providers_not_found")


# --- POST /agent/register -------------------------------------------------------------------


def _gpu(**overrides):
    return {"kind": "gpu", "vendor": "NVIDIA", "model": "L4", "memory_gb": 24, **overrides}


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": ""},
        {"name": None},
        {"name": "n" * 101},
        {"registration_token": "r" * 201},
        {"registration_token": None},
        {"hardware": None},
        {"hardware": []},
        {"hardware": "8x H100"},
        {"hardware": {"accelerators": [_gpu()] * 65}},
        {"hardware": {"accelerators": [_gpu(), _gpu(model="A100")]}},
        {"hardware": {"accelerators": [_gpu(kind="quantum")]}},
        {"hardware": {"accelerators": [_gpu(memory_gb=True)]}},
        {"hardware": {"accelerators": [_gpu(memory_gb=-1)]}},
        {"hardware": {"accelerators": [_gpu(memory_gb=10**6)]}},
        {"hardware": {"accelerators": [_gpu(memory_gb=24.5)]}},
        {"hardware": {"accelerators": [_gpu(model="")]}},
        {"hardware": {"accelerators": [_gpu(model=None)]}},
        {"hardware": {"accelerators": ["gpu"]}},
        {"hardware": {"accelerators": {"kind": "gpu"}}},
        {"hardware": {"cpu": {"cores": "many"}}},
        {"hardware": {"cpu": {"cores": 10**6}}},
        {"hardware": {"cpu": "epyc"}},
        {"hardware": {"ram_gib": 10**18}},
        {"hardware": {"ram_gib": -1}},
        {"hardware": {"backends": ["cuda-13"]}},
        {"hardware": {"backends": ["numpy"] * 9}},
        {"hardware": {"backends": "numpy"}},
        {"agent_version": "v" * 41},
    ],
    ids=repr,
)
def test_agent_register_rejects_bad_fields_and_keeps_the_token_unused(bob_provider, overrides):
    _, raw = registration_token_create(provider=bob_provider, user=bob_provider.owner)
    body = {"registration_token": raw, "name": "box", "hardware": AGENT_HARDWARE, **overrides}
    with nothing_written():
        response = APIClient().post("/api/v1/agent/register", body, format="json")
    assert_error(response, 400, "invalid_input")


def _used_token(provider):
    from marketplace.providers.services import machine_register

    _, raw = registration_token_create(provider=provider, user=provider.owner)
    machine_register(registration_token=raw, name="first", hardware=AGENT_HARDWARE)
    return raw


def _expired_token(provider):
    token, raw = registration_token_create(provider=provider, user=provider.owner)
    RegistrationToken.objects.filter(pk=token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    return raw


@pytest.mark.parametrize(
    "make_token",
    [
        lambda provider: "reg_not-a-token",
        lambda provider: "",
        lambda provider: 12,
        _used_token,
        _expired_token,
    ],
    ids=["unknown", "empty", "a-number", "used", "expired"],
)
def test_agent_register_refuses_an_unknown_used_or_expired_token(bob_provider, make_token):
    token = make_token(bob_provider)
    body = {"registration_token": token, "name": "box", "hardware": AGENT_HARDWARE}
    with nothing_written():
        response = APIClient().post("/api/v1/agent/register", body, format="json")
    if token == "":
        assert_error(response, 400, "invalid_input")
    else:
        assert_error(response, 401, "providers_bad_registration_token")


# --- POST /listings -------------------------------------------------------------------------

_BAD_INTEGERS = ["8", 8.0, True, None, [8], {"n": 8}]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        *(({"accelerator_count": v}, "invalid_input") for v in _BAD_INTEGERS),
        *(({"price_per_hour": v}, "invalid_input") for v in ["2498400", 2498400.0, True, None]),
        ({"machine_id": "1"}, "invalid_input"),
        ({"price_per_hour": 0}, "invalid_input"),
        ({"price_per_hour": -3600}, "invalid_input"),
        ({"price_per_hour": 10**18}, "invalid_input"),
        ({"price_per_hour": 10**12 + 3600}, "invalid_input"),
        ({"price_per_hour": 1234}, "listings_price_not_per_second"),
        ({"price_per_hour": 3601}, "listings_price_not_per_second"),
        ({"interruptible_floor_per_hour": 0}, "invalid_input"),
        ({"interruptible_floor_per_hour": 1234}, "listings_price_not_per_second"),
        # The hardware is copied from the verified machine: typing it is refused.
        ({"accelerator_count": 8}, "invalid_input"),
        ({"accelerator_count": 16}, "invalid_input"),
        ({"memory_per_accelerator_gb": 80}, "invalid_input"),
        ({"memory_bandwidth_gbps": 3350}, "invalid_input"),
        ({"accelerator_kind": "gpu"}, "invalid_input"),
        ({"interconnect": "nvlink"}, "invalid_input"),
        ({"precisions": ["fp32", "fp8"]}, "invalid_input"),
        ({"model": "H100 80GB HBM3"}, "invalid_input"),
        ({"vendor": "NVIDIA"}, "invalid_input"),
        ({"vcpu_count": 192}, "invalid_input"),
        ({"storage_gb": 10**18}, "invalid_input"),
        ({"storage_gb": -1}, "invalid_input"),
        ({"network_gbps": "1"}, "invalid_input"),
        ({"region": "EU West"}, "invalid_input"),
        ({"region": "r" * 41}, "invalid_input"),
        ({"region": ""}, "invalid_input"),
        ({"reserved_prices": {"2y": 3_600_000}}, "invalid_input"),
        ({"reserved_prices": {"1m": 1234}}, "listings_price_not_per_second"),
        ({"reserved_prices": {"1m": "3600000"}}, "invalid_input"),
        ({"reserved_prices": {"1m": 0}}, "invalid_input"),
        ({"reserved_prices": {"1m": 10**18}}, "invalid_input"),
        ({"reserved_prices": [3_600_000]}, "invalid_input"),
    ],
    ids=repr,
)
def test_listing_publish_rejects_bad_fields(bob, bob_verified_machine, overrides, code):
    client = client_for(bob)
    with nothing_written():
        response = client.post(
            "/api/v1/listings", publish_body(bob_verified_machine.pk, **overrides), format="json"
        )
    assert_error(response, 400, code)


@pytest.mark.parametrize("missing", ["machine_id", "price_per_hour", "region"])
def test_listing_publish_rejects_a_missing_field(bob, bob_verified_machine, missing):
    body = publish_body(bob_verified_machine.pk)
    del body[missing]
    client = client_for(bob)
    with nothing_written():
        response = client.post("/api/v1/listings", body, format="json")
    assert missing in assert_error(response, 400, "invalid_input")["detail"]


@pytest.mark.parametrize(
    ("machine", "status", "code"),
    [
        ("mallory_verified_machine", 404, "listings_machine_not_found"),
        (HUGE_ID, 404, "listings_machine_not_found"),
        ("registered_machine", 409, "listings_machine_not_verified"),
        ("listed_machine", 409, "listings_machine_not_verified"),
    ],
    ids=str,
)
def test_listing_publish_refuses_a_machine_that_is_not_bobs_or_not_verified(
    request, bob, bob_agent, listing, machine, status, code
):
    machine_id = {
        "registered_machine": lambda: bob_agent[0].pk,
        "listed_machine": lambda: listing.machine_id,
        "mallory_verified_machine": lambda: request.getfixturevalue(machine).pk,
    }.get(machine, lambda: machine)()
    client = client_for(bob)
    with nothing_written():
        response = client.post("/api/v1/listings", publish_body(machine_id), format="json")
    assert_error(response, status, code)


# --- PATCH /listings/{id}/prices ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_input"),
        ({"price": 3_600_000}, "invalid_input"),
        ({"price_per_hour": 0}, "invalid_input"),
        ({"price_per_hour": -3600}, "invalid_input"),
        ({"price_per_hour": 10**18}, "invalid_input"),
        ({"price_per_hour": "3600000"}, "invalid_input"),
        ({"price_per_hour": 3600000.0}, "invalid_input"),
        ({"price_per_hour": True}, "invalid_input"),
        ({"price_per_hour": None}, "invalid_input"),
        ({"price_per_hour": 1234}, "listings_price_not_per_second"),
        ({"interruptible_floor_per_hour": 1234}, "listings_price_not_per_second"),
        ({"interruptible_floor_per_hour": -1}, "invalid_input"),
        ({"reserved_prices": {"9y": 3_600_000}}, "invalid_input"),
        ({"reserved_prices": {"1y": 1234}}, "listings_price_not_per_second"),
        ({"reserved_prices": None}, "invalid_input"),
        ({"price_per_hour": 3_600_000, "reserved_prices": {"1y": 1234}}, None),
    ],
    ids=repr,
)
def test_listing_reprice_rejects_bad_prices_and_keeps_the_old_ones(bob, listing, body, code):
    client = client_for(bob)
    with nothing_written():
        response = client.patch(f"/api/v1/listings/{listing.pk}/prices", body, format="json")
    assert_error(response, 400, code)


@pytest.mark.parametrize("listing_id", ["mallorys_view_of_bobs", 999_999, HUGE_ID], ids=str)
def test_listing_reprice_of_a_listing_not_owned_is_404(mallory, listing, listing_id):
    if listing_id == "mallorys_view_of_bobs":
        listing_id = listing.pk
    client = client_for(mallory)
    with nothing_written():
        response = client.patch(
            f"/api/v1/listings/{listing_id}/prices", {"price_per_hour": 3600}, format="json"
        )
    assert_error(response, 404, "listings_not_found")


def test_listing_reprice_of_a_closed_listing_is_409(bob, listing):
    Listing.objects.filter(pk=listing.pk).update(status="closed", is_searchable=False)
    client = client_for(bob)
    with nothing_written():
        response = client.patch(
            f"/api/v1/listings/{listing.pk}/prices", {"price_per_hour": 3600}, format="json"
        )
    assert_error(response, 409, "listings_closed")


# --- POST /listings/{id}/status -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": "deleted"},
        {"status": ""},
        {"status": None},
        {"status": 1},
        {"state": "paused"},
    ],
    ids=repr,
)
def test_listing_status_rejects_an_unknown_status(bob, listing, body):
    client = client_for(bob)
    with nothing_written():
        response = client.post(f"/api/v1/listings/{listing.pk}/status", body, format="json")
    assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize(("current", "target"), [("active", "active"), ("closed", "active")])
def test_listing_status_refuses_a_transition_the_state_machine_does_not_allow(
    bob, listing, current, target
):
    Listing.objects.filter(pk=listing.pk).update(status=current)
    client = client_for(bob)
    with nothing_written():
        response = client.post(
            f"/api/v1/listings/{listing.pk}/status", {"status": target}, format="json"
        )
    assert_error(response, 409, "listings_invalid_transition")


@pytest.mark.parametrize("as_mallory", [True, False], ids=["bobs-listing", "no-such-listing"])
def test_listing_status_of_a_listing_not_owned_is_404(mallory, listing, as_mallory):
    listing_id = listing.pk if as_mallory else HUGE_ID
    client = client_for(mallory)
    with nothing_written():
        response = client.post(
            f"/api/v1/listings/{listing_id}/status", {"status": "closed"}, format="json"
        )
    assert_error(response, 404, "listings_not_found")


# --- POST /orders ---------------------------------------------------------------------------


def _order_body(listing, **overrides):
    body = {"listing_id": listing.pk, "pricing_mode": "on_demand", "accelerators": 1, "hours": 2}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not _ABSENT}


class _Absent:
    """A field left out of the body (a stable repr keeps the test ids readable)."""

    def __repr__(self):
        return "ABSENT"


_ABSENT = _Absent()


@pytest.mark.parametrize(
    "key",
    [None, "", "short", "has spaces in it", "k" * 101, "emoji-\u2603-key", "semi;colon;key"],
    ids=repr,
)
def test_order_create_requires_a_well_formed_idempotency_key(alice, listing, key):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    client = client_for(alice)
    with nothing_written():
        response = client.post("/api/v1/orders", _order_body(listing), format="json", **headers)
    assert_error(response, 400, "orders_idempotency_key_required")


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        *(({"accelerators": v}, 400, "invalid_input") for v in _BAD_INTEGERS),
        *(({"hours": v}, 400, "invalid_input") for v in ["2", 2.0, True, [2]]),
        *(({"listing_id": v}, 400, "invalid_input") for v in ["1", 1.0, True, None]),
        ({"accelerators": 0}, 400, "invalid_input"),
        ({"accelerators": -1}, 400, "invalid_input"),
        ({"accelerators": 10**6}, 400, "invalid_input"),
        ({"accelerators": 9}, 400, "orders_too_many_accelerators"),
        ({"hours": 0}, 400, "invalid_input"),
        ({"hours": -2}, 400, "invalid_input"),
        ({"hours": 10**18}, 400, "invalid_input"),
        ({"hours": 24 * 366 + 1}, 400, "invalid_input"),
        ({"hours": _ABSENT}, 400, "orders_bad_pricing"),
        ({"pricing_mode": "spot"}, 400, "invalid_input"),
        ({"pricing_mode": None}, 400, "invalid_input"),
        ({"pricing_mode": _ABSENT}, 400, "invalid_input"),
        ({"reserved_term": "1m"}, 400, "orders_bad_pricing"),
        ({"reserved_term": "2y"}, 400, "invalid_input"),
        ({"bid_per_hour": 1_080_000}, 400, "orders_bad_pricing"),
        ({"pricing_mode": "reserved", "hours": _ABSENT}, 400, "orders_bad_pricing"),
        ({"pricing_mode": "reserved", "reserved_term": "1y"}, 400, "orders_bad_pricing"),
        (
            {"pricing_mode": "reserved", "reserved_term": "3y", "hours": _ABSENT},
            400,
            "orders_term_not_offered",
        ),
        ({"pricing_mode": "interruptible"}, 400, "orders_bad_pricing"),
        (
            {"pricing_mode": "interruptible", "bid_per_hour": 3600},
            400,
            "orders_bid_below_floor",
        ),
        (
            {"pricing_mode": "interruptible", "bid_per_hour": 1234},
            400,
            "listings_price_not_per_second",
        ),
        ({"pricing_mode": "interruptible", "bid_per_hour": 0}, 400, "invalid_input"),
        ({"pricing_mode": "interruptible", "bid_per_hour": 10**18}, 400, "invalid_input"),
        ({"pricing_mode": "interruptible", "bid_per_hour": "1080000"}, 400, "invalid_input"),
        ({"listing_id": 0}, 400, "invalid_input"),
        ({"listing_id": HUGE_ID}, 404, "orders_listing_not_found"),
        ({"listing_id": 999_999}, 404, "orders_listing_not_found"),
    ],
    ids=repr,
)
def test_order_create_rejects_bad_fields(alice, listing, overrides, status, code):
    client = client_for(alice)
    with nothing_written():
        response = client.post(
            "/api/v1/orders",
            _order_body(listing, **overrides),
            format="json",
            HTTP_IDEMPOTENCY_KEY="bad-input-0001",
        )
    assert_error(response, status, code)


@pytest.mark.parametrize("listing_status", ["paused", "closed"])
def test_order_create_rejects_a_listing_that_is_not_open(alice, listing, listing_status):
    Listing.objects.filter(pk=listing.pk).update(status=listing_status, is_searchable=False)
    client = client_for(alice)
    with nothing_written():
        response = client.post(
            "/api/v1/orders",
            _order_body(listing),
            format="json",
            HTTP_IDEMPOTENCY_KEY="bad-input-0001",
        )
    assert_error(response, 404, "orders_listing_not_found")


def test_order_create_rejects_an_unlisted_machine(alice, listing):
    Machine.objects.filter(pk=listing.machine_id).update(state="suspended")
    Listing.objects.filter(pk=listing.pk).update(is_searchable=False)
    client = client_for(alice)
    with nothing_written():
        response = client.post(
            "/api/v1/orders",
            _order_body(listing),
            format="json",
            HTTP_IDEMPOTENCY_KEY="bad-input-0001",
        )
    assert_error(response, 404, "orders_listing_not_found")


def test_order_create_refuses_an_escrow_above_the_per_order_limit(alice, bob_provider):
    pricey = ListingFactory(machine__provider=bob_provider, price_per_hour=10**12)
    client = client_for(alice)
    with nothing_written():
        response = client.post(
            "/api/v1/orders",
            _order_body(pricey, accelerators=8, hours=24 * 366),
            format="json",
            HTTP_IDEMPOTENCY_KEY="bad-input-0001",
        )
    assert_error(response, 400, "orders_amount_too_large")


# --- POST /orders/{id}/cancel and /stop -----------------------------------------------------


@pytest.mark.parametrize("action", ["cancel", "stop"])
@pytest.mark.parametrize(
    ("caller", "order_id", "status", "code"),
    [
        ("carol", "alices", 404, "orders_not_found"),
        ("mallory", "alices", 404, "orders_not_found"),
        ("alice", 999_999, 404, "orders_not_found"),
        ("alice", HUGE_ID, 404, "orders_not_found"),
        ("bob", "alices", 403, "orders_not_renter"),
    ],
)
def test_order_action_on_an_order_not_the_callers_changes_nothing(
    request, alice_active_order, action, caller, order_id, status, code
):
    if order_id == "alices":
        order_id = alice_active_order.pk
    client = client_for(request.getfixturevalue(caller))
    with nothing_written():
        response = client.post(f"/api/v1/orders/{order_id}/{action}", {}, format="json")
    assert_error(response, status, code)


def test_order_cancel_of_a_cancelled_order_is_409(alice, alice_order):
    order_cancel(order_id=alice_order.pk)
    client = client_for(alice)
    with nothing_written():
        response = client.post(f"/api/v1/orders/{alice_order.pk}/cancel")
    assert_error(response, 409, "order_invalid_transition")


def test_order_cancel_of_an_active_lease_is_409(alice, alice_active_order):
    client = client_for(alice)
    with nothing_written():
        response = client.post(f"/api/v1/orders/{alice_active_order.pk}/cancel")
    assert_error(response, 409, "order_invalid_transition")


def test_order_stop_of_an_unstarted_order_is_409(alice, alice_order):
    client = client_for(alice)
    with nothing_written():
        response = client.post(f"/api/v1/orders/{alice_order.pk}/stop")
    assert_error(response, 409, "order_invalid_transition")


# --- POST /machines/{id}/suspend ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{}, {"reason": ""}, {"reason": None}, {"reason": "r" * 501}, {"reason": ["x"]}],
    ids=repr,
)
def test_machine_suspend_requires_a_reason(staff, bob_verified_machine, body):
    client = client_for(staff)
    with nothing_written():
        response = client.post(
            f"/api/v1/machines/{bob_verified_machine.pk}/suspend", body, format="json"
        )
    assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize("machine_id", [999_999, HUGE_ID])
def test_machine_suspend_of_an_unknown_machine_is_404(staff, machine_id):
    client = client_for(staff)
    with nothing_written():
        response = client.post(
            f"/api/v1/machines/{machine_id}/suspend", {"reason": "x"}, format="json"
        )
    assert_error(response, 404, "providers_machine_not_found")


def test_machine_suspend_of_a_suspended_machine_is_409(staff, bob_verified_machine):
    Machine.objects.filter(pk=bob_verified_machine.pk).update(state="suspended")
    client = client_for(staff)
    with nothing_written():
        response = client.post(
            f"/api/v1/machines/{bob_verified_machine.pk}/suspend",
            {"reason": "again"},
            format="json",
        )
    assert_error(response, 409, "machine_invalid_transition")
