"""Each cheat against the real protocol: real API, services and agent code, one step changed."""

import json
import time

import numpy as np
import pytest
from django.test import TestCase

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import benchmark_job_create
from marketplace.providers.models import Machine
from tests.benchmarks.conftest import H100_ON_A_CPU
from workers.agent.runner import JobRunner
from workers.kernels import compute

pytestmark = pytest.mark.django_db

SMALL = {"kind": "matmul", "n": 64, "precision": "fp32"}
SMALL_CONV = {
    "kind": "conv2d",
    "batch": 2,
    "in_channels": 4,
    "out_channels": 32,
    "height": 8,
    "width": 8,
    "kernel_size": 3,
    "stride": 1,
    "padding": 1,
    "precision": "fp32",
}


@pytest.fixture
def mallory_provider(mallory):
    from tests.factories import ProviderFactory

    return ProviderFactory(owner=mallory)


@pytest.fixture
def cheater(mallory_provider, make_agent):
    """A verified machine with one queued periodic job of `spec` (default SMALL)."""

    def make(spec=SMALL):
        machine, api, client = make_agent(mallory_provider)
        Machine.objects.filter(pk=machine.pk).update(state=Machine.State.VERIFIED)
        job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=spec)
        return machine, api, client, job

    return make


def _assert_punished(machine, job_id, reason, verdicts, state="rejected"):
    job = BenchmarkJob.objects.get(pk=job_id)
    assert (job.state, job.outcome_reason) == (state, reason)
    machine.refresh_from_db()
    assert machine.state == Machine.State.SUSPENDED and reason in machine.state_reason
    failed = [kw for kind, kw in verdicts if kind == "failed"]
    assert len(failed) == 1
    assert failed[0]["job_id"] == job_id and failed[0]["reason"] == reason
    assert failed[0]["report_hash"] == "0x" + job.report_hash and len(job.report_hash) == 64


class RandomC(JobRunner):
    def compute(self, spec, seed):
        return np.random.default_rng(1).integers(-8, 8, spec.output_shape)


class Zeros(JobRunner):
    def compute(self, spec, seed):
        return np.zeros(spec.output_shape, dtype=np.int64)


class HalfTheRows(JobRunner):
    def compute(self, spec, seed):
        out = super().compute(spec, seed)
        out[spec.n // 2 :] = 0  # "computed" only the first half
        return out


class OtherSeed(JobRunner):
    def compute(self, spec, seed):
        return super().compute(spec, "ab" * 32)


class InconsistentY(JobRunner):
    def answer(self, spec, output, tree, challenge):
        answer = super().answer(spec, output, tree, challenge)
        answer["y"][challenge["indices"][0]] += 1
        return answer


class WrongYElsewhere(JobRunner):
    def answer(self, spec, output, tree, challenge):
        answer = super().answer(spec, output, tree, challenge)
        untouched = next(i for i in range(len(answer["y"])) if i not in challenge["indices"])
        answer["y"][untouched] += 1
        return answer


@pytest.mark.parametrize(
    ("runner_cls", "spec", "reason"),
    [
        (RandomC, SMALL, "row_mismatch"),
        (Zeros, SMALL, "row_mismatch"),
        (HalfTheRows, SMALL, "row_mismatch"),
        (OtherSeed, SMALL, "row_mismatch"),
        (InconsistentY, SMALL, "y_inconsistent"),
        (WrongYElsewhere, SMALL, "freivalds_failed"),
        (RandomC, SMALL_CONV, "plane_mismatch"),
        (Zeros, SMALL_CONV, "plane_mismatch"),
    ],
    ids=[
        "random",
        "zeros",
        "half-rows",
        "other-seed",
        "y-vs-rows",
        "y-freivalds",
        "conv-random",
        "conv-zeros",
    ],
)
def test_wrong_results_are_rejected(cheater, runner_for, verdicts, runner_cls, spec, reason):
    machine, api, _, job = cheater(spec)
    result = runner_for(api, runner_cls).run_once(wait=0)
    assert (result.state, result.reason) == ("rejected", reason)
    _assert_punished(machine, job.pk, reason, verdicts)


def test_replaying_an_earlier_jobs_result_is_rejected(cheater, runner_for, verdicts):
    machine, api, _, first = cheater()
    kept = {}

    class Replayer(JobRunner):
        def compute(self, spec, seed):
            if "output" not in kept:
                kept["output"] = super().compute(spec, seed)
            return kept["output"]

    runner = runner_for(api, Replayer)
    assert runner.run_once(wait=0).state == "verified"
    second = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SMALL)
    result = runner.run_once(wait=0)
    assert (result.job_id, result.state, result.reason) == (second.pk, "rejected", "row_mismatch")
    _assert_punished(machine, second.pk, "row_mismatch", verdicts)


