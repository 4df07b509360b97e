"""A CPU machine's suite jobs are sized by the server from the machine's own verified figures
(marketplace/benchmarks/suites.py cpu_job_sized), when each job is dispatched. Expected sizes
are worked out by hand from the suite's shapes."""

import pytest

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import benchmark_dispatch_next, machine_onboarding_start
from marketplace.benchmarks.suites import cpu_job_sized, suite_specs
from tests.benchmarks.conftest import CPU_HARDWARE

# One fp32 layer of the CPU matmul (1024 x 512 . 512 x 512): 2 * 1024 * 512 * 512 FLOPs.
MATMUL_LAYER = 536_870_912
# One image-layer of the CPU conv (32 x 32 pixels, 256 -> 256 channels, 3 x 3).
CONV_IMAGE_LAYER = 2 * 1024 * 256 * 256 * 9


def _cpu_suite():
    specs = suite_specs(accelerator_kind="cpu", backends=["numpy", "torch"])
    return {(s["kind"], s["precision"]): s for s in specs}


def test_without_a_measured_rate_the_suite_size_stands():
    for spec in _cpu_suite().values():
        assert cpu_job_sized(spec, {}) == spec


def test_matmul_layers_follow_the_machines_rate():
    suite = _cpu_suite()
    rates = {("matmul", "fp32"): 180e9}
    # 180e9 / 536,870,912 = 335.3 -> 336 layers; bf16 guessed at twice fp32: 670.6 -> 671; int8
    # at four times: 1341 -> the cap, 512.
    assert cpu_job_sized(suite[("matmul_chain", "fp32")], rates)["layers"] == 336
    assert cpu_job_sized(suite[("matmul_chain", "bf16")], rates)["layers"] == 671
    assert cpu_job_sized(suite[("matmul_chain", "int8")], rates)["layers"] == 512
    # fp16 guessed at 1/32 of fp32: 5.625e9 / 536,870,912 = 10.5 -> 11.
    assert cpu_job_sized(suite[("matmul_chain", "fp16")], rates)["layers"] == 11
    # bf16 measured at 500 GFLOP/s: 931.3 -> 932.
    rates[("matmul", "bf16")] = 500e9
    assert cpu_job_sized(suite[("matmul_chain", "bf16")], rates)["layers"] == 932


def test_conv_grows_its_batch_then_its_channels_then_its_layers():
    conv = _cpu_suite()[("conv2d_chain", "fp32")]
    # 30 GFLOP/s measured: 30e9 / (2 * 1,207,959,552) = 12.4 -> batch 13, 2 layers.
    sized = cpu_job_sized(conv, {("conv2d", "fp32"): 30e9})
    assert (sized["batch"], sized["layers"]) == (13, 2)
    # A conv rate derived from the other kernel's ratio: 100e9 * (400e9 / 200e9) = 200e9:
    # batch 40 (the cap) makes 96.6 GFLOP at 2 layers; channels 256 * sqrt(200e9 / 96.6e9) =
    # 368.3 -> 384 (multiples of 64), which makes 217 GFLOP: 2 layers stay.
    rates = {("conv2d", "fp32"): 100e9, ("matmul", "bf16"): 400e9, ("matmul", "fp32"): 200e9}
    sized = cpu_job_sized(_cpu_suite()[("conv2d_chain", "bf16")], rates)
    assert (sized["batch"], sized["channels"], sized["layers"]) == (40, 384, 2)


def test_sizes_are_capped_and_never_below_the_suite():
    suite = _cpu_suite()
    huge = {("matmul", "fp32"): 1e18, ("conv2d", "fp32"): 1e18}
    assert cpu_job_sized(suite[("matmul_chain", "fp32")], huge)["layers"] == 1024
    assert cpu_job_sized(suite[("matmul_chain", "int8")], huge)["layers"] == 512
    sized = cpu_job_sized(suite[("conv2d_chain", "fp32")], huge)
    assert (sized["batch"], sized["channels"], sized["layers"]) == (40, 512, 4)
    tiny = {("matmul", "fp32"): 1.0, ("conv2d", "fp32"): 1.0}
    assert cpu_job_sized(suite[("matmul_chain", "fp32")], tiny)["layers"] == 96
    assert cpu_job_sized(suite[("conv2d_chain", "fp32")], tiny) == suite[("conv2d_chain", "fp32")]


def test_a_spec_that_is_not_a_cpu_suite_job_is_left_alone():
    odd = {**_cpu_suite()[("matmul_chain", "fp32")], "n": 256}
    assert cpu_job_sized(odd, {("matmul", "fp32"): 180e9}) == odd
    gpu = suite_specs(accelerator_kind="gpu", model="H100", backends=["torch"], small=False)[0]
    assert cpu_job_sized(gpu, {("matmul", "fp32"): 180e9}) == gpu


@pytest.mark.django_db
def test_dispatch_sizes_the_next_job_from_the_verified_one_and_records_it(
    mallory_provider, make_agent
):
    machine, _, _ = make_agent(mallory_provider, hardware=CPU_HARDWARE)
    suite = machine_onboarding_start(machine_id=machine.pk)
    first = suite.jobs.order_by("pk").first()
    assert (first.kind, first.precision, first.spec["layers"]) == ("matmul", "fp32", 96)
    BenchmarkJob.objects.filter(pk=first.pk).update(state="verified", measured_tflops=0.18)
    job = benchmark_dispatch_next(machine_id=machine.pk)
    assert (job.kind, job.precision) == ("matmul", "bf16")
    job.refresh_from_db()
    # bf16 guessed at twice the fp32 figure: 360e9 / 536,870,912 = 670.6 -> 671 layers.
    assert job.spec["layers"] == 671
    assert job.flops == 671 * MATMUL_LAYER
    # The deadline follows the sized job: base + FLOPs / BENCHMARK_MIN_RATE_FLOPS.
    assert (job.deadline - job.dispatched_at).total_seconds() == pytest.approx(
        120 + 671 * MATMUL_LAYER / 5e9
    )


@pytest.mark.django_db
def test_a_device_claims_suite_is_not_resized(mallory_provider, make_agent, settings):
    from tests.device_truth.test_device_cheats import h100s

    settings.BENCHMARK_SMALL_SUITES = True
    machine, _, _ = make_agent(mallory_provider, hardware=h100s(1))
    suite = machine_onboarding_start(machine_id=machine.pk)
    first = suite.jobs.order_by("pk").first()
    BenchmarkJob.objects.filter(pk=first.pk).update(state="verified", measured_tflops=50.0)
    before = suite.jobs.order_by("pk")[1].spec
    job = benchmark_dispatch_next(machine_id=machine.pk)
    assert job.spec == before
