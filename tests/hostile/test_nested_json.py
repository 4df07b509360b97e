"""Issue 8 §1: a deeply nested JSON body killed a gunicorn worker. web3 (py_ecc) raises the
recursion limit to 100,000, so the C decoder recursed until the thread's stack overflowed
(SIGSEGV) instead of raising RecursionError. Every write route, called by a caller it would
accept, must now answer 4xx with the error shape, and no worker may die."""

import gzip
import re
import subprocess
import sys
import textwrap

import pytest
import requests

from marketplace.accounts.services import api_token_create
from tests.api.endpoints import ENDPOINTS
from tests.api.test_authorization_matrix import MATRIX, ROLES, _api_routes
from tests.integration.conftest import REPO_ROOT

# ~200 KB each: 100,000 levels of arrays, 40,000 levels of objects.
NESTED_LIST = b"[" * 100_000 + b"]" * 100_000
NESTED_OBJECT = b'{"a":' * 40_000 + b"0" + b"}" * 40_000
NESTED = {"list": NESTED_LIST, "object": NESTED_OBJECT}

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Every write route the URLconf serves under /api/, found by walking it: a new route is covered
# without editing this file.
WRITE_ROUTES = sorted(
    (method, path)
    for method, path in _api_routes()
    if method in WRITE_METHODS and path.startswith("/api/")
)

_ROLE_USERS = {
    "renter": "alice",
    "other_renter": "carol",
    "owner": "bob",
    "other_owner": "mallory",
    "staff": "staff",
}


def _accepted_role(method: str, path: str) -> str:
    """The first role the authorization matrix lets through, so the body reaches the parser."""
    statuses = MATRIX[(method, path)]
    return next(role for role, status in zip(ROLES, statuses, strict=True) if status < 400)


def _auth_headers(role: str, f) -> dict[str, str]:
    if role == "anonymous":
        return {}
    if role == "agent":
        _, client = f("bob_agent")
        return {"Authorization": client._credentials["HTTP_AUTHORIZATION"]}
    _, raw = api_token_create(user=f(_ROLE_USERS[role]))
    return {"Authorization": f"Token {raw}"}


def _http_headers(meta: dict[str, str]) -> dict[str, str]:
    """The test client's META-style headers (HTTP_IDEMPOTENCY_KEY) as HTTP headers."""
    return {k.removeprefix("HTTP_").replace("_", "-").title(): v for k, v in meta.items()}


def assert_error_shape(response: requests.Response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "detail"}, body
    return body["error"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES, ids=[" ".join(r) for r in WRITE_ROUTES])
def test_nested_body_on_every_write_route_is_a_400_and_no_worker_dies(
    request, gunicorn, method, path
):
    f = request.getfixturevalue
    call = ENDPOINTS[(method, path)](f)
    headers = {
        **_auth_headers(_accepted_role(method, path), f),
        **_http_headers(call.headers),
        "Content-Type": "application/json",
    }

    for shape, body in NESTED.items():
        response = requests.request(
            method, gunicorn.url + call.path, data=body, headers=headers, timeout=60
        )
        error = assert_error_shape(response, 400)
        assert error["code"] == "malformed_request", (shape, error)

    gunicorn.assert_workers_unchanged()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("route", "job_fixture"),
    [("commitment", "bob_dispatched_job"), ("answer", "bob_challenged_big_job")],
)
@pytest.mark.parametrize("shape", NESTED)
def test_gzip_nested_body_on_agent_routes_rejects_the_job_and_no_worker_dies(
    request, gunicorn, route, job_fixture, shape
):
    """The agent routes read their body themselves (size-capped, gzip allowed): a nested answer
    is that job's malformed answer, a 4xx to the agent, and the worker lives on. (A commitment
    is capped at 1 KB, so there the cap refuses it; the answer's cap lets it reach the parser.)"""
    job = request.getfixturevalue(job_fixture)
    headers = _auth_headers("agent", request.getfixturevalue)

    response = requests.post(
        f"{gunicorn.url}/api/v1/agent/jobs/{job.pk}/{route}",
        data=gzip.compress(NESTED[shape]),
        headers={**headers, "Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=60,
    )

    error = assert_error_shape(response)
    assert error["code"] == "benchmarks_job_rejected", error
    assert error["detail"]["reason"] == f"malformed_{route}", error
    if route == "answer":
        assert "nested" in error["detail"]["detail"], error  # parsed, not refused for size
    gunicorn.assert_workers_unchanged()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_unauthenticated_nested_signup_storm_leaves_the_workers_alone(gunicorn):
    """The issue's attack: no account, 20 nested bodies in a row at the open signup route."""
    for i in range(20):
        body = NESTED_LIST if i % 2 else NESTED_OBJECT
        response = requests.post(
            f"{gunicorn.url}/api/v1/auth/signup",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert_error_shape(response, 400)
    assert requests.get(f"{gunicorn.url}/api/v1/health", timeout=10).status_code == 200
    gunicorn.assert_workers_unchanged()


def test_django_setup_puts_back_a_recursion_limit_a_thread_stack_can_hold():
    """The one-line reproduction from the issue, in a fresh process after django.setup(): the
    decoder now raises RecursionError (the process lives) instead of SIGSEGV."""
    code = textwrap.dedent(
        """
        import json, sys, threading
        import django
        django.setup()
        import web3  # noqa: F401 - raised the limit to 100,000 before the fix
        outcome = []
        def parse():
            try:
                json.loads("[" * 100000 + "]" * 100000)
            except RecursionError:
                outcome.append("RecursionError")
        thread = threading.Thread(target=parse)
        thread.start()
        thread.join()
        print(sys.getrecursionlimit(), outcome)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    limit, outcome = re.match(r"(\d+) (.*)", result.stdout.strip()).groups()
    assert int(limit) <= 3000 and outcome == "['RecursionError']", result.stdout
