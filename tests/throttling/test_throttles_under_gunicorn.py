"""The auth throttle (sign-up, login, agent registration) holds on a real gunicorn with 2 workers:
one count across workers, whatever X-Forwarded-For says, and across a restart.

Every guess is a wrong login on a fresh connection, so the kernel hands them to both workers (the
access log shows which worker served each). The limit is 5 per hour (tests/throttling/conftest.py):
the first 5 guesses get 401 "wrong password", every later one 429 until the hour is over."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.throttling.conftest import AUTH_LIMIT

pytestmark = [pytest.mark.integration]

EXTRA = 7


def wrong_login(server, *, forwarded_for: str | None = None) -> int:
    headers = {"Connection": "close"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    response = requests.post(
        f"{server.url}/api/v1/auth/tokens",
        json={"username": "alice", "password": "guess-number-n"},
        headers=headers,
        timeout=30,
    )
    if response.status_code == 429:
        assert response.json()["error"]["code"] == "throttled"
        assert int(response.headers["Retry-After"]) > 0
    return response.status_code


def random_address() -> str:
    return ".".join(str(random.randint(1, 254)) for _ in range(4))


def test_auth_limit_is_one_count_across_two_workers(gunicorn):
    # Which worker accepts a connection is the kernel's choice, and an idle machine may hand a
    # dozen in a row to one of them: keep guessing until both have answered (a per-process
    # count would then have let more than the limit through).
    statuses = [wrong_login(gunicorn) for _ in range(AUTH_LIMIT + EXTRA)]
    while len(gunicorn.worker_pids_that_answered()) < 2 and len(statuses) < 200:
        statuses.append(wrong_login(gunicorn))

    assert len(gunicorn.worker_pids_that_answered()) == 2, "one worker served every guess"
    assert statuses == [401] * AUTH_LIMIT + [429] * (len(statuses) - AUTH_LIMIT)


def test_rotating_x_forwarded_for_does_not_reset_the_count(gunicorn):
    statuses = [
        wrong_login(gunicorn, forwarded_for=f"{random_address()}, {random_address()}")
        for _ in range(AUTH_LIMIT + EXTRA)
    ]

    assert statuses == [401] * AUTH_LIMIT + [429] * EXTRA


def test_a_gunicorn_restart_keeps_the_count(gunicorn):
    assert [wrong_login(gunicorn) for _ in range(AUTH_LIMIT)] == [401] * AUTH_LIMIT

    gunicorn.restart()

    assert [wrong_login(gunicorn) for _ in range(EXTRA)] == [429] * EXTRA


def test_a_concurrent_burst_passes_exactly_the_limit(gunicorn):
    """8 threads per server (2 workers x 4): many guesses are counted at the same moment, and
    none of their counts may be lost."""
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda _: wrong_login(gunicorn), range(6 * AUTH_LIMIT)))

    assert statuses.count(401) == AUTH_LIMIT
    assert statuses.count(429) == 5 * AUTH_LIMIT
