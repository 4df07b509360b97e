"""Does the server-timed figure measure the device? For every job of this machine's CPU suite:
the figure the platform records (FLOPs over the span from dispatch to the agent's message, as
the channel server sees it) beside the same kernel's compute-only throughput measured here (what
`python -m workers.agent bench` prints: the L layers alone, best of 3), and their ratio.

    nice .venv/bin/python benchmarks/server_timed.py
    nice .venv/bin/python benchmarks/server_timed.py --repeats 3

It starts the agent channel (the Procfile's `channel` line, uvicorn) and a Celery worker (its
`worker` line) against its own SQLite file and REDIS_URL, registers this host through POST
/api/v1/agent/register with the hardware the agent detects, and runs its whole onboarding
suite with the stock JobRunner; then times each job's kernel alone on the same device.

With --full, the claimed device's own suite (a GPU host claims its GPUs, which is what
benchmarks/gpu_check.sh runs), one job per device, run side by side.

Target (issue 9): for every CPU suite job, server-timed >= 80% of compute-only. Every job is a
chain-sketch job (int8 the exact integer chain); a job created before that (the Merkle
protocol's int8) would be printed for the record, without a target. CPU jobs after the first are
sized by the server from the machine's verified figures (suites.cpu_job_sized), so the kernel
runs about a second; compute-only is timed on the same, sized, spec.
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


def compute_only(spec, backend: str, repeats: int) -> tuple[float, float]:
    """The kernel alone on inputs already on the device after a warm-up run, as TFLOP/s: the
    best and the median of `repeats` (a chain job's L layers, a Merkle job's product: what
    `python -m workers.agent bench` times). On a shared box the best is the least-contended
    run, the median what a single run (the job's) usually gets."""
    from workers.kernels import bench

    figures = bench(spec, backend, repeats=repeats, seed="5e" * 32)
    return figures["tflops"], spec.flops / figures["median_seconds"] / 1e12


def register_machine(url: str):
    """This host, registered through the API with the hardware its agent detects (a GPU host
    claims its GPUs), and left to onboard on its first poll."""
    from marketplace.accounts.models import User
    from marketplace.providers.models import Machine, Provider
    from marketplace.providers.services import registration_token_create
    from workers.agent import hardware
    from workers.agent.client import AgentApi, RequestsTransport

    owner, _ = User.objects.get_or_create(
        username="bench-server-timed", defaults={"role": "provider_owner"}
    )
    provider, _ = Provider.objects.get_or_create(
        owner=owner, name="server-timed", defaults={"wallet_address": "0x" + "5e" * 20}
    )
    _, token = registration_token_create(provider=provider, user=owner)
    registered = AgentApi(RequestsTransport(url, "")).register(
        token, "server-timed", hardware.detect()["hardware"], "bench"
    )
    machine = Machine.objects.get(pk=registered["machine_id"])
    return machine, AgentApi(RequestsTransport(url, registered["credential"]))


def onboard(runner, machine, *, timeout: float, settle: float) -> list:
    """The machine's whole onboarding suite through the stock agent: every device's job of a
    kernel at once (run_batch), until the server has nothing more for it. `settle` seconds
    between jobs let the server finish what follows a verdict (suite progress, listings,
    webhooks) before the next job is dispatched: on one small box the server shares the
    agent's cores, which a deployed platform does not."""
    from marketplace.providers.models import Machine

    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        time.sleep(settle)
        if not runner.run_batch(wait=2):
            state = Machine.objects.values_list("state", flat=True).get(pk=machine.pk)
            if state != Machine.State.REGISTERED:
                return
    raise SystemExit(f"onboarding did not finish in {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="compute-only timing repeats")
    parser.add_argument(
        "--full",
        action="store_true",
        help="the claimed device's full suite (default: BENCHMARK_SMALL_SUITES, CPU sizes)",
    )
    parser.add_argument("--timeout", type=float, default=600, help="onboarding time limit, s")
    parser.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds between jobs for the server's after-verdict work (same box only)",
    )
    args = parser.parse_args()
    if not args.full:
        os.environ.setdefault("BENCHMARK_SMALL_SUITES", "1")
    if not os.environ.get("BENCH_DATABASE_URL"):
        # Its own file, fresh each run: one machine and its jobs.
        (REPO_ROOT / ".run" / "bench_server_timed.sqlite3").unlink(missing_ok=True)
    _configure(os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DB)
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from marketplace.benchmarks.models import BenchmarkJob
    from workers.agent import hardware
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
        print(
            f"machine {machine.pk}: {machine.accelerator_kind} '{machine.accelerator_model}' "
            f"x{max(1, machine.accelerator_count)}, backends {machine.backends}",
            flush=True,
        )
        runner = JobRunner(api, challenge_wait=5, verdict_timeout=600)
        runner.warm_up()
        started = time.monotonic()
        onboard(runner, machine, timeout=args.timeout, settle=args.settle)
        machine.refresh_from_db()
        print(
            f"onboarding: {machine.state} in {time.monotonic() - started:.0f} s "
            f"{machine.state_reason or ''}; verified devices {machine.verified_device_count}, "
            f"precisions {machine.verified_precisions}\n"
        )
        print(
            f"{'dev':>3} {'job':<30} {'backend':<10} {'server TFLOP/s':>15} "
            f"{'compute-only':>13} {'ratio':>7} {'target':>7} {'vs median':>9} "
            f"{'span s':>7} {'agent s':>7} {'plumbing':>9}  verdict"
        )
        worst = float("inf")
        timed: dict[tuple, tuple[float, float]] = {}
        jobs = BenchmarkJob.objects.filter(machine=machine).order_by("pk")
        for job in jobs:
            spec = job_spec_from_dict(job.spec)
            backend = runner.backend_for(spec)
            key = (job.device_index, job.kind, job.precision, job.spec.get("kind"))
            if key not in timed:
                with hardware.device_pin(job.device_index, backend):
                    timed[key] = compute_only(spec, backend, args.repeats)
            best, median = timed[key]
            figure = job.measured_tflops or 0.0
            ratio = figure / best
            chain = spec.protocol == "chain-sketch"
            if chain and job.state == BenchmarkJob.State.VERIFIED:
                worst = min(worst, ratio)
            label = f"{spec.kind}/{spec.precision} ({spec.protocol})"
            # The span beyond the agent's own generate+compute+sketch time: dispatch, JSON, HTTP
            # (what the protocol puts around the kernel), load-independent unlike the ratio.
            span, agent = job.measured_seconds or 0.0, job.agent_seconds or 0.0
            print(
                f"{job.device_index:>3} {label:<30} {backend:<10} {figure:>15.4f} "
                f"{best:>13.4f} {ratio:>7.2f} {TARGET_RATIO if chain else '-':>7} "
                f"{figure / median:>9.2f} {span:>7.3f} {agent:>7.3f} "
                f"{1000 * (span - agent):>6.0f} ms  {job.state} {job.outcome_reason}",
                flush=True,
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
