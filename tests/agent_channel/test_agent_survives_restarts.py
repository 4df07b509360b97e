"""A real agent (`python -m workers.agent run`, a subprocess) on the agent channel (the Procfile's
uvicorn, a subprocess) with a real Celery worker issuing challenges and verdicts: the agent
completes a job across a crash and restart of the web process, while it waits for work and
while it holds a job."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from django.conf import settings

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import benchmark_job_create
from tests.agent_channel.conftest import SMALL, subscribers, wait_until
from tests.integration import test_agent_end_to_end as e2e
from tests.integration.conftest import REPO_ROOT
from tests.integration.test_agent_end_to_end import (  # noqa: F401 - fixtures used here
    celery_worker_thread,
    no_chain,
)
from workers.agent.config import config_save

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

State = BenchmarkJob.State


@pytest.fixture
def worker(monkeypatch, request):
    """The end-to-end tests' Celery worker thread, on the broker the channel server sends to."""
    request.getfixturevalue("no_chain")
    monkeypatch.setattr(e2e, "TEST_BROKER_URL", settings.REDIS_URL)
    return request.getfixturevalue("celery_worker_thread")


@pytest.fixture
def agent(tmp_path):
    started: list[subprocess.Popen] = []

    def start(url: str, credential: str, max_jobs: int) -> subprocess.Popen:
        config = tmp_path / "agent.json"
        config_save(config, {"url": url, "credential": credential})
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.agent", "run", "--config", str(config)]
            + ["--max-jobs", str(max_jobs), "--poll-wait", "25", "--no-progress"],
            cwd=REPO_ROOT,
            env={**e2e.Processes(tmp_path).env(), "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _credential(session) -> str:
    return session.headers["Authorization"].removeprefix("Token ")


def _finish(proc: subprocess.Popen) -> str:
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the agent did not finish:\n{out}")
    assert proc.returncode == 0, out
    return out


def test_an_agent_waiting_through_a_crash_gets_the_job_created_while_the_server_was_down(
    channel, make_agent, redis_client, agent, worker
):
    machine, session = make_agent()
    proc = agent(channel.url, _credential(session), max_jobs=1)
    wait_until(lambda: subscribers(redis_client, machine.pk) == 1, what="the agent waiting")

    channel.stop(signal.SIGKILL)  # a crash: no graceful end for the waiting request
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SMALL)
    channel.start()  # same port, new process

    out = _finish(proc)
    job.refresh_from_db()
    assert job.state == State.VERIFIED, (job.state, job.outcome_reason, out)
    assert "unreachable" in out  # it did lose the server, and came back by itself


# Large enough that the agent is still computing when the server dies (a 64×64 job was often
# committed before the kill, and a server killed between the commit's transaction and its
# after-commit enqueue leaves the challenge to beat's stalled-job sweep, which this test has not).
HOLDING = {"kind": "matmul", "n": 2048, "precision": "fp32"}


def test_an_agent_holding_a_job_through_a_crash_completes_it(channel, make_agent, agent, worker):
    machine, session = make_agent()
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=HOLDING)
    proc = agent(channel.url, _credential(session), max_jobs=1)
    wait_until(
        lambda: BenchmarkJob.objects.get(pk=job.pk).state != State.QUEUED, what="the dispatch"
    )

    channel.stop(signal.SIGKILL)  # the agent now computes, then commits into a dead server
    channel.start()

    out = _finish(proc)
    job.refresh_from_db()
    assert job.state == State.VERIFIED, (job.state, job.outcome_reason, out)


def test_an_agent_registers_and_passes_onboarding_through_the_channel(
    make_channel, tmp_path, worker, settings
):
    """The agent protocol end to end on the new server: `register` with a one-time token, then
    `run` through the whole onboarding suite (wake-ups for each queued job and each challenge)."""
    from marketplace.benchmarks.models import BenchmarkSuite
    from marketplace.benchmarks.suites import suite_specs
    from marketplace.providers.models import Machine, Provider
    from marketplace.providers.services import registration_token_create
    from tests.factories import UserFactory

    settings.BENCHMARK_SMALL_SUITES = True  # this process's worker verifies what the server sized
    channel = make_channel(env={"BENCHMARK_SMALL_SUITES": "1"})
    owner = UserFactory(role="provider_owner")
    provider = Provider.objects.create(owner=owner, name="olivia", wallet_address="0x" + "cd" * 20)
    _, token = registration_token_create(provider=provider, user=owner)
    processes = e2e.Processes(tmp_path)
    config = tmp_path / "agent.json"
    done = processes.run(
        ["-m", "workers.agent", "register", "--url", channel.url, "--token", token]
        + ["--name", "honest-cpu", "--config", str(config)],
        timeout=60,
    )
    assert done.returncode == 0, done.stdout
    machine = Machine.objects.get(provider=provider)
    suite = suite_specs(accelerator_kind=machine.accelerator_kind, backends=machine.backends)

    done = processes.run(
        ["-m", "workers.agent", *e2e.agent_run_args(config, len(suite))], timeout=240
    )

    assert done.returncode == 0, done.stdout
    assert done.stdout.count(": verified") == len(suite), done.stdout
    machine.refresh_from_db()
    assert machine.state == Machine.State.VERIFIED, machine.state_reason
    assert BenchmarkSuite.objects.get(machine=machine).state == BenchmarkSuite.State.PASSED
