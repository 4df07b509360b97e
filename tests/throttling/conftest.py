"""A real gunicorn (2 workers, as the Procfile runs it) on a free port, using this test's database
and this test's Redis; always stopped by its own pid."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from tests.faults.conftest import database_url
from tests.web_server import GunicornServer

# A long period: a test's requests all fall in one window, however slow the machine.
AUTH_LIMIT = 5


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        # The same Redis database as this test process: the autouse cache.clear() gives every
        # test a fresh count, and the test may read what the workers stored.
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_DEBUG": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "NUM_PROXIES": "0",
        "THROTTLE_AUTH": f"{AUTH_LIMIT}/hour",
        "FAST_PASSWORD_HASHER": "1",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CACHE_URL", None)
    server = GunicornServer(env, tmp_path)
    server.start()
    yield server
    server.stop()
