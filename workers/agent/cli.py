"""python -m workers.agent {register,info,run,bench,stake}"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from typing import Any

from workers.agent import AGENT_VERSION
from workers.agent.client import (
    AgentApi,
    ApiError,
    RequestsTransport,
    ServerUnreachable,
    backoff_seconds,
)
from workers.agent.config import ConfigError, config_load, config_path, config_save, url_normalize
from workers.agent.runner import JobRunner
from workers.agent.workloads import start_workload_loop

HEARTBEAT_SECONDS = 30

__all__ = ["backoff_seconds", "build_parser", "main", "run_loop"]


def _err(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


# --- register ---------------------------------------------------------------------------------


def cmd_register(args: argparse.Namespace) -> int:
    from workers.agent.hardware import detect

    try:
        url = url_normalize(args.url)
    except ConfigError as exc:
        return _err(str(exc))
    detected = detect()
    for line in detected["disagreements"]:
        print(f"warning: {line}", file=sys.stderr)
    api = AgentApi(RequestsTransport(url))
    name = args.name or socket.gethostname()[:100]
    try:
        data = api.register(args.token, name, detected["hardware"], AGENT_VERSION)
    except ServerUnreachable as exc:
        return _err(f"cannot reach the server: {exc}")
    except ApiError as exc:
        return _err(f"registration refused: {exc.message}")
    path = config_path(args.config)
    config_save(
        path, {"url": url, "credential": data["credential"], "machine_id": data["machine_id"]}
    )
    print(f"registered machine {data['machine_id']} ({name}); credential saved to {path}")
    return 0


# --- info -------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from workers.agent.hardware import detect

    detected = detect()
    hw = detected["hardware"]
    rows = [
        ("CPU", f"{hw['cpu']['model']} ({hw['cpu']['vendor'] or '?'})"),
        ("CPU cores", str(hw["cpu"]["cores"])),
        ("RAM", f"{hw['ram_gib']} GiB"),
        ("backends", ", ".join(hw["backends"]) or "none"),
    ]
    for source, gpus in detected["sources"].items():
        if gpus is None:
            value = "not available"
        elif not gpus:
            value = "no GPUs"
        else:
            value = "; ".join(f"{g['model']} {g['memory_gb']} GiB" for g in gpus)
        rows.append((f"GPUs ({source})", value))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    for line in detected["disagreements"]:
        print(f"disagreement: {line}")
    return 0


# --- run --------------------------------------------------------------------------------------


class _Heartbeat(threading.Thread):
    """Keeps the server's last sight of this machine within `interval` seconds. A poll for work
    counts as a heartbeat on the server, so an agent that is polling sends none: heartbeats
    go out only while it runs a job (or cannot poll)."""

    def __init__(self, api: AgentApi, stop: threading.Event, interval: float) -> None:
        super().__init__(daemon=True, name="heartbeat")
        self.api, self.stop, self.interval = api, stop, interval

    def run(self) -> None:
        while not self.stop.is_set():
            due_in = self.api.server_saw_at + self.interval - time.monotonic()
            if due_in > 0:
                self.stop.wait(due_in)
                continue
            try:
                self.api.heartbeat()
            except (ServerUnreachable, ApiError) as exc:
                print(f"heartbeat failed: {exc}", file=sys.stderr)
                self.stop.wait(self.interval)


def run_loop(
    runner: JobRunner,
    stop: threading.Event,
    *,
    max_jobs: int | None,
    poll_wait: int,
    log=print,
) -> int:
    done, attempt = 0, 0
    while not stop.is_set() and (max_jobs is None or done < max_jobs):
        try:
            results = _next_results(runner, poll_wait)
            attempt = 0
        except ServerUnreachable as exc:
            delay = backoff_seconds(attempt)
            attempt += 1
            log(f"server unreachable ({exc}); retrying in {delay:.1f}s")
            stop.wait(delay)
            continue
        except ApiError as exc:
            if exc.status in (401, 403):
                log(f"error: the server refused this agent: {exc.message}")
                return 2
            if exc.status == 429:
                delay = float((exc.detail or {}).get("retry_after_seconds", 5))
                log(f"throttled; waiting {delay:.0f}s")
                stop.wait(delay)
                continue
            log(f"job failed: {exc.message}")
            done += 1
            continue
        for result in results:
            done += 1
            tflops = f"{result.measured_tflops:.4f} TFLOP/s" if result.measured_tflops else ""
            log(f"job {result.job_id}: {result.state} {result.reason} {tflops}".rstrip())
    return 0


def _next_results(runner: JobRunner, poll_wait: int) -> list:
    """Every device's job at once (run_batch); a runner that only knows run_once takes one."""
    batch = getattr(runner, "run_batch", None)
    if batch is not None:
        return batch(wait=poll_wait)
    result = runner.run_once(wait=poll_wait)
    return [] if result is None else [result]


