"""Who may call what: every role against every endpoint, with a request that is otherwise valid,
so the status is the authorization decision alone. Objects belong to bob (provider owner) and
alice (renter); another owner's objects answer 404, never 403, so they cannot be probed. The
agent holds the credential of one of bob's machines: another machine's benchmark job is 404 to it.

The staff dashboard (/admin/dashboard/) is HTML behind Django's admin session, not the API: the
human roles call it logged in with a session; anyone not staff is redirected (302) to the admin
login. An API token opens no admin page."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.providers.models import Machine
from tests.api.endpoints import ENDPOINTS, Call, send
from tests.api.helpers import COMMITMENT, SKETCH, assert_error, nothing_written
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "renter", "other_renter", "owner", "other_owner", "agent", "staff")

_ROLE_USERS = {
    "renter": "alice",
    "other_renter": "carol",
    "owner": "bob",
    "other_owner": "mallory",
    "staff": "staff",
}

_ROLE_CLIENTS = {
    "anonymous": lambda f: APIClient(),
    "renter": lambda f: client_for(f("alice")),
    "other_renter": lambda f: client_for(f("carol")),
    "owner": lambda f: client_for(f("bob")),
    "other_owner": lambda f: client_for(f("mallory")),
    "agent": lambda f: f("bob_agent")[1],
    "staff": lambda f: client_for(f("staff")),
}


def _session_client(role: str, f) -> APIClient:
    """For the HTML pages: a browser logged in through the admin's session, not a token."""
    if role not in _ROLE_USERS:
        return _ROLE_CLIENTS[role](f)
    client = APIClient()
    client.force_login(f(_ROLE_USERS[role]))
    return client


def _is_html_page(path: str) -> bool:
    return not path.startswith("/api/")


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
    # benchmarks: the agent protocol on bob's agent's machine's jobs; its owner's scores page
    ("GET", "/api/v1/agent/jobs/next"): (401, 401, 401, 401, 401, 200, 401),
    ("GET", "/api/v1/agent/jobs/{id}"): (401, 401, 401, 401, 401, 200, 401),
    ("POST", "/api/v1/agent/jobs/{id}/commitment"): (401, 401, 401, 401, 401, 202, 401),
    ("POST", "/api/v1/agent/jobs/{id}/sketch"): (401, 401, 401, 401, 401, 202, 401),
    ("GET", "/api/v1/agent/jobs/{id}/challenge"): (401, 401, 401, 401, 401, 200, 401),
    ("POST", "/api/v1/agent/jobs/{id}/answer"): (401, 401, 401, 401, 401, 202, 401),
    ("GET", "/api/v1/machines/{id}/benchmarks"): (401, 404, 404, 200, 404, 401, 200),
    # A verdict's report is public evidence: anyone, signed in or not.
    ("GET", "/api/v1/reports/{id}"): (200, 200, 200, 200, 200, 200, 200),
    # payments. Funding instructions are for the renter who signs them: anyone else, the
    # provider owner and staff included, gets 404 (see also the undeployed-contracts test).
    ("GET", "/api/v1/orders/{id}/funding"): (401, 200, 404, 404, 404, 401, 404),
    ("GET", "/api/v1/orders/{id}/chain"): (401, 200, 404, 200, 404, 401, 200),
    # Stakes, slashes and rewards are public on chain: any signed-in user.
    ("GET", "/api/v1/providers/{id}/chain"): (401, 200, 200, 200, 200, 401, 200),
    # The requirement and the calldata to stake are the owner's (and staff's) business.
    ("GET", "/api/v1/providers/{id}/staking"): (401, 404, 404, 200, 404, 401, 200),
    # Escrow credits are public on chain; only the wallet's own key can withdraw one.
    ("GET", "/api/v1/credits/{id}"): (401, 200, 200, 200, 200, 401, 200),
    # workloads: the renter's own (another renter and the provider owner get 404: a workload is
    # the renter's business); the agent's side only with the credential of the lease's machine
    ("GET", "/api/v1/orders/{id}/workloads"): (401, 200, 404, 404, 404, 401, 200),
    ("POST", "/api/v1/orders/{id}/workloads"): (401, 201, 404, 403, 403, 401, 201),
    ("GET", "/api/v1/orders/{id}/workloads/{id}"): (401, 200, 404, 404, 404, 401, 200),
    ("GET", "/api/v1/orders/{id}/workloads/{id}/logs"): (401, 200, 404, 404, 404, 401, 200),
    ("POST", "/api/v1/orders/{id}/workloads/{id}/cancel"): (401, 200, 404, 404, 404, 401, 200),
    ("GET", "/api/v1/orders/{id}/workloads/{id}/results"): (401, 200, 404, 404, 404, 401, 200),
    ("POST", "/api/v1/agent/workloads/next"): (401, 401, 401, 401, 401, 200, 401),
    ("GET", "/api/v1/agent/workloads/{id}"): (401, 401, 401, 401, 401, 200, 401),
    ("GET", "/api/v1/agent/workloads/{id}/input"): (401, 401, 401, 401, 401, 200, 401),
    ("POST", "/api/v1/agent/workloads/{id}/start"): (401, 401, 401, 401, 401, 200, 401),
    ("POST", "/api/v1/agent/workloads/{id}/ping"): (401, 401, 401, 401, 401, 200, 401),
    ("POST", "/api/v1/agent/workloads/{id}/logs"): (401, 401, 401, 401, 401, 200, 401),
    ("POST", "/api/v1/agent/workloads/{id}/finish"): (401, 401, 401, 401, 401, 200, 401),
    # webhooks: each user's own endpoints only (alice's here); staff read the log in the admin
    ("GET", "/api/v1/webhooks"): (401, 200, 200, 200, 200, 401, 200),
    ("POST", "/api/v1/webhooks"): (401, 201, 201, 201, 201, 401, 201),
    ("GET", "/api/v1/webhooks/{id}"): (401, 200, 404, 404, 404, 401, 404),
    ("DELETE", "/api/v1/webhooks/{id}"): (401, 204, 404, 404, 404, 401, 404),
    ("POST", "/api/v1/webhooks/{id}/rotate-secret"): (401, 200, 404, 404, 404, 401, 404),
    ("GET", "/api/v1/webhooks/{id}/deliveries"): (401, 200, 404, 404, 404, 401, 404),
    # the staff dashboard (HTML, admin session)
    ("GET", "/admin/dashboard/"): (302, 302, 302, 302, 302, 302, 200),
    ("GET", "/admin/dashboard/machines/{id}/"): (302, 302, 302, 302, 302, 302, 200),
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
    client = _session_client(role, f) if _is_html_page(path) else _ROLE_CLIENTS[role](f)

    response = send(client, call)

    if expected == 302:
        assert response.status_code == 302, response.content[:500]
        assert response["Location"].startswith("/admin/login/"), response["Location"]
    elif expected >= 400:
        assert_error(response, expected)
    else:
        assert response.status_code == expected, response.content[:500]


