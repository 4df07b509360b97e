"""Missing, malformed, invalid and revoked credentials, and each kind of credential on the other
kind's endpoints: always 401 in the error shape, and nothing written."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.accounts.models import ApiToken
from marketplace.providers.models import AgentCredential
from tests.api.endpoints import ENDPOINTS, send
from tests.api.helpers import assert_error, nothing_written

pytestmark = pytest.mark.django_db

HUMAN_WRITE_ENDPOINTS = [
    ("POST", "/api/v1/providers"),
    ("POST", "/api/v1/providers/{id}/registration-tokens"),
    ("POST", "/api/v1/listings"),
    ("PATCH", "/api/v1/listings/{id}/prices"),
    ("POST", "/api/v1/listings/{id}/status"),
    ("POST", "/api/v1/orders"),
    ("POST", "/api/v1/orders/{id}/cancel"),
    ("POST", "/api/v1/orders/{id}/stop"),
    ("POST", "/api/v1/machines/{id}/suspend"),
    ("DELETE", "/api/v1/auth/tokens/current"),
]
AGENT_ENDPOINTS = [
    ("POST", "/api/v1/agent/heartbeat"),
    ("GET", "/api/v1/agent/machine"),
    ("GET", "/api/v1/agent/jobs/next"),
    ("GET", "/api/v1/agent/jobs/{id}"),
    ("POST", "/api/v1/agent/jobs/{id}/commitment"),
    ("POST", "/api/v1/agent/jobs/{id}/sketch"),
    ("GET", "/api/v1/agent/jobs/{id}/challenge"),
    ("POST", "/api/v1/agent/jobs/{id}/answer"),
]


def _revoked_user_token(f):
    token, raw = _user_token(f)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    return raw


def _user_token(f, who="bob"):
    from marketplace.accounts.services import api_token_create

    return api_token_create(user=f(who))


def _inactive_user_token(f):
    raw = _user_token(f)[1]
    bob = f("bob")
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    return raw


def _agent_credential(f):
    return f("bob_agent")[1]._credentials["HTTP_AUTHORIZATION"].split()[1]


def _revoked_agent_credential(f):
    raw = _agent_credential(f)
    AgentCredential.objects.update(revoked_at=timezone.now())
    return raw


# name -> (Authorization header built from fixtures, expected error code on a human endpoint)
BAD_HUMAN_AUTH = {
    "none": (lambda f: None, "not_authenticated"),
    "unknown-user-token": (lambda f: "Token mkt_not-a-real-token", "authentication_failed"),
    "revoked-user-token": (lambda f: f"Token {_revoked_user_token(f)}", "authentication_failed"),
    "inactive-user": (lambda f: f"Token {_inactive_user_token(f)}", "authentication_failed"),
    "keyword-without-key": (lambda f: "Token", "authentication_failed"),
    "key-with-spaces": (lambda f: "Token mkt_a mkt_b", "authentication_failed"),
    "bearer-unknown": (lambda f: "Bearer mkt_not-a-real-token", "authentication_failed"),
    "basic-auth": (lambda f: "Basic Ym9iOmNvcnJlY3QgaG9yc2U=", "not_authenticated"),
    # Says what is wrong: a valid credential of the wrong kind (issue 13).
    "agent-credential": (
        lambda f: f"Token {_agent_credential(f)}",
        "agent_credential_on_user_api",
    ),
    "raw-key-without-keyword": (lambda f: _user_token(f)[1], "not_authenticated"),
}

BAD_AGENT_AUTH = {
    "none": (lambda f: None, "not_authenticated"),
    "user-token": (lambda f: f"Token {_user_token(f)[1]}", "authentication_failed"),
    "staff-token": (lambda f: f"Token {_user_token(f, 'staff')[1]}", "authentication_failed"),
    "unknown-agent-credential": (lambda f: "Token agt_not-a-credential", "authentication_failed"),
    "revoked-agent-credential": (
        lambda f: f"Token {_revoked_agent_credential(f)}",
        "authentication_failed",
    ),
    "keyword-without-key": (lambda f: "Token", "authentication_failed"),
    "registration-token": (
        lambda f: f"Token {f('registration_token_raw')}",
        "authentication_failed",
    ),
}


@pytest.fixture
def registration_token_raw(bob_provider):
    from marketplace.providers.services import registration_token_create

    return registration_token_create(provider=bob_provider, user=bob_provider.owner)[1]


def _client(header):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    return client


@pytest.mark.parametrize("endpoint", HUMAN_WRITE_ENDPOINTS, ids=" ".join)
@pytest.mark.parametrize("auth", BAD_HUMAN_AUTH)
def test_human_endpoint_refuses_bad_credentials_with_401(request, endpoint, auth):
    f = request.getfixturevalue
    f("bob_agent")  # bob's machine is registered, so an agent credential exists
    call = ENDPOINTS[endpoint](f)
    make_header, code = BAD_HUMAN_AUTH[auth]
    client = _client(make_header(f))
    with nothing_written():
        response = send(client, call)
    assert_error(response, 401, code)
    assert response.headers["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("endpoint", AGENT_ENDPOINTS, ids=" ".join)
@pytest.mark.parametrize("auth", BAD_AGENT_AUTH)
def test_agent_endpoint_refuses_anything_but_a_live_agent_credential(request, endpoint, auth):
    f = request.getfixturevalue
    f("bob_agent")
    call = ENDPOINTS[endpoint](f)
    make_header, code = BAD_AGENT_AUTH[auth]
    client = _client(make_header(f))
    with nothing_written():
        response = send(client, call)
    assert_error(response, 401, code)


def test_heartbeat_with_a_live_agent_credential_moves_the_heartbeat(bob_agent):
    machine, client = bob_agent
    before = machine.last_heartbeat_at
    response = client.post("/api/v1/agent/heartbeat")
    assert response.status_code == 200
    assert response.json()["machine_id"] == machine.pk
    # Buffered in Redis; the database has it once beat flushes (marketplace/providers/heartbeats).
    from marketplace.providers.heartbeats import heartbeats_flush

    assert heartbeats_flush() == 1
    machine.refresh_from_db()
    assert machine.last_heartbeat_at > before


@pytest.mark.parametrize("path", ["/api/v1/listings", "/api/v1/listings/{id}"])
def test_public_search_ignores_a_foreign_credential_but_refuses_a_bad_user_token(listing, path):
    path = path.format(id=listing.pk)
    agent_like = _client("Token agt_not-a-credential").get(path)
    assert agent_like.status_code == 200
    bad_user = _client("Token mkt_not-a-real-token").get(path)
    assert_error(bad_user, 401, "authentication_failed")
