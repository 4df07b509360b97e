"""Waiting agents on the ASGI agent channel (the Procfile's uvicorn, a real subprocess) are woken
by Redis events, not by polling the database, and hold no server thread while they wait."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import benchmark_job_create
from tests.agent_channel.conftest import SMALL, subscribers, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _long_poll(session: requests.Session, url: str, wait: int = 25) -> requests.Response:
    return session.get(f"{url}/api/v1/agent/jobs/next", params={"wait": wait}, timeout=60)


def test_a_waiting_agent_gets_a_job_created_after_it_began_waiting_from_the_event(
    channel, make_agent, redis_client
):
    """The server subscribes, then reads the database once, then waits. The test sees the
    subscription, not that first read: on a loaded machine the read can run after the job
    commits and find it ("initial", also correct). Such a round proves nothing about wake-ups, so
    the test repeats with a fresh agent until one wait was woken by the event; a missed event
    would end in "timeout" (the read at the end of the wait), which fails at once."""
    hows = []
    for _ in range(5):
        machine, bob = make_agent()
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(_long_poll, bob, channel.url)
            wait_until(
                lambda m=machine: subscribers(redis_client, m.pk) == 1, what="the subscription"
            )
            job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SMALL)
            response = waiting.result()

        assert response.status_code == 200, response.text
        assert response.json()["id"] == job.pk
        hows.append(response.headers["Agent-Wait"])
        assert hows[-1] in {"event", "initial"}, hows
        job.refresh_from_db()
        assert job.state == BenchmarkJob.State.DISPATCHED
        wait_until(
            lambda m=machine: subscribers(redis_client, m.pk) == 0, what="the unsubscription"
        )
        if hows[-1] == "event":
            break
    # Woken by the job's publication, not found by a read at the start or at the end of the wait.
    assert hows[-1] == "event", hows


def test_a_challenge_wait_is_woken_when_the_job_ends(channel, make_agent, redis_client):
    """The challenge long poll wakes on the job's final state too (here: expired by beat)."""
    from django.utils import timezone

    from marketplace.benchmarks.services import benchmark_expire

    machine, bob = make_agent()
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SMALL)
    assert _long_poll(bob, channel.url, wait=0).json()["id"] == job.pk
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            bob.get,
            f"{channel.url}/api/v1/agent/jobs/{job.pk}/challenge",
            params={"wait": 25},
            timeout=60,
        )
        wait_until(lambda m=machine: subscribers(redis_client, m.pk) == 1, what="the subscription")
        BenchmarkJob.objects.filter(pk=job.pk).update(deadline="2000-01-01T00:00:00Z")
        benchmark_expire(job_id=job.pk, now=timezone.now())
        response = waiting.result()

    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "benchmarks_job_expired"


def test_sixty_four_waiting_agents_hold_no_threads_and_other_agents_are_served(
    make_channel, make_agent, redis_client
):
    """One worker with two database threads: 64 agents wait, and meanwhile another agent's
    heartbeat and its machine read (a sync Django view) are answered. The server's thread count
    stays far below the number of waiters: they are coroutines."""
    channel = make_channel(env={"AGENT_CHANNEL_DB_THREADS": "2"})
    agents = [make_agent() for _ in range(64)]
    other_machine, other = make_agent()
    with ThreadPoolExecutor(64) as pool:
        waiting = [pool.submit(_long_poll, session, channel.url, 25) for _, session in agents]
        wait_until(
            lambda: all(subscribers(redis_client, m.pk) == 1 for m, _ in agents),
            what="64 subscriptions",
        )
        threads_while_waiting = channel.threads()
        heartbeat = other.post(f"{channel.url}/api/v1/agent/heartbeat", timeout=30)
        machine = other.get(f"{channel.url}/api/v1/agent/machine", timeout=30)
        assert all(not w.done() for w in waiting)  # the answers above did not end any wait
        jobs = {
            m.pk: benchmark_job_create(machine_id=m.pk, purpose="periodic", spec=SMALL).pk
            for m, _ in agents
        }
        responses = [w.result() for w in waiting]

    assert heartbeat.status_code == 200, heartbeat.text
    assert machine.status_code == 200 and machine.json()["id"] == other_machine.pk
    assert threads_while_waiting < 32, threads_while_waiting
    assert sorted(r.json()["id"] for r in responses) == sorted(jobs.values())
    # Each waiter was woken by its event, or (on a loaded machine, where its first database read
    # queued behind the others' in the 2-thread pool past the job's commit) found the job on that
    # first read; none ran out its wait and found it on the last read.
    hows = [r.headers["Agent-Wait"] for r in responses]
    assert set(hows) <= {"event", "initial"}, hows
    assert "event" in hows, hows


