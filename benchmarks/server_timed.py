"""Does the server-timed figure measure the device? For every job of this machine's CPU suite:
the figure the platform records (FLOPs over the span from dispatch to the agent's message, as
the channel server sees it) beside the same kernel's compute-only throughput measured here (what
`python -m workers.agent bench` prints: the L layers alone, best of 3), and their ratio.

    nice .venv/bin/python benchmarks/server_timed.py
    nice .venv/bin/python benchmarks/server_timed.py --repeats 3

It starts the agent channel (the Procfile's `channel` line, uvicorn) and a Celery worker (its
`worker` line) against its own SQLite file and REDIS_URL, registers this host through POST
/api/v1/agent/register as a CPU machine, queues each suite job for it and runs the stock
JobRunner against the channel until the worker's verdict.

Target (issue 9): for every CPU suite job, server-timed >= 80% of compute-only. int8 jobs keep
the Merkle protocol (exact integers, a tree over n^2 cells), which the target is not met by;
they are printed for the record.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.fleet import Server, _configure  # noqa: E402

TARGET_RATIO = 0.80
DEFAULT_DB = f"sqlite:///{REPO_ROOT / '.run' / 'bench_server_timed.sqlite3'}"


def compute_only_tflops(spec, backend: str, repeats: int) -> float:
    """The kernel alone on inputs already on the device: the chain's L layers (or the Merkle
    job's single product), best of `repeats` after one warm-up run."""
    from workers.kernels import bench
    from workers.kernels.chain_run import chain_prepare

    if spec.protocol != "chain-sketch":
        return bench(spec, backend, repeats=repeats)["tflops"]
    prepared = chain_prepare(spec, "5e" * 32, backend)
    prepared.layers_only()
    prepared.sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        prepared.layers_only()
        prepared.sync()
        best = min(best, time.perf_counter() - start)
    return spec.flops / best / 1e12


def register_machine(url: str):
    from marketplace.accounts.models import User
    from marketplace.providers.models import Machine, Provider
    from marketplace.providers.services import registration_token_create
    from workers.agent import hardware
    from workers.agent.client import AgentApi, RequestsTransport

    owner, _ = User.objects.get_or_create(
        username="bench-server-timed", defaults={"role": "provider_owner"}
    )
    Machine.objects.filter(provider__owner=owner).delete()
    provider, _ = Provider.objects.get_or_create(
        owner=owner, name="server-timed", defaults={"wallet_address": "0x" + "5e" * 20}
    )
    _, token = registration_token_create(provider=provider, user=owner)
    detected = hardware.detect()
    registered = AgentApi(RequestsTransport(url, "")).register(
        token, "server-timed", detected, "bench"
    )
    credential = registered["credential"]
    machine = Machine.objects.get(pk=registered["machine_id"])
    # Verified already: these are periodic jobs, not an onboarding suite.
    Machine.objects.filter(pk=machine.pk).update(state=Machine.State.VERIFIED)
    return machine, AgentApi(RequestsTransport(url, credential))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="compute-only timing repeats")
    parser.add_argument("--rounds", type=int, default=1, help="server-timed runs per job")
    args = parser.parse_args()
    os.environ.setdefault("BENCHMARK_SMALL_SUITES", "1")
    _configure(os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DB)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.conf import settings

    from marketplace.benchmarks.services import benchmark_job_create
    from marketplace.benchmarks.suites import suite_specs
    from workers.agent.runner import JobRunner
    from workers.kernels import job_spec_from_dict

    env = {
        **os.environ,
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "LOG_LEVEL": "WARNING",
    }
    channel = Server("channel", env)
    worker = _start_worker(env)
    try:
        machine, api = register_machine(channel.url)
        runner = JobRunner(api, verdict_timeout=300)
        runner.warm_up()
        specs = suite_specs(
            accelerator_kind="cpu", backends=machine.backends, model=machine.accelerator_model
        )
        print(
            f"{'job':<30} {'backend':<10} {'server TFLOP/s':>15} {'compute-only':>13} "
            f"{'ratio':>7} {'target':>7}  verdict"
        )
        worst = float("inf")
        for raw in specs:
            spec = job_spec_from_dict(raw)
            backend = runner.backend_for(spec)
            compute_only = compute_only_tflops(spec, backend, args.repeats)
            figures, verdicts = [], []
            for _ in range(args.rounds):
                job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=raw)
                result = runner.run_once(wait=0)
                job.refresh_from_db()
                if job.measured_tflops is None:
                    raise SystemExit(f"job {job.pk} not measured: {job.state} {result}")
                figures.append(job.measured_tflops)
                verdicts.append(result.reason or result.state)
            server = max(figures)
            ratio = server / compute_only
            label = f"{spec.kind}/{spec.precision} ({spec.protocol})"
            if spec.protocol == "chain-sketch":
                worst = min(worst, ratio)
            print(
                f"{label:<30} {backend:<10} {server:>15.4f} {compute_only:>13.4f} "
                f"{ratio:>7.2f} {TARGET_RATIO if spec.protocol == 'chain-sketch' else '-':>7}  "
                f"{','.join(sorted(set(verdicts)))}"
            )
        print(
            f"\nchain-sketch jobs: worst server-timed / compute-only = {worst:.2f} "
            f"(target >= {TARGET_RATIO:.2f}: {'met' if worst >= TARGET_RATIO else 'MISSED'})"
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        channel.stop()


def _start_worker(env: dict[str, str]):
    import subprocess

    from benchmarks.fleet import procfile_command

    log = open(REPO_ROOT / ".run" / "bench_server_timed_worker.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        procfile_command("worker", 0), cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )


if __name__ == "__main__":
    main()
