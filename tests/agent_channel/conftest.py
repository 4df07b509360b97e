"""The agent channel as `make run` serves it: the Procfile's `channel` command (uvicorn with
marketplace/asgi.py), run as a subprocess on a free port against this test session's database
and Redis, always stopped by its own process group."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings

from marketplace.benchmarks.wakeups import channel_name
from marketplace.providers import heartbeats
from marketplace.providers.models import Machine, Provider
from marketplace.providers.services import machine_register, registration_token_create
from tests.factories import UserFactory
from tests.hostile.conftest import server_env
from tests.integration.conftest import REPO_ROOT, free_port
from tests.web_server import children_of

CPU_HARDWARE = {
    "accelerators": [],
    "cpu": {"vendor": "AuthenticAMD", "model": "AMD EPYC", "cores": 2},
    "ram_gib": 8,
    "backends": ["numpy"],
}
SMALL = {"kind": "matmul", "n": 64, "precision": "fp32"}


def procfile_channel_command(port: int, workers: int) -> list[str]:
    """The `channel:` line of the Procfile, with this test's interpreter, port and workers."""
    line = next(
        line
        for line in (REPO_ROOT / "Procfile").read_text().splitlines()
        if line.startswith("channel:")
    )
    command = line.removeprefix("channel:").strip().replace("${AGENT_PORT:-8001}", str(port))
    args = shlex.split(command)
    assert args[0].endswith("uvicorn"), args
    args[args.index("--workers") + 1] = str(workers)
    return [sys.executable, "-m", "uvicorn", *args[1:]]


class ChannelServer:
    def __init__(self, logdir: Path, *, workers: int = 1, env: dict | None = None) -> None:
        self.logdir = logdir
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**server_env(), "REDIS_URL": settings.REDIS_URL, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.logdir / f"channel-{self.port}-{self.starts}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            procfile_channel_command(self.port, self.workers),
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the channel exited with {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(f"{self.url}/api/v1/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the channel did not answer on {self.url}: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def threads(self) -> int:
        """Threads of the serving process (the one worker, or the master when it serves)."""
        assert self.proc is not None
        pids = children_of(self.proc.pid) or {self.proc.pid}
        total = 0
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
        return total

    def log(self) -> str:
        path = self.logdir / f"channel-{self.port}-{self.starts}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@pytest.fixture
def channel(django_db_setup, tmp_path):
    server = ChannelServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_channel(django_db_setup, tmp_path):
    started: list[ChannelServer] = []

    def make(**kwargs) -> ChannelServer:
        server = ChannelServer(tmp_path, **kwargs)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(heartbeats.KEY)  # machine ids restart with every test database flush
    yield client
    client.delete(heartbeats.KEY)


@pytest.fixture
def make_agent(redis_client, settings):
    """A registered machine and an HTTP session holding its agent credential. One owner
    registers the whole simulated fleet here: not an abuse to refuse."""
    settings.REGISTRATION_TOKENS_PER_DAY = 10**6
    owner = UserFactory(role="provider_owner")
    provider = Provider.objects.create(owner=owner, name="bob", wallet_address="0x" + "ab" * 20)
    count = 0

    def make(state: str = Machine.State.VERIFIED) -> tuple[Machine, requests.Session]:
        nonlocal count
        count += 1
        _, raw = registration_token_create(provider=provider, user=owner)
        machine, credential = machine_register(
            registration_token=raw, name=f"m{count}", hardware=CPU_HARDWARE, agent_version="t"
        )
        Machine.objects.filter(pk=machine.pk).update(state=state)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {credential}"
        return machine, session

    return make


def wait_until(condition, timeout: float = 60, what: str = "") -> None:
    """Polls the test's own condition (never the server's timing) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what or condition}")
        time.sleep(0.05)


def subscribers(client: redis.Redis, machine_id: int) -> int:
    return dict(client.pubsub_numsub(channel_name(machine_id)))[channel_name(machine_id).encode()]
