"""An honest agent is never rejected: many small jobs across kernels and precisions, each through
the real API, services and agent code."""

import random
import time

import pytest

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import benchmark_job_create
from marketplace.providers.models import Machine

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

HONEST_JOBS = 1000


def _random_spec(rng: random.Random) -> dict:
    precision = rng.choice(["fp32", "bf16", "fp16", "int8"])
    if precision == "int8" or rng.random() < 0.6:
        return {"kind": "matmul", "n": rng.randint(1, 48), "precision": precision}
    k = rng.choice([1, 3])
    return {
        "kind": "conv2d",
        "batch": rng.randint(1, 2),
        "in_channels": rng.randint(1, 8),
        "out_channels": rng.randint(1, 8),
        "height": rng.randint(k, 10),
        "width": rng.randint(k, 10),
        "kernel_size": k,
        "stride": rng.randint(1, 2),
        "padding": rng.randint(0, k - 1),
        "precision": precision,
    }


def test_honest_agent_is_never_rejected(settings, bob_provider, make_agent, runner_for, verdicts):
    # A thousand jobs in a minute is a test's pace, not an agent's: lift the per-agent throttle.
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "agent": "100000/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    machine, api, _ = make_agent(bob_provider)
    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.VERIFIED)
    rng = random.Random(20240611)
    runner = runner_for(api)
    started = time.monotonic()
    states = {}
    for _ in range(HONEST_JOBS):
        benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=_random_spec(rng))
        result = runner.run_once(wait=0)
        states[result.state] = states.get(result.state, 0) + 1
    elapsed = time.monotonic() - started
    assert states == {"verified": HONEST_JOBS}, states
    kinds = set(BenchmarkJob.objects.values_list("kind", "precision"))
    assert len(kinds) == 7  # both kernels at every precision they run in
    assert [k for k, _ in verdicts] == ["passed"] * HONEST_JOBS
    machine.refresh_from_db()
    assert machine.state == Machine.State.VERIFIED
    print(f"{HONEST_JOBS} honest jobs, 0 rejections, {elapsed:.1f}s")
