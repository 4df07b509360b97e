"""A real gunicorn for the tests that need one: the project's gunicorn.conf.py, 2 workers with 4
threads as the Procfile runs it, on a free port, in its own process group, always stopped by its
own pid. The access log names the worker that served each request; the error log of each start
is kept for assertions and failure messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.integration.conftest import REPO_ROOT, free_port


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


class GunicornServer:
    def __init__(self, env: dict[str, str], logdir: Path, *, workers: int = 2) -> None:
        self.env = env
        self.logdir = logdir
        self.worker_count = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.workers: set[int] = set()
        self.starts = 0
        self.log_mark = 0

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(REPO_ROOT / "gunicorn.conf.py"),
            "marketplace.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.worker_count),
            "--threads",
            "4",
            "--timeout",
            "60",
            # The serving worker's pid on each line: shows which worker answered what.
            "--access-logfile",
            str(self.logdir / "access.log"),
            "--access-logformat",
            "%(p)s %(s)s",
            "--error-logfile",
            str(self.logdir / f"error-{self.starts}.log"),
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
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}: {self.log()}")
            try:
                ready = (
                    requests.get(
                        f"{self.url}/api/v1/health", headers={"Connection": "close"}, timeout=5
                    ).status_code
                    == 200
                )
            except requests.RequestException:
                ready = False
            if ready and len(children_of(self.proc.pid)) == self.worker_count:
                self.workers = children_of(self.proc.pid)
                self.log_mark = len(self._access_log())
                return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer on {self.url}: {self.log()}")

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

    def log(self) -> str:
        path = self.logdir / f"error-{self.starts}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def assert_workers_unchanged(self) -> None:
        """No worker died (and was replaced) since start: same pids, master alive."""
        assert self.proc is not None and self.proc.poll() is None, self.log()
        assert children_of(self.proc.pid) == self.workers, self.log()
        assert "SIGSEGV" not in self.log() and "was sent" not in self.log(), self.log()

    def worker_pids_that_answered(self) -> set[str]:
        """The workers that served requests after start() returned."""
        return {line.split()[0] for line in self._access_log()[self.log_mark :]}

    def _access_log(self) -> list[str]:
        path = self.logdir / "access.log"
        return path.read_text().splitlines() if path.exists() else []
