"""Real processes for the fault tests, each started on a free port and always killed at
teardown by its own pid: a Redis broker of our own (so restarting it touches nobody else's
queues), an Anvil node that keeps its state across restarts, and Celery worker subprocesses
that use this test's database."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from django.db import connection
from kombu import pools

from marketplace.celery import app as celery_app
from tests.integration.conftest import REPO_ROOT, Node, chain_point_at, free_port

REDIS_DB = 13


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/{REDIS_DB}"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Without persistence: every queued and unacked task is lost."""
        self.stop()
        self.start()


def database_url() -> str:
    """The database this test uses (pytest-django's test database), for a subprocess."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Workers:
    """Celery worker subprocesses (solo pool, one task at a time)."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []
        self.started = 0

    def start(self) -> subprocess.Popen:
        self.started += 1
        log = open(self.logdir / f"worker-{self.started}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                str(REPO_ROOT / ".venv" / "bin" / "celery"),
                "-A",
                "marketplace",
                "worker",
                "-Q",
                "celery",
                "-c",
                "1",
                "-P",
                "solo",
                "-l",
                "warning",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"fault{self.started}@%h",
            ],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill_all(self) -> None:
        for proc in self.procs:
            self.kill(proc)

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]


@pytest.fixture
def broker(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    old_url = celery_app.conf.broker_url

    def use(url):
        # Connections and producers to the old broker must not be reused.
        if celery_app._pool is not None:
            celery_app._pool.force_close_all()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        # kombu's registry keeps one pool per broker URL, closed ones included: without a
        # reset, a later test on the old URL acquires from the pool closed here.
        pools.reset()
        celery_app.conf.broker_url = url

    use(server.url)
    with celery_app.producer_or_acquire() as producer:
        assert f":{server.port}/" in producer.connection.as_uri(), producer.connection.as_uri()
    yield server
    use(old_url)
    server.stop()


@pytest.fixture
def fault_anvil(tmp_path, settings):
    node = Node("anvil", tmp_path)
    node.start()
    chain_point_at(settings, node)
    yield node
    node.stop()


@pytest.fixture
def workers(broker, fault_anvil, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": broker.url,
        "CHAIN_RPC_URL": fault_anvil.url,
        "CHAIN_CONFIRMATIONS": "1",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    pool = Workers(env, tmp_path)
    yield pool
    pool.kill_all()
