"""Who may call what: every role against every endpoint, with a request that is otherwise valid,
so the status is the authorization decision alone. Objects belong to bob (provider owner) and
alice (renter); another owner's objects answer 404, never 403, so they cannot be probed."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tests.api.endpoints import ENDPOINTS, send
from tests.api.helpers import assert_error
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "renter", "other_renter", "owner", "other_owner", "agent", "staff")

_ROLE_CLIENTS = {
    "anonymous": lambda f: APIClient(),
    "renter": lambda f: client_for(f("alice")),
    "other_renter": lambda f: client_for(f("carol")),
    "owner": lambda f: client_for(f("bob")),
    "other_owner": lambda f: client_for(f("mallory")),
    "agent": lambda f: f("bob_agent")[1],
    "staff": lambda f: client_for(f("staff")),
}

# One row per endpoint; statuses in the order of ROLES:
#            anonymous, renter(alice), other_renter(carol), owner(bob), other_owner(mallory),
#            agent(bob's machine), staff
MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/api/v1/health"): (200, 200, 200, 200, 200, 200, 200),
    ("POST", "/api/v1/auth/signup"): (201, 201, 201, 201, 201, 201, 201),
    ("POST", "/api/v1/auth/tokens"): (201, 201, 201, 201, 201, 201, 201),
    ("DELETE", "/api/v1/auth/tokens/current"): (401, 204, 204, 204, 204, 401, 204),
    ("GET", "/api/v1/auth/me"): (401, 200, 200, 200, 200, 401, 200),
    ("GET", "/api/v1/providers"): (401, 403, 403, 200, 200, 401, 200),
    ("POST", "/api/v1/providers"): (401, 403, 403, 201, 201, 401, 201),
    ("GET", "/api/v1/providers/{id}"): (401, 403, 403, 200, 404, 401, 200),
    ("POST", "/api/v1/providers/{id}/registration-tokens"): (401, 403, 403, 201, 404, 401, 201),
    ("GET", "/api/v1/machines"): (401, 403, 403, 200, 200, 401, 200),
    ("GET", "/api/v1/machines/{id}"): (401, 403, 403, 200, 404, 401, 200),
    ("POST", "/api/v1/machines/{id}/suspend"): (401, 403, 403, 403, 403, 401, 200),
    ("POST", "/api/v1/agent/register"): (201, 201, 201, 201, 201, 201, 201),
    ("POST", "/api/v1/agent/heartbeat"): (401, 401, 401, 401, 401, 200, 401),
    ("GET", "/api/v1/agent/machine"): (401, 401, 401, 401, 401, 200, 401),
    ("GET", "/api/v1/listings"): (200, 200, 200, 200, 200, 200, 200),
    ("POST", "/api/v1/listings"): (401, 403, 403, 201, 404, 401, 201),
    ("GET", "/api/v1/listings/mine"): (401, 403, 403, 200, 200, 401, 200),
    ("GET", "/api/v1/listings/{id}"): (200, 200, 200, 200, 200, 200, 200),
    ("PATCH", "/api/v1/listings/{id}/prices"): (401, 403, 403, 200, 404, 401, 200),
    ("POST", "/api/v1/listings/{id}/status"): (401, 403, 403, 200, 404, 401, 200),
    ("GET", "/api/v1/orders"): (401, 200, 200, 200, 200, 401, 200),
    ("POST", "/api/v1/orders"): (401, 201, 201, 403, 403, 401, 201),
    ("GET", "/api/v1/orders/{id}"): (401, 200, 404, 200, 404, 401, 200),
    ("POST", "/api/v1/orders/{id}/cancel"): (401, 200, 404, 403, 404, 401, 200),
    ("POST", "/api/v1/orders/{id}/stop"): (401, 200, 404, 403, 404, 401, 200),
    ("GET", "/api/schema/"): (200, 200, 200, 200, 200, 200, 200),
    ("GET", "/api/docs/"): (200, 200, 200, 200, 200, 200, 200),
}

CASES = [
    pytest.param(role, method, path, expected, id=f"{role}-{method} {path}")
    for (method, path), statuses in MATRIX.items()
    for role, expected in zip(ROLES, statuses, strict=True)
]


@pytest.mark.parametrize(("role", "method", "path", "expected"), CASES)
def test_role_gets_expected_status(request, role, method, path, expected):
    f = request.getfixturevalue
    call = ENDPOINTS[(method, path)](f)
    client = _ROLE_CLIENTS[role](f)

    response = send(client, call)

    if expected >= 400:
        assert_error(response, expected)
    else:
        assert response.status_code == expected, response.content[:500]


# The apps this matrix answers for; benchmarks and payments have their own endpoint tests.
MATRIX_APPS = (
    "marketplace.core.",
    "marketplace.accounts.",
    "marketplace.providers.",
    "marketplace.listings.",
    "marketplace.orders.",
    "drf_spectacular.",
)


def _api_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route the URLconf serves under /api/ from the apps above,
    from the views' own handlers, so a new endpoint or method fails the completeness test until
    it is added to the matrix."""
    routes = set()

    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                path = "/" + prefix + str(p.pattern)
                if not path.startswith("/api/"):
                    continue
                view = getattr(p.callback, "cls", None) or getattr(p.callback, "view_class", None)
                if not view.__module__.startswith(MATRIX_APPS):
                    continue
                for method in view.http_method_names:
                    if method in ("options", "head") or not hasattr(view, method):
                        continue
                    routes.add((method.upper(), re.sub(r"<int:\w+>", "{id}", path)))

    walk(get_resolver().url_patterns, "")
    return routes


def test_matrix_covers_every_api_route_and_method():
    assert set(MATRIX) == _api_routes()
    assert set(ENDPOINTS) == set(MATRIX)


def test_other_owner_lists_none_of_bobs_objects(mallory, bob_verified_machine, listing):
    client = client_for(mallory)
    for path in ("/api/v1/providers", "/api/v1/machines", "/api/v1/listings/mine"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json()["count"] == 0, path


def test_other_renter_lists_none_of_alices_orders(carol, alice_order):
    response = client_for(carol).get("/api/v1/orders")
    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_owner_lists_orders_on_own_machines_and_renter_lists_own(bob, alice, alice_order):
    for user in (alice, bob):
        ids = [o["id"] for o in client_for(user).get("/api/v1/orders").json()["results"]]
        assert ids == [alice_order.pk], user.username