def cmd_run(args: argparse.Namespace) -> int:
    try:
        config = config_load(config_path(args.config))
    except ConfigError as exc:
        return _err(str(exc))
    api = AgentApi(RequestsTransport(config["url"], config["credential"]))
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: stop now, mid-job
        print(f"signal {signum}: finishing the current step, then exiting", file=sys.stderr)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    _Heartbeat(api, stop, args.heartbeat_seconds).start()
    start_workload_loop(api, stop, config)  # renters' workloads, on their own thread
    runner = JobRunner(api, backend=args.backend, progress=not args.no_progress)
    max_jobs = 1 if args.once else args.max_jobs
    try:
        return run_loop(runner, stop, max_jobs=max_jobs, poll_wait=args.poll_wait)
    except KeyboardInterrupt:
        return 130
    finally:
        stop.set()


# --- bench ------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    from workers.kernels import BackendError, SpecError, bench, job_spec_from_dict
    from workers.kernels.chain_run import chain_backends

    if args.kind == "matmul_chain":
        raw = {
            "kind": "matmul_chain",
            "n": args.n,
            "rows": args.rows,
            "layers": args.layers,
            "precision": args.precision,
        }
    elif args.kind == "conv2d_chain":
        raw = {
            "kind": "conv2d_chain",
            "batch": args.batch,
            "channels": args.channels,
            "height": args.n,
            "width": args.n,
            "kernel_size": args.kernel_size,
            "layers": args.layers,
            "precision": args.precision,
        }
    elif args.kind == "matmul":
        raw = {"kind": "matmul", "n": args.n, "precision": args.precision}
    else:
        raw = {
            "kind": "conv2d",
            "batch": args.batch,
            "in_channels": args.channels,
            "out_channels": args.channels,
            "height": args.n,
            "width": args.n,
            "kernel_size": args.kernel_size,
            "stride": 1,
            "padding": args.kernel_size // 2,
            "precision": args.precision,
        }
    try:
        spec = job_spec_from_dict(raw)
        if args.backend:
            backend = args.backend
        elif spec.protocol == "chain-sketch":
            backend = (chain_backends(spec.precision, spec.family) or ["numpy"])[0]
        else:
            from workers.kernels import best_backend

            backend = best_backend(spec)
        result = bench(spec, backend, repeats=args.repeats)
    except (SpecError, BackendError) as exc:
        return _err(str(exc))
    print(
        f"{result['kind']} {result['precision']} on {result['backend']} ({result['device']}): "
        f"{result['tflops']:.4f} TFLOP/s (best of {result['repeats']}: "
        f"{result['seconds'] * 1e3:.2f} ms; inputs {result['generate_seconds'] * 1e3:.1f} ms)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workers.agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = "config file (default $AGENT_CONFIG or ~/.config/gpu-marketplace/agent.json)"

    p = sub.add_parser("register", help="exchange a registration token for a credential")
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--name")
    p.add_argument("--config", help=config_help)
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("info", help="show the detected hardware")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("run", help="heartbeat and run benchmark jobs")
    p.add_argument("--config", help=config_help)
    p.add_argument("--once", action="store_true", help="process one job, then exit")
    p.add_argument("--max-jobs", type=int, default=None)
    p.add_argument("--backend", help="force a backend (numpy, torch, torch-cuda, cupy)")
    p.add_argument("--poll-wait", type=int, default=20, choices=range(0, 26), metavar="0..25")
    p.add_argument("--heartbeat-seconds", type=float, default=HEARTBEAT_SECONDS)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "bench",
        help="time a kernel locally (no server); the defaults are the CPU suite's fp32 matmul",
    )
    p.add_argument(
        "--kind",
        choices=["matmul_chain", "conv2d_chain", "matmul", "conv2d"],
        default="matmul_chain",
        help="chain kernels are the platform's floating-point jobs; matmul/conv2d its int8 ones",
    )
    p.add_argument("--n", type=int, default=512, help="matrix size, or image size for conv2d")
    p.add_argument("--rows", type=int, default=1024, help="rows of a matmul chain's input")
    p.add_argument("--layers", type=int, default=96, help="layers of a chain")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--backend")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--kernel-size", type=int, default=3)
    p.set_defaults(func=cmd_bench)

    from workers.agent.staking import add_stake_parser

    add_stake_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
