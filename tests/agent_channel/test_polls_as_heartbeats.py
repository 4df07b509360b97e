"""What a waiting fleet costs per agent: a poll for work is the machine's heartbeat (the agent
sends heartbeats only while it is not polling), a poll that finds nothing costs one query, and a
wait that ran out reads the database again only when a wake-up could have been missed."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from marketplace.benchmarks import wakeups
from marketplace.benchmarks.apis import _job_to_deliver
from marketplace.benchmarks.services import benchmark_job_create
from marketplace.providers import heartbeats
from marketplace.providers.models import AgentCredential, Machine
from tests.agent_channel.conftest import SMALL
from workers.agent.cli import _Heartbeat
from workers.agent.client import AgentApi, ServerUnreachable

State = Machine.State


def _row(machine_id: int) -> tuple:
    machine = Machine.objects.get(pk=machine_id)
    credential = AgentCredential.objects.get(machine_id=machine_id)
    return machine.last_heartbeat_at, machine.updated_at, machine.state, credential.last_used_at


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_poll_on_the_channel_is_the_machines_heartbeat_and_writes_no_row(channel, make_agent):
    machine, bob = make_agent()
    before = _row(machine.pk)
    assert heartbeats.machines_last_seen(machine_ids=[machine.pk]) == {}

    answer = bob.get(f"{channel.url}/api/v1/agent/jobs/next", params={"wait": 0}, timeout=30)

    assert answer.status_code == 204, answer.text
    assert _row(machine.pk) == before
    seen = heartbeats.machines_last_seen(machine_ids=[machine.pk])[machine.pk]
    assert before[0] is None or seen > before[0]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_poll_from_an_offline_machine_brings_it_back_only_as_far_as_its_check(
    channel, make_agent
):
    """As its heartbeat would: a listed machine that went offline returns to `reverifying`, not
    to the market."""
    machine, bob = make_agent()
    Machine.objects.filter(pk=machine.pk).update(state=State.OFFLINE, resume_state=State.LISTED)

    answer = bob.get(f"{channel.url}/api/v1/agent/jobs/next", params={"wait": 0}, timeout=30)

    assert answer.status_code == 204, answer.text
    machine.refresh_from_db()
    assert (machine.state, machine.resume_state) == (State.REVERIFYING, State.LISTED)
    assert machine.state_reason == "heartbeats resumed"


@pytest.mark.django_db
def test_a_poll_that_finds_nothing_costs_one_query_and_a_queued_job_is_still_handed_out(
    make_agent, django_assert_num_queries
):
    machine, _ = make_agent()
    with django_assert_num_queries(1):
        assert _job_to_deliver(machine.pk) is None

    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SMALL)
    delivered = _job_to_deliver(machine.pk)
    assert delivered is not None and delivered["id"] == job.pk
    # Out and not yet committed: handed out again (the agent may have lost the reply).
    assert _job_to_deliver(machine.pk)["id"] == job.pk


def _wait_counting_reads(lose_connection: bool) -> tuple[int, str]:
    """One 1-second wait for a machine nobody publishes to; returns how often it read."""
    reads = 0

    async def main() -> str:
        hub = wakeups.hub()

        def check():
            nonlocal reads
            reads += 1
            if lose_connection and reads == 1:
                hub.losses += 1  # what Hub._read records when its connection drops
            return None

        found, how = await wakeups.wait_async(987_654_321, 1, check)
        assert found is None
        return how

    how = asyncio.run(main())
    return reads, how


def test_a_wait_that_ran_out_with_its_subscription_intact_does_not_read_again():
    assert _wait_counting_reads(lose_connection=False) == (1, "timeout")


def test_a_wait_during_which_the_wake_up_connection_was_lost_reads_again_at_its_end():
    assert _wait_counting_reads(lose_connection=True) == (2, "timeout")


class _CountingApi(AgentApi):
    def __init__(self) -> None:
        super().__init__(transport=None)
        self.sent = 0

    def heartbeat(self) -> dict:
        self.sent += 1
        self.server_saw_at = time.monotonic()
        return {}


def test_the_agent_sends_no_heartbeat_while_the_server_has_seen_it_recently():
    api, stop = _CountingApi(), threading.Event()
    api.server_saw_at = time.monotonic()  # a poll the server just answered
    beat = _Heartbeat(api, stop, interval=3600)
    beat.start()
    time.sleep(0.3)
    stop.set()
    beat.join(timeout=10)
    assert api.sent == 0


def test_the_agent_heartbeats_once_the_server_has_not_seen_it_for_an_interval():
    api, stop = _CountingApi(), threading.Event()
    beat = _Heartbeat(api, stop, interval=3600)  # never seen: due at once, then not for an hour
    beat.start()
    deadline = time.monotonic() + 30
    while api.sent == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    beat.join(timeout=10)
    assert api.sent == 1


class _Answers:
    """A transport that answers every request with 204 or an error status."""

    def __init__(self, status: int) -> None:
        self.status = status

    def request(self, method, path, *, params=None, body=None):
        return self.status, None


def test_only_a_poll_the_server_answered_moves_the_agents_last_sight():
    api = AgentApi(transport=_Answers(204))
    before = time.monotonic()
    assert api.next_job(wait=0) is None
    assert api.server_saw_at >= before

    refused = AgentApi(transport=_Answers(503))
    with pytest.raises(ServerUnreachable):
        refused.next_job(wait=0)
    assert refused.server_saw_at == float("-inf")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_credential_revoked_in_the_admin_is_refused_on_the_channels_next_poll(
    channel, make_agent
):
    """The channel's lookup is a statement written out for speed (no ORM query built per
    poll), and it still checks revocation on every request."""
    from django.utils import timezone

    machine, bob = make_agent()
    url = f"{channel.url}/api/v1/agent/jobs/next"

    assert bob.get(url, params={"wait": 0}, timeout=30).status_code == 204
    AgentCredential.objects.filter(machine=machine).update(revoked_at=timezone.now())
    for answer in (
        bob.get(url, params={"wait": 0}, timeout=30),
        bob.post(f"{channel.url}/api/v1/agent/heartbeat", timeout=30),
        bob.get(url, params={"wait": 0}, headers={"Authorization": "Token agt_unknown"}),
    ):
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "authentication_failed"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_poll_that_waited_in_vain_is_recorded_as_a_heartbeat_at_its_end(channel, make_agent):
    """The agent counts a poll as its heartbeat when the answer arrives, so the server records
    the machine at the end of a poll that found nothing, not only at its start."""
    from django.utils import timezone

    machine, bob = make_agent()
    asked_at = timezone.now()

    answer = bob.get(f"{channel.url}/api/v1/agent/jobs/next", params={"wait": 1}, timeout=30)

    assert answer.status_code == 204 and answer.headers["Agent-Wait"] == "timeout"
    seen = heartbeats.machines_last_seen(machine_ids=[machine.pk])[machine.pk]
    assert (seen - asked_at).total_seconds() >= 1  # after the 1 s wait, not at its start
