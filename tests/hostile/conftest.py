"""A real gunicorn (the project's gunicorn.conf.py, 2 workers, as the Procfile runs it) serving
this test session's database, for the hostile-traffic tests: what a stranger sends must never
take a worker down, and every answer under /api/ is the error shape.

The objects of the API tests (bob's machines and jobs, alice's orders) are re-exported so that
every route can be called with an otherwise valid request by a caller it would accept."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from tests.api.conftest import (  # noqa: F401 - fixtures re-exported for tests/hostile
    alice_active_order,
    alice_order,
    bob_agent,
    bob_challenged_job,
    bob_dispatched_chain_job,
    bob_dispatched_job,
    bob_verified_machine,
    published_report,
)
from tests.api.helpers import COMMITMENT
from tests.faults.conftest import database_url
from tests.integration.conftest import free_port
from tests.web_server import GunicornServer


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "marketplace.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "DATABASE_URL": database_url(),
            # No connection outlives a request: the test database is flushed between tests
            # and dropped at the end of the session.
            "DATABASE_CONN_MAX_AGE": "0",
            # Nothing here talks to a chain; never reach a developer's Anvil by accident.
            "CHAIN_RPC_URL": f"http://127.0.0.1:{free_port()}",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, tmp_path_factory):
    """Started once per module, after the test database exists (its URL is only known then)."""
    server = GunicornServer(server_env(), tmp_path_factory.mktemp("gunicorn"))
    server.start()
    yield server
    server.stop()


# Big enough that an honest answer may run to ~400 KB, so the answer route's size cap lets a
# 200 KB nested body through to the parser (JOB_SPEC's cap, 5 KB, would refuse it unread).
BIG_SPEC = {"kind": "matmul", "n": 1024, "precision": "fp32"}


@pytest.fixture
def bob_challenged_big_job(request):
    """A challenged n=1024 job on bob's agent's machine, driven through the real services."""
    from marketplace.benchmarks.services import (
        benchmark_commit,
        benchmark_dispatch_next,
        benchmark_issue_challenge,
        benchmark_job_create,
    )
    from marketplace.providers.models import Machine

    machine, _ = request.getfixturevalue("bob_agent")
    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.VERIFIED)
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=BIG_SPEC)
    assert benchmark_dispatch_next(machine_id=machine.pk).pk == job.pk
    benchmark_commit(job_id=job.pk, machine_id=machine.pk, payload=COMMITMENT)
    return benchmark_issue_challenge(job_id=job.pk)
