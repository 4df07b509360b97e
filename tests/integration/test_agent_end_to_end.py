"""The verification protocol with nothing stood in for: the provider agent is a real
`python -m workers.agent` subprocess talking HTTP to a live server, and the challenges and
verdicts come from a real Celery worker consuming a real Redis broker.

An honest CPU agent registers with a one-time token, passes the onboarding suite, and its owner
publishes a listing that the public search then shows with the measured TFLOP/s. A cheating
agent (the same CLI, with its kernel replaced by one that returns zeros) is caught on its first
job and its machine is suspended with the recorded reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import kombu.pools
import pytest
import requests

from marketplace.benchmarks.models import BenchmarkJob, BenchmarkSuite, Verdict
from marketplace.benchmarks.suites import suite_specs
from marketplace.celery import app as celery_app
from marketplace.payments import chain
from marketplace.providers.models import Machine
from tests.factories import UserFactory
from tests.integration.conftest import REPO_ROOT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# A broker of its own: a developer's `make run` worker on DB 0 must not eat this test's tasks.
TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/14")
# Seconds for a whole onboarding suite on a slow CI box (it takes well under 10 s on 2 cores).
AGENT_TIMEOUT = int(os.environ.get("AGENT_E2E_TIMEOUT", "240"))

CHEATING_AGENT = textwrap.dedent(
    """
    # A provider agent whose kernels return zeros of the right shape: it answers consistently
    # with that fake output, so only the server's recomputation can catch it.
    import sys

    import numpy as np

    from workers.agent import cli
    from workers.agent.runner import JobRunner

    _honest, _honest_sketch = JobRunner.compute, JobRunner.sketch


    def compute(self, spec, seed):
        return np.zeros_like(_honest(self, spec, seed))


    def sketch(self, spec, seed):
        return np.zeros_like(_honest_sketch(self, spec, seed))


    JobRunner.compute, JobRunner.sketch = compute, sketch
    sys.exit(cli.main())
    """
)


# --- fixtures ---------------------------------------------------------------------------------


def _drop_broker_connections() -> None:
    """Make the app look up its connection and producer pools again, for the broker URL now
    configured. Not app.close(): that also unregisters the app, and shared tasks imported later
    would never reach it. kombu keeps its pools per URL, process-wide, and the worker closes
    them when it stops: reset() empties that registry so every later lookup gets a live pool
    rather than "Acquire on closed pool"."""
    kombu.pools.reset()
    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@pytest.fixture
def celery_worker_thread():
    """A real Celery worker (in a thread of this process, so it shares the test database) that
    consumes the marketplace's tasks from a real Redis."""
    from celery.contrib.testing.worker import start_worker

    previous = (
        celery_app.conf.broker_url,
        celery_app.conf.task_always_eager,
        celery_app.conf.task_eager_propagates,
    )
    celery_app.conf.broker_url = TEST_BROKER_URL
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_eager_propagates = False
    _drop_broker_connections()
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            conn.default_channel.client.flushdb()  # stale messages from an earlier run
    except Exception as exc:  # noqa: BLE001 - any failure here means no usable Redis
        pytest.fail(f"no Redis answers at {TEST_BROKER_URL} ({exc}): run scripts/ensure_redis.sh")
    try:
        with start_worker(
            celery_app,
            pool="solo",
            concurrency=1,
            perform_ping_check=False,  # the ping needs a result backend; we run without one
            loglevel="WARNING",
            shutdown_timeout=60,
        ) as worker:
            yield worker
    finally:
        with celery_app.connection_for_write() as conn:
            conn.default_channel.client.flushdb()
        (
            celery_app.conf.broker_url,
            celery_app.conf.task_always_eager,
            celery_app.conf.task_eager_propagates,
        ) = previous
        _drop_broker_connections()


@pytest.fixture
def no_chain(settings):
    """A failed verification queues a slash on chain; with no node there it fails fast (and is
    retried later) instead of reaching a developer's Anvil on the default port."""
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"
    chain.set_web3(None)
    yield
    chain.set_web3(None)


@pytest.fixture
def market(live_server, celery_worker_thread, no_chain, settings):
    settings.BENCHMARK_SMALL_SUITES = True
    return live_server.url


