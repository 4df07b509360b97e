"""Cheats about the hardware itself, each through the real API, services and agent code with
one step of the agent changed: the claim decides the suite, every claimed device answers its own
job, and every job is held between its claimed device's floor and ceiling."""

import pytest

from marketplace.benchmarks.models import BenchmarkJob, BenchmarkSuite
from marketplace.benchmarks.services import benchmark_job_create, machine_onboarding_start
from marketplace.listings.models import Listing
from marketplace.providers.models import Machine
from tests.benchmarks.conftest import CPU_HARDWARE
from tests.factories import ListingFactory
from workers.agent.runner import JobRunner

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_suites(settings):
    """CPU-sized jobs whatever the claim (a 2-core box takes minutes per n = 8192 matmul). The
    floors stay on for what is claimed, with an hour's plumbing allowance for chain jobs: the
    device-binding tests are about identities, not speed, so this CPU may stand in for the
    claimed card. The floor tests below set the allowance to nothing."""
    settings.BENCHMARK_SMALL_SUITES = True
    settings.BENCHMARK_CHAIN_FLOOR_BASE_SECONDS = 3600


def h100s(count, backends=("numpy",)):
    """A CPU-only box whose registration claims `count` H100s."""
    gpu = {"kind": "gpu", "vendor": "NVIDIA", "model": "H100 80GB HBM3", "memory_gb": 80}
    return {
        "accelerators": [dict(gpu) for _ in range(count)],
        "cpu": {"vendor": "AuthenticAMD", "model": "AMD EPYC", "cores": 2},
        "ram_gib": 8,
        "backends": list(backends),
    }


class FakeDeviceIds(JobRunner):
    """Reports a different made-up GPU UUID for each device index it is asked to pin: one
    physical device pretending to be several."""

    def device_id(self, index, spec):
        return f"GPU-00000000-0000-0000-0000-{index:012d}"


def _punished(machine, job_id, reason, verdicts):
    job = BenchmarkJob.objects.get(pk=job_id)
    assert (job.state, job.outcome_reason) == ("rejected", reason)
    machine.refresh_from_db()
    assert machine.state == Machine.State.SUSPENDED and reason in machine.state_reason
    failed = [kw for kind, kw in verdicts if kind == "failed"]
    assert [(kw["job_id"], kw["reason"]) for kw in failed] == [(job_id, reason)]
    assert machine.verified_device_count == 0 and not Listing.objects.filter(machine=machine)


def _drain(runner, limit=200):
    results = []
    for _ in range(limit):
        result = runner.run_once(wait=0)
        if result is None:
            return results
        results.append(result)
    raise AssertionError("agent never ran out of jobs")


# --- the suite comes from the claim ------------------------------------------------------------


@pytest.mark.parametrize("backends", [["numpy"], ["numpy", "torch"], ["cupy"]], ids=str)
def test_a_gpu_claim_gets_the_gpu_suite_whatever_backends_it_reports(
    settings, mallory_provider, make_agent, backends
):
    settings.BENCHMARK_SMALL_SUITES = False
    machine, _, _ = make_agent(mallory_provider, hardware=h100s(1, backends))
    suite = machine_onboarding_start(machine_id=machine.pk)
    jobs = {(j.kind, j.precision): j.spec for j in suite.jobs.all()}
    # An H100's precisions (tf32 included, which no CPU is ever asked for), at GPU sizes.
    assert set(jobs) == {
        ("matmul", "fp32"),
        ("matmul", "tf32"),
        ("matmul", "bf16"),
        ("matmul", "fp16"),
        ("matmul", "int8"),
        ("conv2d", "fp32"),
        ("conv2d", "tf32"),
        ("conv2d", "bf16"),
        ("conv2d", "fp16"),
    }
    assert jobs[("matmul", "fp32")]["n"] == 8192


def test_every_claimed_device_gets_its_own_job_of_every_kernel(mallory_provider, make_agent):
    machine, _, _ = make_agent(mallory_provider, hardware=h100s(8))
    suite = machine_onboarding_start(machine_id=machine.pk)
    per_device = {}
    for job in suite.jobs.all():
        per_device.setdefault(job.device_index, set()).add((job.kind, job.precision))
    assert sorted(per_device) == list(range(8))
    assert len({frozenset(kernels) for kernels in per_device.values()}) == 1