# Everything the URLconf serves under these prefixes is in the matrix; the rest of /admin/ is
# Django's own admin site.
MATRIX_PREFIXES = ("/api/", "/admin/dashboard/")


def _api_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route the URLconf serves under the prefixes above, from
    the views' own handlers, so a new endpoint or method fails the completeness test until it is
    added to the matrix. A plain function view (the dashboard's) is counted as GET."""
    routes = set()

    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                path = re.sub(r"<(int|str):\w+>", "{id}", "/" + prefix + str(p.pattern))
                if not path.startswith(MATRIX_PREFIXES):
                    continue
                view = getattr(p.callback, "cls", None) or getattr(p.callback, "view_class", None)
                if view is None:
                    routes.add(("GET", path))
                    continue
                for method in view.http_method_names:
                    if method in ("options", "head") or not hasattr(view, method):
                        continue
                    routes.add((method.upper(), path))

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


# The agent job endpoints with a request that would succeed on the agent's own job, and the
# state the job must be in for it.
_AGENT_JOB_CALLS = {
    "detail": ("GET", "", None, "dispatched"),
    "commitment": ("POST", "/commitment", COMMITMENT, "dispatched"),
    "sketch": ("POST", "/sketch", SKETCH, "dispatched"),
    "challenge": ("GET", "/challenge", None, "challenged"),
    "answer": ("POST", "/answer", {"y": []}, "challenged"),
}


@pytest.mark.parametrize("owner", ["mallory", "bob"], ids=["mallorys-machine", "bobs-2nd-machine"])
@pytest.mark.parametrize("action", _AGENT_JOB_CALLS)
def test_agent_gets_404_on_another_machines_job_and_changes_nothing(
    bob_agent, other_machine_job, mallory_provider, owner, action
):
    method, suffix, body, state = _AGENT_JOB_CALLS[action]
    job = other_machine_job(owner, state)
    call = Call(method, f"/api/v1/agent/jobs/{job.pk}{suffix}", body)

    with nothing_written():
        response = send(bob_agent[1], call)

    assert_error(response, 404, "benchmarks_job_not_found")


def test_agent_poll_never_takes_another_machines_queued_job(
    bob_agent, other_machine_job, mallory_provider
):
    others = [other_machine_job(owner, "queued") for owner in ("mallory", "bob")]
    Machine.objects.filter(pk=bob_agent[0].pk).update(state=Machine.State.VERIFIED)

    with nothing_written():
        response = bob_agent[1].get("/api/v1/agent/jobs/next")

    assert response.status_code == 204, response.content[:500]
    assert {j.state for j in BenchmarkJob.objects.filter(pk__in=[o.pk for o in others])} == {
        "queued"
    }


@pytest.mark.parametrize(
    ("role", "expected", "code"),
    [
        ("renter", 409, "payments_not_deployed"),
        ("other_renter", 404, "payments_order_not_found"),
        ("owner", 404, "payments_order_not_found"),
        ("other_owner", 404, "payments_order_not_found"),
        ("staff", 404, "payments_order_not_found"),
        ("agent", 401, None),
        ("anonymous", 401, None),
    ],
)
def test_funding_without_deployed_contracts_is_409_to_the_renter_alone(
    request, chain_w3, alice_order, role, expected, code
):
    """Ownership is decided before the chain is asked: the 409 tells only alice anything."""
    client = _ROLE_CLIENTS[role](request.getfixturevalue)

    response = client.get(f"/api/v1/orders/{alice_order.pk}/funding")

    assert_error(response, expected, code)


@pytest.mark.parametrize("path", ["/admin/dashboard/", "/admin/dashboard/machines/{id}/"])
def test_a_staff_api_token_opens_no_dashboard_page(staff, bob_verified_machine, path):
    response = client_for(staff).get(path.format(id=bob_verified_machine.pk))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_dashboard_machine_page_of_an_unknown_machine_is_404_to_staff(staff):
    client = APIClient()
    client.force_login(staff)
    assert client.get("/admin/dashboard/machines/999999/").status_code == 404