class Processes:
    """Subprocesses this test started; each is killed by its own pid at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.running: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess:
        proc = self.start(args)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail(f"{args} did not finish in {timeout}s; output:\n{out}")
        return subprocess.CompletedProcess(args, proc.returncode, out, "")

    def start(self, args: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=self.tmp_path,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.running.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


# --- helpers ----------------------------------------------------------------------------------


def owner_session(base_url: str) -> tuple[requests.Session, int]:
    """A provider owner who signs in over HTTP and creates a provider; returns (session,
    provider id)."""
    UserFactory(username="olivia", role="provider_owner", password="s3cret-pass-123")
    http = requests.Session()
    response = http.post(
        f"{base_url}/api/v1/auth/tokens",
        json={"username": "olivia", "password": "s3cret-pass-123"},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    http.headers["Authorization"] = f"Token {response.json()['token']}"
    response = http.post(
        f"{base_url}/api/v1/providers",
        json={"name": "Olivia's rack", "wallet_address": "0x" + "ab" * 20},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return http, response.json()["id"]


def register_agent(
    processes: Processes, base_url: str, http: requests.Session, provider_id: int, name: str
) -> tuple[Path, Machine]:
    response = http.post(f"{base_url}/api/v1/providers/{provider_id}/registration-tokens", json={})
    assert response.status_code == 201, response.text
    config = processes.tmp_path / f"{name}.json"
    done = processes.run(
        [
            "-m",
            "workers.agent",
            "register",
            "--url",
            base_url,
            "--token",
            response.json()["registration_token"],
            "--name",
            name,
            "--config",
            str(config),
        ],
        timeout=60,
    )
    assert done.returncode == 0, done.stdout
    assert "registered machine" in done.stdout
    assert config.stat().st_mode & 0o077 == 0  # the credential is the owner's only
    machine = Machine.objects.get(name=name, provider_id=provider_id)
    assert machine.state == Machine.State.REGISTERED
    return config, machine


def agent_run_args(config: Path, max_jobs: int) -> list[str]:
    return [
        "run",
        "--config",
        str(config),
        "--max-jobs",
        str(max_jobs),
        "--poll-wait",
        "2",
        "--no-progress",
    ]


# --- the tests --------------------------------------------------------------------------------


def test_honest_agent_is_verified_and_its_listing_is_searchable(market, processes):
    base_url = market
    http, provider_id = owner_session(base_url)
    config, machine = register_agent(processes, base_url, http, provider_id, "honest-cpu")
    suite = suite_specs(accelerator_kind=machine.accelerator_kind, backends=machine.backends)
    assert machine.accelerator_kind == "cpu"
    assert {"kind": "matmul_chain", "precision": "fp32"}.items() <= suite[0].items()

    started = time.monotonic()
    done = processes.run(
        ["-m", "workers.agent", *agent_run_args(config, len(suite))], timeout=AGENT_TIMEOUT
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout
    assert done.stdout.count(": verified") == len(suite), done.stdout
    print(f"onboarding of {len(suite)} jobs through a live server took {elapsed:.1f}s")

    machine.refresh_from_db()
    assert machine.state == Machine.State.VERIFIED, machine.state_reason
    (onboarding,) = BenchmarkSuite.objects.filter(machine=machine)
    assert onboarding.state == BenchmarkSuite.State.PASSED
    jobs = list(BenchmarkJob.objects.filter(machine=machine).order_by("pk"))
    assert [(j.spec["kind"], j.precision) for j in jobs] == [
        (s["kind"], s["precision"]) for s in suite
    ]
    for job in jobs:
        assert job.state == BenchmarkJob.State.VERIFIED, (job.pk, job.outcome_reason)
        assert job.measured_tflops > 0 and job.report_hash and job.commitment_root
        assert job.checks, job.pk
        # Server-timed: dispatch to commitment, never shorter than the agent says it took.
        assert job.measured_seconds >= job.agent_seconds * 0.999
        assert job.measured_seconds <= (job.committed_at - job.dispatched_at).total_seconds() + 1e-6
    assert Verdict.objects.filter(machine=machine, passed=True).count() == len(suite)

    # The owner sees the scores over the API.
    response = http.get(f"{base_url}/api/v1/machines/{machine.pk}/benchmarks", timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "verified"
    # Scores are per kernel family (matmul, conv2d) and precision, whatever the protocol.
    assert {(s["kind"], s["precision"]) for s in body["scores"]} == {
        (j.kind, j.precision) for j in jobs
    }
    assert all(s["best_tflops"] > 0 and s["verified_jobs"] == 1 for s in body["scores"])
    assert body["reputation"]["passed_jobs"] == len(suite)
    assert body["reputation"]["pass_ratio"] == 1.0

    # The owner publishes a listing (prices and region: the hardware is what was verified);
    # anyone finds it in the search with the measured figure and the verified precisions.
    precisions = sorted({s["precision"] for s in suite})
    response = http.post(
        f"{base_url}/api/v1/listings",
        json={"machine_id": machine.pk, "region": "local", "price_per_hour": 36_000},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    listing_id = response.json()["id"]
    fp32 = next(j for j in jobs if j.kind == "matmul" and j.precision == "fp32")

    response = requests.get(f"{base_url}/api/v1/listings", params={"kind": "cpu"}, timeout=30)
    assert response.status_code == 200, response.text
    found = [row for row in response.json()["results"] if row["id"] == listing_id]
    assert len(found) == 1, response.json()
    listing = found[0]
    assert listing["machine_id"] == machine.pk
    assert listing["verified_tflops"] == pytest.approx(fp32.measured_tflops)
    assert listing["price_per_tflop_hour"] == round(36_000 / fp32.measured_tflops)
    assert sorted(listing["precisions"]) == precisions
    machine.refresh_from_db()
    assert machine.state == Machine.State.LISTED

    # The search's TFLOP/s filter sees it too.
    response = requests.get(
        f"{base_url}/api/v1/listings",
        params={"min_tflops": fp32.measured_tflops * 0.5},
        timeout=30,
    )
    assert listing_id in [row["id"] for row in response.json()["results"]]


def test_cheating_agent_is_caught_and_its_machine_suspended(market, processes):
    base_url = market
    http, provider_id = owner_session(base_url)
    config, machine = register_agent(processes, base_url, http, provider_id, "zeros-cpu")
    script = processes.tmp_path / "cheating_agent.py"
    script.write_text(CHEATING_AGENT)

    done = processes.run([str(script), *agent_run_args(config, 1)], timeout=AGENT_TIMEOUT)
    assert done.returncode == 0, done.stdout
    assert ": rejected" in done.stdout, done.stdout

    machine.refresh_from_db()
    assert machine.state == Machine.State.SUSPENDED
    first, *rest = BenchmarkJob.objects.filter(machine=machine).order_by("pk")
    assert (first.spec["kind"], first.precision) == ("matmul_chain", "fp32")
    assert first.state == BenchmarkJob.State.REJECTED
    # Zeros: every sampled unit is off by its whole scale, i.e. not computed.
    assert first.outcome_reason == "row_mismatch"
    assert first.report_hash and first.checks
    assert machine.state_reason == f"benchmark job {first.pk} rejected: {first.outcome_reason}"
    # The rest of its onboarding suite ended without further blame; nothing is left to run.
    assert rest and all(
        (j.state, j.outcome_reason) == (BenchmarkJob.State.EXPIRED, "suite_failed") for j in rest
    )
    (onboarding,) = BenchmarkSuite.objects.filter(machine=machine)
    assert onboarding.state == BenchmarkSuite.State.FAILED
    assert onboarding.outcome_reason == first.outcome_reason
    verdict = Verdict.objects.get(machine=machine)
    assert (verdict.passed, verdict.key, verdict.job_id) == (False, str(first.pk), first.pk)
    assert verdict.report_hash == "0x" + first.report_hash

    # Its owner sees why, and the machine cannot be listed.
    response = http.get(f"{base_url}/api/v1/machines/{machine.pk}", timeout=30)
    assert response.status_code == 200
    assert response.json()["state"] == "suspended"
    assert response.json()["state_reason"] == machine.state_reason
    response = http.post(
        f"{base_url}/api/v1/listings",
        json={"machine_id": machine.pk, "region": "local", "price_per_hour": 36_000},
        timeout=30,
    )
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "listings_machine_not_verified"

    # Its agent gets no more work: a suspended machine is dispatched nothing.
    credential = json.loads(config.read_text())["credential"]
    response = requests.get(
        f"{base_url}/api/v1/agent/jobs/next",
        params={"wait": 0},
        headers={"Authorization": f"Token {credential}"},
        timeout=30,
    )
    assert response.status_code == 204, response.text
