"""Root conftest.py of a mutation run's copy (scripts/mutation.py puts it there; never in the repo).

mutmut runs each mutant's tests in a fresh pytest session, and pytest-django would build the test
database (every migration) in each one: 1.4 s of a mutant's ~2 s. Here the database is built once
(under a lock, by whichever session comes first: mutmut's serial stats run), and every later
session works on its own copy of that file. A copy per process also keeps two mutants tested at
once (--max-children 2) off each other's database: with one shared file, one session's
create-or-destroy would break the other's tests and count as a kill.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker):
    from django.conf import settings
    from django.db import connections
    from django.test.utils import setup_databases

    template = Path(os.environ["MUTATION_DB_TEMPLATE"])
    mine = template.with_name(f"mutant-{os.getpid()}.sqlite3")
    config = settings.DATABASES["default"]
    with django_db_blocker.unblock():
        with open(template.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not template.exists():
                building = template.with_name(f"building-{os.getpid()}.sqlite3")
                config["TEST"]["NAME"] = str(building)
                setup_databases(
                    verbosity=0, interactive=False, aliases={"default"}, serialized_aliases=set()
                )
                connections["default"].close()
                os.replace(building, template)
        shutil.copyfile(template, mine)
        # What create_test_db does once the database exists: point the connection at it.
        config["TEST"]["NAME"] = config["NAME"] = str(mine)
        connections["default"].settings_dict["NAME"] = str(mine)
        connections["default"].close()
    yield
    with django_db_blocker.unblock():
        connections["default"].close()
    mine.unlink(missing_ok=True)


def _transactional(item) -> bool:
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", ())
    return bool(
        (marker and marker.kwargs.get("transaction"))
        or "transactional_db" in fixtures
        or "live_server" in fixtures
    )


def pytest_collection_modifyitems(items):
    """A mutant's tests run with -x: it is killed by the first test that fails, so the quickest
    run first (by mutmut's recorded durations), and those that flush the database after them
    (transactional, with threads) last. The same tests run; a survivor runs them all."""
    stats = Path("mutmut-stats.json")
    durations = {}
    if stats.exists():
        import json

        durations = json.loads(stats.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: (_transactional(item), durations.get(item.nodeid, 1.0)))
