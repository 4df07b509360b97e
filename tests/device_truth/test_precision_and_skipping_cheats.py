"""Chain-sketch jobs through the real API, services and agent code, with one step of the agent
made dishonest: answering a job through a cheaper format than its precision, or skipping part
of the work. Each is rejected with its reason, the machine is suspended and the verdict is the
one the payments app slashes for."""

import numpy as np
import pytest

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.providers.models import Machine
from tests.benchmarks.conftest import CPU_HARDWARE
from tests.verification_sketch.laundering import laundered_sketch
from workers.agent.runner import JobRunner

pytestmark = pytest.mark.django_db

# The CPU suite's jobs: the honest path is exercised by every other onboarding test.
TORCH_CPU = {**CPU_HARDWARE, "backends": ["numpy", "torch"]}


@pytest.fixture(autouse=True)
def cpu_suites(settings):
    settings.BENCHMARK_SMALL_SUITES = True


def _first_chain_result(runner, precision):
    """Runs jobs until the first chain job of `precision`; the ones before it are honest."""
    for _ in range(20):
        result = runner.run_once(wait=0)
        assert result is not None, "the suite ended before a chain job of that precision"
        job = BenchmarkJob.objects.get(pk=result.job_id)
        if job.spec["kind"].endswith("_chain") and job.precision == precision:
            return result
        assert result.state == "verified", result
    raise AssertionError("no chain job of that precision")


def _punished(machine, result, reason, verdicts):
    job = BenchmarkJob.objects.get(pk=result.job_id)
    assert (result.state, result.reason) == ("rejected", reason)
    assert (job.state, job.outcome_reason) == ("rejected", reason)
    machine.refresh_from_db()
    assert machine.state == Machine.State.SUSPENDED
    failed = [kw for kind, kw in verdicts if kind == "failed"]
    assert [(kw["job_id"], kw["reason"]) for kw in failed] == [(job.pk, reason)]


@pytest.mark.parametrize(
    ("precision", "cheaper"),
    [("fp32", "bf16"), ("fp32", "tf32"), ("fp32", "int8"), ("bf16", "int8"), ("fp16", "int8")],
    ids=lambda v: v,
)
def test_a_job_answered_through_a_cheaper_format_is_a_precision_mismatch(
    settings, mallory_provider, make_agent, runner_for, verdicts, precision, cheaper
):
    # The suite's own sizes (no sizing from the machine's figures): over the hundred-odd layers
    # a fast machine's bf16 job gets, an answer laundered through int8 drifts past the "not
    # computed" threshold (25% of a value's scale) and is rejected as row_mismatch instead,
    # rejected and penalised all the same.
    settings.BENCHMARK_CPU_JOB_SECONDS = 0

    class Launderer(JobRunner):
        def sketch(self, spec, seed):
            if spec.precision != precision:
                return super().sketch(spec, seed)
            return laundered_sketch(spec, seed, cheaper)

    machine, api, _ = make_agent(mallory_provider, hardware=TORCH_CPU)
    result = _first_chain_result(runner_for(api, Launderer), precision)
    _punished(machine, result, "precision_mismatch", verdicts)
    checks = BenchmarkJob.objects.get(pk=result.job_id).checks
    assert checks["rms_over_tolerance"] > 1


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_an_agent_that_skips_part_of_the_units_is_caught(
    mallory_provider, make_agent, runner_for, verdicts, fraction
):
    # Skipped units answered as zeros, the cheapest guess; 48 sampled units catch a tenth with
    # probability 1 - 0.9**48 > 0.99 (the exact rate is tests/verification_sketch's subject).
    class Skipper(JobRunner):
        def sketch(self, spec, seed):
            y = super().sketch(spec, seed).copy()
            rng = np.random.default_rng(7)
            y[rng.choice(len(y), size=int(fraction * len(y)), replace=False)] = 0
            return y

    machine, api, _ = make_agent(mallory_provider, hardware=CPU_HARDWARE)
    result = runner_for(api, Skipper).run_once(wait=0)
    _punished(machine, result, "row_mismatch", verdicts)


def test_a_sketch_for_another_job_is_rejected_as_a_mismatch(
    mallory_provider, make_agent, runner_for, verdicts
):
    # A replayed (or shared between machines) answer: computed for another seed.
    class Replayer(JobRunner):
        def sketch_body(self, spec, seed, y, agent_seconds, device):
            return super().sketch_body(spec, "ab" * 32, y, agent_seconds, device)

    machine, api, _ = make_agent(mallory_provider, hardware=CPU_HARDWARE)
    result = runner_for(api, Replayer).run_once(wait=0)
    _punished(machine, result, "job_mismatch", verdicts)


def test_a_merkle_commitment_to_a_chain_job_is_rejected(
    mallory_provider, make_agent, runner_for, verdicts
):
    """An old agent, or one that tries the protocol whose plumbing it can game, is refused."""
    from workers.kernels import spec_from_dict

    class OldProtocol(JobRunner):
        def _handle_chain(self, job, spec, index, deadline, steps):
            merkle = spec_from_dict({"kind": "matmul", "n": 8, "precision": "fp32"})
            root, _ = self.commitment(merkle, self.compute(merkle, job["seed"]))
            body = self.commitment_body(root, 0.5, self.device_id(index, spec))
            try:
                self.api.commit(job["id"], body)
            except Exception as exc:  # the 422 of the rejection
                from workers.agent.runner import JobResult

                return JobResult(job["id"], "rejected", exc.detail["reason"])
            raise AssertionError("a Merkle commitment to a chain job was accepted")

    machine, api, _ = make_agent(mallory_provider, hardware=CPU_HARDWARE)
    result = runner_for(api, OldProtocol).run_once(wait=0)
    _punished(machine, result, "malformed_commitment", verdicts)