def test_replaying_an_earlier_answer_body_is_rejected(cheater, runner_for, verdicts):
    machine, api, _, first = cheater()
    bodies = []

    class Recorder(JobRunner):
        def answer_body(self, answer):
            bodies.append(super().answer_body(answer))
            return bodies[0]

    runner = runner_for(api, Recorder)
    assert runner.run_once(wait=0).state == "verified"
    second = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SMALL)
    result = runner.run_once(wait=0)
    # The old answer names the old challenge's rows: a fresh challenge never matches it.
    assert result.state == "rejected" and result.reason in (
        "malformed_answer",
        "merkle_proof_invalid",
    )
    _assert_punished(machine, second.pk, result.reason, verdicts)


def test_score_comes_from_server_time_not_the_agents_claim(cheater, runner_for, verdicts):
    machine, api, _, job = cheater()

    class Boaster(JobRunner):
        def compute(self, spec, seed):
            time.sleep(0.3)  # however long it really takes...
            return super().compute(spec, seed)

        def commitment_body(self, root, agent_seconds, device=""):
            return super().commitment_body(root, 1e-9, device)  # ...it claims a nanosecond

    result = runner_for(api, Boaster).run_once(wait=0)
    assert result.state == "verified"
    job.refresh_from_db()
    span = (job.committed_at - job.dispatched_at).total_seconds()
    assert span >= 0.3 and job.agent_seconds == 1e-9
    assert job.measured_seconds == pytest.approx(span)
    assert job.measured_tflops == pytest.approx(job.flops / span / 1e12)
    assert job.measured_tflops < job.flops / 0.3 / 1e12


def test_commitment_before_dispatch_is_refused_and_changes_nothing(cheater, verdicts):
    machine, api, client, job = cheater()
    # The job id is guessable but the seed is not; committing before dispatch is refused.
    body = json.dumps({"root": "0" * 64, "agent_seconds": 0.001})
    response = client.post(
        f"/api/v1/agent/jobs/{job.pk}/commitment", body, content_type="application/json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "benchmarkjob_invalid_transition"
    job.refresh_from_db()
    assert job.state == "queued" and verdicts == []


def test_gpu_claim_that_throughput_cannot_match_is_rejected(
    settings, mallory_provider, make_agent, runner_for, verdicts
):
    # A CPU registering as an H100: its first job is held to an H100's floor. Sizes are
    # CPU-small here, so the plumbing allowance is set to nothing (what the floor would be if
    # the span were all kernel): the floor is then 25% of an H100's fp32 peak. (With the 1 s
    # allowance the small probe's floor is 51 GFLOP/s, which an idle AVX-512 box beats.)
    settings.BENCHMARK_SMALL_SUITES = True
    settings.BENCHMARK_FLOOR_BASE_SECONDS = 0
    settings.BENCHMARK_CHAIN_FLOOR_BASE_SECONDS = 0
    settings.BENCHMARK_FLOOR_SECONDS_PER_MB = 0
    machine, api, _ = make_agent(mallory_provider, hardware=H100_ON_A_CPU)
    result = runner_for(api).run_once(wait=0)
    assert (result.state, result.reason) == ("rejected", "claimed_device_mismatch")
    job = BenchmarkJob.objects.get(pk=result.job_id)
    assert job.measured_tflops < 67 * 0.25
    _assert_punished(machine, job.pk, "claimed_device_mismatch", verdicts)
    # The rest of the suite is closed without further penalties.
    assert set(
        BenchmarkJob.objects.filter(machine=machine)
        .exclude(pk=job.pk)
        .values_list("outcome_reason", flat=True)
    ) == {"suite_failed"}


def _post_raw(client, job_id, what, body):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.generic(
            "POST", f"/api/v1/agent/jobs/{job_id}/{what}", body, content_type="application/json"
        )


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"root": "' + b"a" * 64 + b'", "agent_seconds": NaN}',
        b'{"root": "' + b"a" * 64 + b'", "agent_seconds": -1}',
        b'{"root": "xyz", "agent_seconds": 1}',
        b'{"root": "' + b"a" * 64 + b'", "agent_seconds": 1, "extra": ' + b"1" * 2000 + b"}",
    ],
    ids=["not-json", "nan", "negative", "bad-root", "oversized"],
)
def test_malformed_commitments_are_rejected(cheater, verdicts, body):
    machine, api, client, job = cheater()
    api.next_job(0)
    response = _post_raw(client, job.pk, "commitment", body)
    assert response.status_code == 422
    assert response.json()["error"]["detail"]["reason"] == "malformed_commitment"
    _assert_punished(machine, job.pk, "malformed_commitment", verdicts)