def test_a_cpu_claiming_an_h100_is_rejected_below_the_floor(
    settings, mallory_provider, make_agent, runner_for, verdicts
):
    # CPU-small sizes, with the plumbing allowance set to nothing (the floor the kernel alone
    # would set): an H100's fp32 floor is then 25% of 67 TFLOP/s, far above any CPU.
    settings.BENCHMARK_SMALL_SUITES = True
    settings.BENCHMARK_FLOOR_BASE_SECONDS = 0
    settings.BENCHMARK_CHAIN_FLOOR_BASE_SECONDS = 0
    settings.BENCHMARK_FLOOR_SECONDS_PER_MB = 0
    machine, api, _ = make_agent(mallory_provider, hardware=h100s(1))
    result = runner_for(api).run_once(wait=0)
    assert (result.state, result.reason) == ("rejected", "claimed_device_mismatch")
    _punished(machine, result.job_id, "claimed_device_mismatch", verdicts)


def test_a_figure_above_the_claimed_devices_ceiling_is_rejected(
    settings, mallory_provider, make_agent, runner_for, verdicts
):
    # The claimed device's ceiling made lower than what this box does: more silicon answered
    # than the claim allows (a fleet behind one "consumer card", say).
    settings.BENCHMARK_CEILING_FACTOR = 1e-12
    machine, api, _ = make_agent(mallory_provider, hardware=CPU_HARDWARE)
    result = runner_for(api).run_once(wait=0)
    assert (result.state, result.reason) == ("rejected", "above_ceiling")
    _punished(machine, result.job_id, "above_ceiling", verdicts)


# --- one device cannot answer for several ------------------------------------------------------


def test_one_device_claiming_eight_is_rejected_when_it_answers_a_second_index(
    mallory_provider, make_agent, runner_for, verdicts
):
    # The stock agent on a one-device box: every index it is asked to pin is the same device,
    # and it says so (the same identity for each).
    machine, api, _ = make_agent(mallory_provider, hardware=h100s(8))
    runner = runner_for(api)
    first = runner.run_once(wait=0)
    assert first.state == "verified"
    second = runner.run_once(wait=0)
    job = BenchmarkJob.objects.get(pk=second.job_id)
    assert job.device_index == 1 and job.device_uuid == first_uuid(first.job_id)
    assert (second.state, second.reason) == ("rejected", "device_reused")
    _punished(machine, second.job_id, "device_reused", verdicts)
    assert BenchmarkSuite.objects.get(machine=machine).state == "failed"


def first_uuid(job_id):
    return BenchmarkJob.objects.get(pk=job_id).device_uuid


def test_a_device_that_answers_its_own_job_and_a_siblings_is_rejected(
    mallory_provider, make_agent, runner_for, verdicts
):
    # Two devices claimed, two identities reported, but device 0's identity turns up again on
    # device 1's second job: one device answered for both.
    machine, api, _ = make_agent(mallory_provider, hardware=h100s(2))

    class Swapper(FakeDeviceIds):
        def device_id(self, index, spec):
            if index == 1 and spec.family == "conv2d":
                return super().device_id(0, spec)
            return super().device_id(index, spec)

    results = _drain(runner_for(api, Swapper))
    rejected = [r for r in results if r.state == "rejected"]
    assert [r.reason for r in rejected] == ["device_reused"]
    _punished(machine, rejected[0].job_id, "device_reused", verdicts)


def test_one_device_answering_eight_sequentially_falls_below_the_floor(
    settings, mallory_provider, make_agent, runner_for, verdicts
):
    # Eight made-up identities so the binding holds, but one slow device behind them, at a
    # size where the claimed device's floor is the kernel's (no plumbing allowance).
    settings.BENCHMARK_SMALL_SUITES = True
    settings.BENCHMARK_FLOOR_BASE_SECONDS = 0
    settings.BENCHMARK_CHAIN_FLOOR_BASE_SECONDS = 0
    settings.BENCHMARK_FLOOR_SECONDS_PER_MB = 0
    machine, api, _ = make_agent(mallory_provider, hardware=h100s(8))
    result = runner_for(api, FakeDeviceIds).run_once(wait=0)
    assert (result.state, result.reason) == ("rejected", "claimed_device_mismatch")
    _punished(machine, result.job_id, "claimed_device_mismatch", verdicts)


def test_a_periodic_job_answered_by_another_device_than_was_verified_is_rejected(
    mallory_provider, make_agent, runner_for, verdicts
):
    machine, api, _ = make_agent(mallory_provider, hardware=h100s(2))
    assert {r.state for r in _drain(runner_for(api, FakeDeviceIds))} == {"verified"}
    machine.refresh_from_db()
    assert machine.verified_device_count == 2

    class OtherCard(FakeDeviceIds):
        def device_id(self, index, spec):
            return "GPU-ffffffff-0000-0000-0000-000000000000"

    job = benchmark_job_create(
        machine_id=machine.pk, purpose="periodic", spec=BenchmarkJob.objects.first().spec
    )
    result = runner_for(api, OtherCard).run_once(wait=0)
    assert (result.job_id, result.state, result.reason) == (job.pk, "rejected", "device_reused")


