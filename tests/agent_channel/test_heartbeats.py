"""Heartbeats on the agent channel are one Redis write each; beat flushes them to the database in
bulk. Every reader that decides something on the last-seen time still decides right."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.benchmarks.services import machines_expire_heartbeats
from marketplace.providers import heartbeats
from marketplace.providers.models import AgentCredential, Machine

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

State = Machine.State


def _row(machine_id: int) -> tuple:
    machine = Machine.objects.get(pk=machine_id)
    credential = AgentCredential.objects.get(machine_id=machine_id)
    return machine.last_heartbeat_at, machine.updated_at, machine.state, credential.last_used_at


def test_heartbeats_write_no_row_until_the_flush_lands(channel, make_agent):
    machine, bob = make_agent()
    before = _row(machine.pk)

    answers = [bob.post(f"{channel.url}/api/v1/agent/heartbeat", timeout=30) for _ in range(20)]

    assert [a.status_code for a in answers] == [200] * 20
    assert _row(machine.pk) == before  # neither the machine nor its credential was written
    buffered = heartbeats.machines_last_seen(machine_ids=[machine.pk])[machine.pk]
    assert buffered > before[0]

    assert heartbeats.heartbeats_flush() == 1

    last_seen, _, state, last_used = _row(machine.pk)
    assert last_seen == buffered and last_used == buffered and state == State.VERIFIED
    assert heartbeats.machines_last_seen(machine_ids=[machine.pk]) == {}
    assert heartbeats.heartbeats_flush() == 0  # nothing new: no write at all


def test_the_expiry_sweep_trusts_a_buffered_heartbeat_over_a_stale_row(make_agent):
    alive, _ = make_agent()
    silent, _ = make_agent()
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Machine.objects.filter(pk__in=[alive.pk, silent.pk]).update(last_heartbeat_at=an_hour_ago)
    heartbeats.heartbeat_record(machine_id=alive.pk, at=timezone.now())

    assert machines_expire_heartbeats() == [silent.pk]

    alive.refresh_from_db()
    assert alive.state == State.VERIFIED and alive.last_heartbeat_at > an_hour_ago
    assert Machine.objects.get(pk=silent.pk).state == State.OFFLINE


def test_an_offline_machine_is_back_on_its_first_heartbeat(channel, make_agent):
    machine, bob = make_agent(state=State.OFFLINE)
    Machine.objects.filter(pk=machine.pk).update(resume_state=State.VERIFIED)

    response = bob.post(f"{channel.url}/api/v1/agent/heartbeat", timeout=30)

    # Back, and re-verified before it is verified again (tests/lease_checks).
    assert response.status_code == 200 and response.json()["state"] == State.REVERIFYING
    machine.refresh_from_db()  # a state change is written at once, not buffered
    assert machine.state == State.REVERIFYING and machine.state_reason == "heartbeats resumed"
    assert machine.resume_state == State.VERIFIED


def test_the_machine_api_shows_the_buffered_heartbeat(channel, make_agent):
    machine, bob = make_agent()
    bob.post(f"{channel.url}/api/v1/agent/heartbeat", timeout=30)
    buffered = heartbeats.machines_last_seen(machine_ids=[machine.pk])[machine.pk]

    shown = bob.get(f"{channel.url}/api/v1/agent/machine", timeout=30).json()

    assert shown["last_heartbeat_at"].replace("Z", "+00:00") == buffered.isoformat()


def test_a_flush_never_moves_last_seen_backwards(make_agent):
    machine, _ = make_agent()
    newer = timezone.now()
    Machine.objects.filter(pk=machine.pk).update(last_heartbeat_at=newer)
    heartbeats.heartbeat_record(machine_id=machine.pk, at=newer - timedelta(minutes=5))

    heartbeats.heartbeats_flush()

    assert Machine.objects.get(pk=machine.pk).last_heartbeat_at == newer


@pytest.mark.parametrize("batch_size", [None, 2])
def test_a_flush_writes_every_machine_and_touches_credentials_once_a_minute(
    make_agent, batch_size, django_assert_max_num_queries
):
    """Five machines, flushed in one batch (the engine's batch size) or in batches of two:
    each row gets its own time; a credential used 10 s ago keeps that use (touched at most once
    a minute), one used 2 minutes ago or never is touched; a revoked one never is."""
    machines = [make_agent()[0] for _ in range(5)]
    now = timezone.now()
    Machine.objects.update(last_heartbeat_at=now - timedelta(hours=1))
    seen = {m.pk: now - timedelta(seconds=i) for i, m in enumerate(machines)}
    for pk, at in seen.items():
        heartbeats.heartbeat_record(machine_id=pk, at=at)
    seen = heartbeats.machines_last_seen(machine_ids=seen)  # as buffered (a float timestamp)
    recent, stale, never, revoked = (m.pk for m in machines[1:])
    AgentCredential.objects.filter(machine_id=recent).update(
        last_used_at=now - timedelta(seconds=10)
    )
    AgentCredential.objects.filter(machine_id=stale).update(last_used_at=now - timedelta(minutes=2))
    AgentCredential.objects.filter(machine_id=never).update(last_used_at=None)
    AgentCredential.objects.filter(machine_id=revoked).update(
        last_used_at=None, revoked_at=now - timedelta(hours=1)
    )

    # Per batch: two UPDATEs, and the transaction's BEGIN and COMMIT where the engine counts them.
    with django_assert_max_num_queries(4 * 3 if batch_size == 2 else 4):
        assert heartbeats.heartbeats_flush(batch_size=batch_size) == 5

    rows = dict(Machine.objects.filter(pk__in=seen).values_list("pk", "last_heartbeat_at"))
    assert rows == seen
    used = dict(AgentCredential.objects.values_list("machine_id", "last_used_at"))
    assert used[recent] == now - timedelta(seconds=10)
    assert used[stale] == seen[stale] and used[never] == seen[never]
    assert used[revoked] is None
    assert heartbeats.machines_last_seen(machine_ids=seen) == {}
