"""A real gunicorn (the project's gunicorn.conf.py, 2 workers, as the Procfile runs it) serving
this test session's database, for the hostile-traffic tests: what a stranger sends must never
take a worker down, and every answer under /api/ is the error shape.

The objects of the API tests (bob's machines and jobs, alice's orders) are re-exported so that
every route can be called with an otherwise valid request by a caller it would accept."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.api.conftest import (  # noqa: F401 - fixtures re-exported for tests/hostile
    alice_active_order,
    alice_order,
    bob_agent,
    bob_challenged_job,
    bob_dispatched_job,
    bob_verified_machine,
)
from tests.api.helpers import COMMITMENT
from tests.faults.conftest import database_url
from tests.integration.conftest import REPO_ROOT, free_port

WORKERS = 2


def children_of(pid: int) -> set[int]:
    """Live child pids of `pid`, from /proc (psutil is not a dependency)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # "pid (comm) state ppid ...": comm may contain spaces, so split after its ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


class Gunicorn:
    """A gunicorn master we started; stopped by its own pid at teardown."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.workers: set[int] = set()

    def env(self) -> dict[str, str]:
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

    def start(self) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(REPO_ROOT / "gunicorn.conf.py"),
                "marketplace.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(WORKERS),
                "--threads",
                "4",
                "--timeout",
                "60",
            ],
            cwd=REPO_ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}: {self.log()}")
            try:
                ready = requests.get(f"{self.url}/api/v1/health", timeout=5).status_code == 200
            except requests.RequestException:
                ready = False
            if ready and len(children_of(self.proc.pid)) == WORKERS:
                self.workers = children_of(self.proc.pid)
                return
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer on {self.url}: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def assert_workers_unchanged(self) -> None:
        """No worker died (and was replaced) since start: same pids, master alive."""
        assert self.proc is not None and self.proc.poll() is None, self.log()
        assert children_of(self.proc.pid) == self.workers, self.log()
        assert "SIGSEGV" not in self.log() and "was sent" not in self.log(), self.log()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: gunicorn stops its workers itself
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, tmp_path_factory):
    """Started once per module, after the test database exists (its URL is only known then)."""
    server = Gunicorn(tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
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