# --- a device that times out is not counted, and the listing follows -----------------------------


def test_a_device_that_times_out_is_dropped_and_the_listing_count_follows(
    mallory_provider, make_agent, runner_for, verdicts
):
    machine, api, _ = make_agent(mallory_provider, hardware=h100s(2))
    listing = ListingFactory(
        machine=machine, accelerator_count=2, precisions=",fp32,fp8,", verified_tflops=None
    )
    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.REGISTERED)

    class DeviceOneHangs(FakeDeviceIds):
        def _hang_device_one(self):
            job = BenchmarkJob.objects.filter(state="dispatched").order_by("-pk").first()
            if job.device_index == 1:
                BenchmarkJob.objects.filter(pk=job.pk).update(deadline="2000-01-01T00:00:00Z")

        def compute(self, spec, seed):  # int8 (Merkle) jobs
            self._hang_device_one()
            return super().compute(spec, seed)

        def sketch(self, spec, seed):  # floating-point (chain) jobs
            self._hang_device_one()
            return super().sketch(spec, seed)

    results = _drain(runner_for(api, DeviceOneHangs))
    timed_out = [r for r in results if r.state == "expired"]
    assert [r.reason for r in timed_out] == ["deadline_exceeded"]
    reasons = set(
        BenchmarkJob.objects.filter(machine=machine, device_index=1).values_list(
            "outcome_reason", flat=True
        )
    )
    assert reasons == {"deadline_exceeded", "device_dropped"}
    machine.refresh_from_db()
    # Not a cheat: nobody is penalised, the machine is verified with the device that passed.
    assert (
        machine.state == Machine.State.VERIFIED and [k for k, _ in verdicts if k == "failed"] == []
    )
    assert machine.verified_device_count == 1 and machine.verified_devices[0]["index"] == 0
    listing.refresh_from_db()
    assert listing.accelerator_count == 1
    assert "fp8" not in listing.precision_list and "tf32" in listing.precision_list
    device0_fp32 = BenchmarkJob.objects.get(
        machine=machine, device_index=0, kind="matmul", precision="fp32"
    )
    assert listing.verified_tflops == pytest.approx(device0_fp32.measured_tflops)


def test_a_claimed_card_the_host_does_not_have_is_abandoned_then_dropped(
    mallory_provider, make_agent, runner_for, verdicts
):
    from django.test import TestCase

    from marketplace.benchmarks.services import benchmarks_expire_overdue

    machine, api, _ = make_agent(mallory_provider, hardware=h100s(2))

    class OneCardMissing(FakeDeviceIds):
        def pinned(self, index, spec):
            if index == 1:  # what hardware.device_pin says on a host with one CUDA device
                raise RuntimeError("no CUDA device 1 here")
            return super().pinned(index, spec)

    runner = runner_for(api, OneCardMissing)
    assert runner.run_once(wait=0).state == "verified"  # device 0's first job
    missing = runner.run_once(wait=0)
    assert missing.state == "abandoned" and "no CUDA device 1" in missing.reason
    # The agent keeps serving device 0 meanwhile; device 1's job runs out its deadline.
    BenchmarkJob.objects.filter(pk=missing.job_id).update(deadline="2000-01-01T00:00:00Z")
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert benchmarks_expire_overdue() == [missing.job_id]
    results = _drain(runner)
    assert {r.state for r in results} == {"verified"}
    machine.refresh_from_db()
    assert machine.state == Machine.State.VERIFIED and machine.verified_device_count == 1
    assert [k for k, _ in verdicts if k == "failed"] == []


# --- one device cannot be two machines ------------------------------------------------------------


def test_one_card_registered_as_two_machines_is_rejected_on_the_second(
    mallory_provider, make_agent, runner_for, verdicts
):
    """A relay: the second machine's agent forwards its jobs to the card that already answers
    for the first (or a machine rejected for cheating comes back under a new name): the same
    device identity on another machine is refused, whatever the second machine claims."""
    first, first_api, _ = make_agent(mallory_provider, hardware=h100s(1))
    assert {r.state for r in _drain(runner_for(first_api, FakeDeviceIds))} == {"verified"}
    second, second_api, _ = make_agent(mallory_provider, hardware=h100s(1))
    result = runner_for(second_api, FakeDeviceIds).run_once(wait=0)
    assert (result.state, result.reason) == ("rejected", "device_reused")
    detail = BenchmarkJob.objects.get(pk=result.job_id).outcome_detail
    assert f"answered for machine {first.pk}" in detail
    _punished(second, result.job_id, "device_reused", verdicts)
    first.refresh_from_db()
    assert first.state == Machine.State.VERIFIED
