"""Re-verification after onboarding: the same kernel on every verified device at once, each job
bound to its device, at a precision the machine was verified in."""

import pytest

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import benchmarks_schedule_reverification
from tests.factories import MachineFactory

pytestmark = pytest.mark.django_db


def test_periodic_reverification_queues_one_job_per_verified_device(bob_provider):
    machine = MachineFactory(
        provider=bob_provider,
        accelerator_count=8,
        # Device 3 was dropped at onboarding: it is neither asked nor counted.
        verified_devices=[{"index": i, "uuid": f"GPU-{i}"} for i in range(8) if i != 3],
        verified_device_count=7,
        verified_precisions=["fp32"],
    )
    created = benchmarks_schedule_reverification()
    jobs = list(BenchmarkJob.objects.filter(pk__in=created, machine=machine))
    assert sorted(j.device_index for j in jobs) == [0, 1, 2, 4, 5, 6, 7]
    assert len({(j.kind, j.precision, str(j.spec)) for j in jobs}) == 1
    assert jobs[0].precision == "fp32"
    # Never a second round while one is open.
    assert benchmarks_schedule_reverification() == []