class RawAnswer(JobRunner):
    body = b""

    def answer_body(self, answer):
        return self.body(answer) if callable(self.body) else self.body


def _nan_y(answer):
    text = json.dumps(answer)
    return text.replace('"y": [', '"y": [NaN, ', 1).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        _nan_y,
        lambda answer: json.dumps({**answer, "y": [float("nan")] * len(answer["y"])}).encode(),
        lambda answer: json.dumps({"y": answer["y"], "rows": []}).encode(),
        lambda answer: b" " * (8 << 20),
    ],
    ids=["truncated", "nan-token", "nan-values", "no-rows", "oversized"],
)
def test_malformed_answers_are_rejected(cheater, runner_for, verdicts, body):
    machine, api, _, job = cheater()
    runner_cls = type("Raw", (RawAnswer,), {"body": staticmethod(body) if callable(body) else body})
    result = runner_for(api, runner_cls).run_once(wait=0)
    assert (result.state, result.reason) == ("rejected", "malformed_answer")
    _assert_punished(machine, job.pk, "malformed_answer", verdicts)


def test_answer_after_the_deadline_expires_the_job(cheater, runner_for, verdicts):
    machine, api, _, job = cheater()

    class Late(JobRunner):
        def answer(self, spec, output, tree, challenge):
            BenchmarkJob.objects.filter(pk=job.pk).update(deadline="2000-01-01T00:00:00Z")
            return super().answer(spec, output, tree, challenge)

    result = runner_for(api, Late).run_once(wait=0)
    assert (result.state, result.reason) == ("expired", "deadline_exceeded")
    _assert_punished(machine, job.pk, "deadline_exceeded", verdicts, state="expired")


def test_commitment_after_the_deadline_expires_the_job(cheater, runner_for, verdicts):
    machine, api, _, job = cheater()

    class Slow(JobRunner):
        def compute(self, spec, seed):
            BenchmarkJob.objects.filter(pk=job.pk).update(deadline="2000-01-01T00:00:00Z")
            return super().compute(spec, seed)

    result = runner_for(api, Slow).run_once(wait=0)
    assert (result.state, result.reason) == ("expired", "deadline_exceeded")
    _assert_punished(machine, job.pk, "deadline_exceeded", verdicts, state="expired")


def test_silent_agent_is_expired_by_beat(cheater, verdicts):
    from marketplace.benchmarks.services import benchmarks_expire_overdue

    machine, api, _, job = cheater()
    api.next_job(0)
    assert benchmarks_expire_overdue() == []
    BenchmarkJob.objects.filter(pk=job.pk).update(deadline="2000-01-01T00:00:00Z")
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert benchmarks_expire_overdue() == [job.pk]
    _assert_punished(machine, job.pk, "deadline_exceeded", verdicts, state="expired")


def test_answering_another_machines_job_is_not_found(bob_provider, cheater, make_agent, verdicts):
    bob_machine, bob_api, _ = make_agent(bob_provider)
    Machine.objects.filter(pk=bob_machine.pk).update(state=Machine.State.VERIFIED)
    bobs_job = benchmark_job_create(machine_id=bob_machine.pk, purpose="periodic", spec=SMALL)
    dispatched = bob_api.next_job(0)
    _, _, mallory_client, _ = cheater()
    output = compute(
        __import__("workers.kernels", fromlist=["x"]).spec_from_dict(SMALL), dispatched["seed"]
    )
    assert output.shape == (64, 64)
    for what, body in [
        ("commitment", json.dumps({"root": "a" * 64, "agent_seconds": 1})),
        ("answer", json.dumps({"y": [], "rows": []})),
    ]:
        response = _post_raw(mallory_client, bobs_job.pk, what, body)
        assert response.status_code == 404
    assert mallory_client.get(f"/api/v1/agent/jobs/{bobs_job.pk}/challenge").status_code == 404
    assert mallory_client.get(f"/api/v1/agent/jobs/{bobs_job.pk}").status_code == 404
    bobs_job.refresh_from_db()
    assert bobs_job.state == "dispatched" and verdicts == []
