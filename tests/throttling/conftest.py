"""A real gunicorn (2 workers, as the Procfile runs it) on a free port, using this test's database
and this test's Redis; always stopped by its own pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.faults.conftest import database_url
from tests.integration.conftest import REPO_ROOT, free_port

# A long period: a test's requests all fall in one window, however slow the machine.
AUTH_LIMIT = 5


class Gunicorn:
    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_mark = 0

    def command(self) -> list[str]:
        config = REPO_ROOT / "gunicorn.conf.py"
        return [
            str(REPO_ROOT / ".venv" / "bin" / "gunicorn"),
            *(["-c", str(config)] if config.exists() else []),
            "marketplace.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "2",
            "--threads",
            "4",
            # The serving worker's pid on each line: shows which worker answered what.
            "--access-logfile",
            str(self.logdir / "access.log"),
            "--access-logformat",
            "%(p)s %(s)s",
            "--error-logfile",
            str(self.logdir / f"error-{self.starts + 1}.log"),
        ]

    def start(self) -> None:
        self.starts += 1
        self.log_mark = len(self._access_log())
        self.proc = subprocess.Popen(
            self.command(),
            cwd=REPO_ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Ready when both workers have answered (each loads the application after it forks).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.logdir / f"error-{self.starts}.log").read_text()
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{log}")
            try:
                requests.get(
                    f"{self.url}/api/v1/health", headers={"Connection": "close"}, timeout=5
                )
            except requests.RequestException:
                time.sleep(0.1)
                continue
            if len(self._answered(since=self.log_mark)) == 2:
                self.log_mark = len(self._access_log())
                return
        raise RuntimeError("gunicorn's two workers did not both answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the master and its workers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _access_log(self) -> list[str]:
        path = self.logdir / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def _answered(self, *, since: int) -> set[str]:
        return {line.split()[0] for line in self._access_log()[since:]}

    def worker_pids_that_answered(self) -> set[str]:
        """The workers that served requests after start() returned."""
        return self._answered(since=self.log_mark)


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
    server = Gunicorn(env, tmp_path)
    server.start()
    yield server
    server.stop()
