import pytest

from marketplace.benchmarks.models import BenchmarkJob, BenchmarkSuite
from marketplace.listings.models import Listing
from marketplace.providers.models import Machine
from tests.conftest import client_for
from tests.factories import ListingFactory

pytestmark = pytest.mark.django_db


def _drain(runner, limit=50):
    results = []
    for _ in range(limit):
        result = runner.run_once(wait=0)
        if result is None:
            return results
        results.append(result)
    raise AssertionError("agent never ran out of jobs")


def test_first_poll_starts_onboarding_with_matmul_and_conv_per_backend_precision(
    bob_provider, make_agent
):
    machine, api, _ = make_agent(bob_provider)
    assert not BenchmarkJob.objects.filter(machine=machine).exists()
    job = api.next_job(0)
    suite = BenchmarkSuite.objects.get(machine=machine)
    kinds = set(suite.jobs.values_list("kind", "precision"))
    # numpy + torch on a CPU: fp32, bf16, fp16 for both kernels, int8 for matmul only; no tf32.
    assert kinds == {
        ("matmul", "fp32"),
        ("matmul", "bf16"),
        ("matmul", "fp16"),
        ("matmul", "int8"),
        ("conv2d", "fp32"),
        ("conv2d", "bf16"),
        ("conv2d", "fp16"),
    }
    assert job["id"] == suite.jobs.order_by("pk").first().pk
    assert len(job["seed"]) == 64


def test_honest_agent_passes_onboarding_and_machine_becomes_verified(
    bob_provider, make_agent, runner_for, verdicts
):
    machine, api, _ = make_agent(bob_provider)
    results = _drain(runner_for(api))
    assert len(results) == 7
    assert {r.state for r in results} == {"verified"}
    machine.refresh_from_db()
    assert machine.state == Machine.State.VERIFIED
    assert BenchmarkSuite.objects.get(machine=machine).state == BenchmarkSuite.State.PASSED
    assert [kind for kind, _ in verdicts] == ["passed"] * 7
    assert all(
        kw["report_hash"].startswith("0x") and len(kw["report_hash"]) == 66 for _, kw in verdicts
    )
    for job in BenchmarkJob.objects.filter(machine=machine):
        assert job.measured_tflops > 0 and job.report_hash and job.answer is None
        # Server-timed: the span from dispatch to commitment, never shorter than the agent's.
        span = (job.committed_at - job.dispatched_at).total_seconds()
        assert job.measured_seconds == pytest.approx(max(span, job.agent_seconds))


def test_onboarding_pass_records_fp32_matmul_figure_on_existing_listing(
    bob_provider, make_agent, runner_for
):
    machine, api, _ = make_agent(bob_provider)
    listing = ListingFactory(machine=machine, accelerator_count=1, verified_tflops=None)
    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.REGISTERED)
    _drain(runner_for(api))
    listing.refresh_from_db()
    fp32 = BenchmarkJob.objects.get(machine=machine, kind="matmul", precision="fp32")
    assert listing.verified_tflops == pytest.approx(fp32.measured_tflops)
    assert Listing.objects.get(pk=listing.pk).price_per_tflop_hour is not None


def test_seed_is_never_shown_before_dispatch(bob, bob_provider, make_agent, runner_for):
    machine, api, agent_client = make_agent(bob_provider)
    job = api.next_job(0)
    queued = BenchmarkJob.objects.filter(machine=machine, state="queued").first()
    status = agent_client.get(f"/api/v1/agent/jobs/{queued.pk}").json()
    assert "seed" not in status and status["state"] == "queued"
    owner_view = client_for(bob).get(f"/api/v1/machines/{machine.pk}/benchmarks").json()
    assert job["seed"] not in str(owner_view) and queued.seed not in str(owner_view)


def test_machine_benchmarks_api_shows_scores_and_reputation_to_owner_only(
    bob, mallory, staff, bob_provider, make_agent, runner_for
):
    machine, api, _ = make_agent(bob_provider)
    _drain(runner_for(api))
    url = f"/api/v1/machines/{machine.pk}/benchmarks"
    body = client_for(bob).get(url).json()
    scores = {(s["kind"], s["precision"]): s for s in body["scores"]}
    assert len(scores) == 7
    fp32 = scores[("matmul", "fp32")]
    assert fp32["best_tflops"] >= fp32["last_tflops"] > 0 and fp32["verified_jobs"] == 1
    assert body["reputation"]["pass_ratio"] == 1.0 and body["reputation"]["recent_jobs"] == 7
    assert client_for(staff).get(url).status_code == 200
    assert client_for(mallory).get(url).status_code == 404
