"""Real threads against one order or job. Each thread has its own database connection (closed
when it ends); a barrier releases them together."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tests.integration.conftest import Node, chain_point_at


def race(*calls, timeout: float = 60):
    """Runs each zero-argument callable in its own thread, all released at once. Returns a list
    of ("ok", result) or ("error", exception), in the order given."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(i, fn):
        try:
            barrier.wait(timeout=10)
            outcomes[i] = ("ok", fn())
        except BaseException as exc:  # reported to the test, which asserts on it
            outcomes[i] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    return outcomes


@pytest.fixture(scope="module")
def anvil(tmp_path_factory):
    node = Node("anvil", tmp_path_factory.mktemp("anvil"))
    node.start()
    yield node
    node.stop()


@pytest.fixture
def live_anvil(anvil, settings):
    yield chain_point_at(settings, anvil)
