"""Sybil and relay resistance in scheduling: machines that share an owner or a wallet address
with a machine due for its periodic check are checked at the same moment, due or not, so one
device relaying for several registrations must serve them all at once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import benchmark_job_create, benchmarks_schedule_reverification
from tests.factories import MachineFactory, ProviderFactory, UserFactory

pytestmark = pytest.mark.django_db
SPEC = {"kind": "matmul", "n": 8, "precision": "int8"}


def verified_machine(provider):
    return MachineFactory(
        provider=provider,
        state="listed",
        verified_devices=[{"index": 0, "uuid": "GPU-0"}],
        verified_device_count=1,
        verified_precisions=["fp32"],
    )


def checked_recently(machine):
    """A periodic job that ended a minute ago: not due for hours on its own."""
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SPEC)
    BenchmarkJob.objects.filter(pk=job.pk).update(
        state="verified", created_at=timezone.now() - timedelta(minutes=1)
    )


def scheduled(machines):
    created = benchmarks_schedule_reverification()
    return sorted(
        set(
            BenchmarkJob.objects.filter(pk__in=created, machine__in=machines).values_list(
                "machine_id", flat=True
            )
        )
    )


def test_a_due_machine_brings_its_owners_other_machines_into_the_same_round(bob_provider):
    due, fresh = verified_machine(bob_provider), verified_machine(bob_provider)
    checked_recently(fresh)
    assert scheduled([due, fresh]) == sorted([due.pk, fresh.pk])


def test_machines_of_two_owners_sharing_a_wallet_are_checked_together(bob_provider):
    sybil = ProviderFactory(
        owner=UserFactory(username="sybil", role="provider_owner"),
        wallet_address=bob_provider.wallet_address.upper().replace("0X", "0x"),
    )
    due, fresh = verified_machine(bob_provider), verified_machine(sybil)
    checked_recently(fresh)
    assert scheduled([due, fresh]) == sorted([due.pk, fresh.pk])


def test_an_unrelated_recently_checked_machine_is_left_alone(bob_provider):
    other = ProviderFactory(
        owner=UserFactory(username="olivia", role="provider_owner"),
        wallet_address="0x" + "ab" * 20,
    )
    due, fresh = verified_machine(bob_provider), verified_machine(other)
    checked_recently(fresh)
    assert scheduled([due, fresh]) == [due.pk]


def test_nobody_due_schedules_nobody(bob_provider):
    first, second = verified_machine(bob_provider), verified_machine(bob_provider)
    checked_recently(first)
    checked_recently(second)
    assert scheduled([first, second]) == []