def test_an_event_reaches_agents_waiting_on_other_web_processes(
    make_channel, make_agent, redis_client
):
    """Two channel processes (as on two machines) share the fleet through Redis: the job is
    created in a third process (this test, standing in for beat or a worker), and the agents
    waiting on either server are woken.

    A subscription is visible (PUBSUB NUMSUB) just before the waiter's first database read, so
    on a loaded machine that read can run after the job commits and find it ("initial"). Such a
    round proves nothing about events; it is repeated with fresh agents until both servers'
    agents were woken by the event."""
    first, second = make_channel(), make_channel()
    woken: dict[str, list[str]] = {"first": [], "second": []}
    for _ in range(6):
        (alpha, alpha_http), (beta, beta_http) = make_agent(), make_agent()
        with ThreadPoolExecutor(2) as pool:
            on_first = pool.submit(_long_poll, alpha_http, first.url)
            on_second = pool.submit(_long_poll, beta_http, second.url)
            wait_until(
                lambda a=alpha.pk, b=beta.pk: (
                    subscribers(redis_client, a) == subscribers(redis_client, b) == 1
                ),
                what="both subscriptions",
            )
            alpha_job = benchmark_job_create(machine_id=alpha.pk, purpose="periodic", spec=SMALL)
            beta_job = benchmark_job_create(machine_id=beta.pk, purpose="periodic", spec=SMALL)
            answers = on_first.result(), on_second.result()
        assert [a.json()["id"] for a in answers] == [alpha_job.pk, beta_job.pk]
        hows = [a.headers["Agent-Wait"] for a in answers]
        assert set(hows) <= {"event", "initial"}, hows
        woken["first"].append(hows[0])
        woken["second"].append(hows[1])
        if "event" in woken["first"] and "event" in woken["second"]:
            break
    assert "event" in woken["first"] and "event" in woken["second"], woken


def test_a_dispatched_job_is_handed_out_again_until_it_is_committed(channel, make_agent):
    """The reply carrying the job (and its seed) can be lost with the connection: the agent's
    next poll gets the same job, with the deadline of the first dispatch."""
    machine, bob = make_agent()
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SMALL)
    first = _long_poll(bob, channel.url, wait=0).json()
    again = _long_poll(bob, channel.url, wait=0).json()
    assert first == again and first["id"] == job.pk


def test_the_channel_keeps_the_api_error_shape(channel, make_agent):
    machine, bob = make_agent()
    cases = [
        requests.get(f"{channel.url}/api/v1/agent/jobs/next", timeout=30),
        bob.get(f"{channel.url}/api/v1/agent/jobs/next", params={"wait": "x"}, timeout=30),
        bob.get(f"{channel.url}/api/v1/agent/jobs/999999/challenge", timeout=30),
        bob.post(
            f"{channel.url}/api/v1/agent/heartbeat",
            data=b"[" * 5000 + b"]" * 5000,
            headers={"Content-Type": "application/json"},
            timeout=30,
        ),
        requests.get(f"{channel.url}/api/v1/listings", timeout=30),
        bob.get(f"{channel.url}/api/v1/agent/jobs/next", headers={"Host": "evil"}, timeout=30),
    ]
    assert [r.status_code for r in cases] == [401, 400, 404, 400, 404, 400]
    for response in cases:
        assert set(response.json()["error"]) >= {"code", "message"}, response.text
    too_long = bob.get(f"{channel.url}/api/v1/agent/jobs/next?x=" + "a" * 20_000, timeout=30)
    assert too_long.status_code == 414 and "error" in too_long.json()
    assert requests.get(f"{channel.url}/api/v1/health", timeout=30).status_code == 200
