"""A fleet of provider agents on one web node: N asyncio agents speaking the real protocol to the
real stack, and what that costs.

    nice .venv/bin/python benchmarks/fleet.py --agents 500,5000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mkt_fleet nice .venv/bin/python \\
        benchmarks/fleet.py --agents 500,5000

For each N it starts the servers `make run` starts (the Procfile's `channel` line, uvicorn with
marketplace/asgi.py, which agents talk to; its `web` line, gunicorn, which renters search), on
free ports, against DATABASE_URL (default: its own SQLite file) and REDIS_URL; registers N
agents through POST /api/v1/agent/register with one-time registration tokens; marks their
machines verified (a verified fleet at steady state, not N onboarding suites); then runs every
agent as two coroutines, as workers/agent runs its threads: a long poll on GET
/agent/jobs/next?wait=25 that commits each job it receives, and a heartbeat whenever the server
has not seen the machine for --heartbeat-seconds (a poll counts as a heartbeat, so a polling
agent sends few). Beat's heartbeat flush runs
in this process on its schedule (HEARTBEAT_FLUSH_SECONDS), standing in for celery beat.

Over a steady window it creates --jobs jobs for random connected agents and measures, from
creation to the agent holding the job, the dispatch latency; it counts heartbeats answered,
database rows written (PostgreSQL: pg_stat_database; SQLite has no statistics, so the run
counts the flush's own writes and says so), the channel processes' RSS and CPU, and a renter's
search p95 (a separate process, sequential requests) during the load beside the same with no
agent connected. Targets: 5,000 connected agents on one web node, dispatch p95 <= 1 s, search
p95 under load <= 2x idle, database writes per second independent of N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_DB = f"sqlite:///{REPO_ROOT / '.run' / 'bench_fleet.sqlite3'}"
FLEET_OWNER = "bench-fleet-owner"
SPEC = {"kind": "matmul", "n": 64, "precision": "fp32"}
SEARCHES = [
    "/api/v1/listings?kind=gpu&min_count=4&sort=price_per_tflop_hour",
    "/api/v1/listings?model=H100",
    "/api/v1/listings?region=eu-west&sort=-price",
    "/api/v1/listings",
]
DISPATCH_P95_TARGET_S = 1.0
SEARCH_RATIO_TARGET = 2.0
AGENTS_TARGET = 5000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _configure(database_url: str | None) -> str:
    url = database_url or os.environ.get("DATABASE_URL") or DEFAULT_DB
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    if not os.environ.get("DJANGO_SECRET_KEY"):
        key = REPO_ROOT / ".run" / "secret-key"
        if key.exists():
            os.environ["DJANGO_SECRET_KEY"] = key.read_text().strip()
    (REPO_ROOT / ".run").mkdir(exist_ok=True)
    import django

    django.setup()
    return url


def _raise_file_limit() -> int:
    """Every agent holds a socket or two, and so does the server: as many as the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- servers ----------------------------------------------------------------------------------


def procfile_command(name: str, port: int) -> list[str]:
    """A Procfile line as `make run` runs it, on this run's port."""
    line = next(
        raw.split(":", 1)[1]
        for raw in (REPO_ROOT / "Procfile").read_text().splitlines()
        if raw.startswith(f"{name}:")
    )
    line = re.sub(r"\$\{(WEB|AGENT)_PORT(:-[^}]*)?\}", str(port), line)
    return ["bash", "-c", f"exec {line.strip()}"]


class Server:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.port = name, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            procfile_command(name, self.port),
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(REPO_ROOT / ".run" / f"bench_fleet_{name}.log", "w"),  # noqa: SIM115
            start_new_session=True,
        )
        import requests

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited with {self.proc.returncode}: see .run/")
            try:
                if requests.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise SystemExit(f"{name} did not answer on {self.url}")

    def pids(self) -> list[int]:
        found, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            parent = frontier.pop()
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[1]) == parent:
                    found.append(int(entry.name))
                    frontier.append(int(entry.name))
        return found

    def usage(self) -> tuple[float, int]:
        """(CPU seconds so far, RSS bytes) of the server and its workers."""
        ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
        cpu, rss = 0.0, 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            except OSError:
                continue
            cpu += (int(fields[11]) + int(fields[12])) / ticks
        return cpu, rss

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# --- database ---------------------------------------------------------------------------------


def prepare(n: int) -> list[str]:
    """A fleet owner with N fresh one-time registration tokens; the previous run's fleet gone."""
    from django.db import transaction

    from marketplace.accounts.models import User
    from marketplace.providers.models import Machine, Provider
    from marketplace.providers.services import registration_token_create

    owner, _ = User.objects.get_or_create(username=FLEET_OWNER, defaults={"role": "provider_owner"})
    Machine.objects.filter(provider__owner=owner).delete()
    provider, _ = Provider.objects.get_or_create(
        owner=owner, name="fleet", defaults={"wallet_address": "0x" + "fe" * 20}
    )
    from django.test.utils import override_settings

    # One owner registering a whole simulated fleet is the point here, not an abuse to refuse.
    with transaction.atomic(), override_settings(REGISTRATION_TOKENS_PER_DAY=10**9):
        return [registration_token_create(provider=provider, user=owner)[1] for _ in range(n)]


def seed_listings(count: int) -> None:
    """Something for the renter to search (the search benchmark's catalogue)."""
    from benchmarks.api_search import seed

    seed(count, rng=random.Random(7))


def verify_fleet(machine_ids: list[int]) -> None:
    from marketplace.providers.models import Machine

    Machine.objects.filter(pk__in=machine_ids).update(state=Machine.State.VERIFIED)


class WriteCounter:
    """Rows written to the database: PostgreSQL's own statistics for this database."""

    def __init__(self) -> None:
        from django.db import connection

        self.vendor = connection.vendor

    def rows(self) -> int | None:
        if self.vendor != "postgresql":
            return None
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
            return int(cursor.fetchone()[0])


class Flusher(threading.Thread):
    """Beat's heartbeat flush, on its schedule, in this process."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True, name="flush")
        self.interval, self.stop = interval, threading.Event()
        self.flushes = self.machines = self.writes = 0

    def _count_writes(self, execute, sql, params, many, context):
        # The flush's own write statements, counted as they reach the database.
        if sql.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")):
            self.writes += 1
        return execute(sql, params, many, context)

    def run(self) -> None:
        from django.db import close_old_connections, connection

        from marketplace.providers.heartbeats import heartbeats_flush

        while not self.stop.wait(self.interval):
            close_old_connections()
            try:
                with connection.execute_wrapper(self._count_writes):
                    self.machines += heartbeats_flush()
                self.flushes += 1
            except Exception as exc:  # noqa: BLE001 - reported, and the next flush retries
                print(f"heartbeat flush failed: {exc!r}", file=sys.stderr)


# --- agents -----------------------------------------------------------------------------------


class Fleet:
    def __init__(self, url: str, heartbeat_seconds: float) -> None:
        self.url, self.heartbeat_seconds = url, heartbeat_seconds
        self.credentials: dict[int, str] = {}
        self.waiting: set[int] = set()
        self.heartbeats = self.heartbeat_errors = self.poll_errors = 0
        # Polls answered: each counts as the machine's heartbeat on the server.
        self.polls = 0
        # Per machine, when the server last recorded it alive (its last heartbeat sent, or its
        # last poll answered), as workers/agent's AgentApi.server_saw_at.
        self.saw_at: dict[int, float] = {}
        self.created: dict[int, float] = {}
        self.received: dict[int, float] = {}
        self.woken_by: dict[int, str] = {}
        self.errors: list[str] = []
        self.stopping = False
        self.lags: list[float] = []

    async def loop_lag(self) -> None:
        """This process's own event-loop delay: when the simulated agents saturate it, the
        latencies it measures are its own, not the server's."""
        while not self.stopping:
            t = time.monotonic()
            await asyncio.sleep(0.1)
            self.lags.append(time.monotonic() - t - 0.1)

    async def register(self, session, tokens: list[str], concurrency: int = 32) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int, token: str) -> None:
            body = {
                "registration_token": token,
                "name": f"fleet-{i}",
                "hardware": {"cpu": {"model": "fleet", "cores": 2}, "backends": ["numpy"]},
                "agent_version": "fleet",
            }
            async with gate:
                for attempt in range(5):
                    async with session.post(f"{self.url}/api/v1/agent/register", json=body) as r:
                        if r.status == 201:
                            data = await r.json()
                            self.credentials[data["machine_id"]] = data["credential"]
                            return
                        text = await r.text()
                    await asyncio.sleep(0.5 * (attempt + 1))
                raise SystemExit(f"registration failed: {r.status} {text[:200]}")

        await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens)))

    async def agent(self, session, machine_id: int) -> None:
        headers = {"Authorization": f"Token {self.credentials[machine_id]}"}
        await asyncio.gather(
            self._heartbeats(session, machine_id, headers),
            self._polls(session, machine_id, headers),
        )

    async def _heartbeats(self, session, machine_id: int, headers) -> None:
        """As the agent's heartbeat thread: a heartbeat only when the server has not seen the
        machine (heartbeat or poll) for heartbeat_seconds."""
        await asyncio.sleep(random.uniform(0, self.heartbeat_seconds))
        while not self.stopping:
            due_in = self.saw_at.get(machine_id, -1e9) + self.heartbeat_seconds - time.monotonic()
            if due_in > 0:
                await asyncio.sleep(due_in)
                continue
            sent = time.monotonic()
            try:
                async with session.post(f"{self.url}/api/v1/agent/heartbeat", headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        self.heartbeats += 1
                        self.saw_at[machine_id] = max(self.saw_at.get(machine_id, sent), sent)
                        continue
                    self.heartbeat_errors += 1
                    self.errors.append(f"heartbeat HTTP {r.status}")
            except Exception as exc:  # noqa: BLE001 - counted; the agent retries next beat
                self.heartbeat_errors += 1
                self.errors.append(f"heartbeat {exc!r}"[:120])
            await asyncio.sleep(self.heartbeat_seconds)

    async def _polls(self, session, machine_id: int, headers) -> None:
        attempt = 0
        while not self.stopping:
            self.waiting.add(machine_id)
            try:
                async with session.get(
                    f"{self.url}/api/v1/agent/jobs/next", params={"wait": "25"}, headers=headers
                ) as r:
                    body = await r.read()
                    status = r.status
                    woken_by = r.headers.get("Agent-Wait", "")
            except Exception:  # noqa: BLE001 - backoff with jitter, as the agent does
                self.waiting.discard(machine_id)
                self.poll_errors += 1
                await asyncio.sleep(random.uniform(0, min(30, 2**attempt)))
                attempt += 1
                continue
            self.waiting.discard(machine_id)
            attempt = 0
            if status in (200, 204):
                self.polls += 1
                answered = time.monotonic()
                self.saw_at[machine_id] = max(self.saw_at.get(machine_id, answered), answered)
            if status == 200:
                job = json.loads(body)
                self.received.setdefault(job["id"], time.monotonic())
                self.woken_by.setdefault(job["id"], woken_by)
                commitment = {"root": "0" * 64, "agent_seconds": 0.01}
                async with session.post(
                    f"{self.url}/api/v1/agent/jobs/{job['id']}/commitment",
                    json=commitment,
                    headers=headers,
                ) as r:
                    await r.read()
            elif status != 204:
                self.poll_errors += 1
                await asyncio.sleep(1)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def search_p95(url: str, requests_count: int) -> float:
    """A renter in another process: sequential searches, p95 in milliseconds."""
    code = (
        "import json, sys, time, requests\n"
        "url, paths, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])\n"
        "s = requests.Session(); out = []\n"
        "for i in range(n):\n"
        "    t = time.perf_counter(); r = s.get(url + paths[i % len(paths)], timeout=120)\n"
        "    assert r.status_code == 200, r.status_code\n"
        "    out.append((time.perf_counter() - t) * 1000)\n"
        "out.sort(); print(out[min(len(out) - 1, int(0.95 * len(out)))])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url, json.dumps(SEARCHES), str(requests_count)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"search sampler failed: {done.stderr[-500:]}")
    return float(done.stdout.strip())


async def run_one(n: int, args, env: dict[str, str]) -> dict:
    import aiohttp

    from marketplace.benchmarks.services import benchmark_job_create

    tokens = await asyncio.to_thread(prepare, n)
    web, channel = Server("web", env), Server("channel", env)
    counter = WriteCounter()
    flusher = Flusher(float(env.get("HEARTBEAT_FLUSH_SECONDS", "10")))
    fleet = Fleet(channel.url, args.heartbeat_seconds)
    tasks: list[asyncio.Task] = []
    try:
        idle_search = await asyncio.to_thread(search_p95, web.url, args.searches)
        # Idle pooled connections are dropped well before the server's keep-alive (75 s) would
        # close them under a request.
        connector = aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=15)
        timeout = aiohttp.ClientTimeout(total=90, sock_connect=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            started = time.monotonic()
            await fleet.register(session, tokens)
            registered_in = time.monotonic() - started
            await asyncio.to_thread(verify_fleet, list(fleet.credentials))
            flusher.start()
            tasks = [asyncio.create_task(fleet.agent(session, m)) for m in fleet.credentials]
            deadline = time.monotonic() + 300
            while len(fleet.waiting) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            connected = len(fleet.waiting)
            # Steady state: every agent has sent at least one heartbeat before the window.
            await asyncio.sleep(args.heartbeat_seconds + 2)

            fleet.lags.clear()
            lag_task = asyncio.create_task(fleet.loop_lag())
            tasks.append(lag_task)
            cpu0, _ = channel.usage()
            rows0, beats0, polls0, flushed0, writes0 = (
                await asyncio.to_thread(counter.rows),
                fleet.heartbeats,
                fleet.polls,
                flusher.machines,
                flusher.writes,
            )
            window0 = time.monotonic()
            search_task = asyncio.create_task(asyncio.to_thread(search_p95, web.url, args.searches))
            machine_ids = list(fleet.credentials)
            for _ in range(args.jobs):
                machine_id = random.choice([m for m in machine_ids if m in fleet.waiting] or [0])
                if machine_id:
                    t0 = time.monotonic()
                    job = await asyncio.to_thread(
                        benchmark_job_create, machine_id=machine_id, purpose="periodic", spec=SPEC
                    )
                    fleet.created[job.pk] = t0
                await asyncio.sleep(args.window / max(1, args.jobs))
            loaded_search = await search_task
            await asyncio.sleep(2)  # the last jobs' agents
            elapsed = time.monotonic() - window0
            cpu1, rss = channel.usage()
            await asyncio.sleep(1.0)  # PostgreSQL's statistics trail by up to a second
            rows1, beats1, polls1, flushed1, writes1 = (
                await asyncio.to_thread(counter.rows),
                fleet.heartbeats,
                fleet.polls,
                flusher.machines,
                flusher.writes,
            )
            fleet.stopping = True
    finally:
        flusher.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        web.stop()
        channel.stop()
    latencies = [fleet.received[j] - t for j, t in fleet.created.items() if j in fleet.received]
    return {
        "agents": n,
        "connected": connected,
        "registered_in_s": registered_in,
        "jobs": len(fleet.created),
        "jobs_received": len(latencies),
        "client_lag_p95_s": _pct(fleet.lags, 0.95),
        "errors": sorted({e: fleet.errors.count(e) for e in set(fleet.errors)}.items())[:5],
        "woken_by": {
            how: sum(1 for j in fleet.created if fleet.woken_by.get(j) == how)
            for how in sorted(set(fleet.woken_by.values()))
        },
        "slow": sorted(
            (round(fleet.received[j] - t, 2), fleet.woken_by.get(j))
            for j, t in fleet.created.items()
            if j in fleet.received and fleet.received[j] - t > 1
        ),
        "dispatch_p50_s": _pct(latencies, 0.5),
        "dispatch_p95_s": _pct(latencies, 0.95),
        "heartbeats_per_s": (beats1 - beats0) / elapsed,
        "polls_per_s": (polls1 - polls0) / elapsed,
        "heartbeat_errors": fleet.heartbeat_errors,
        "poll_errors": fleet.poll_errors,
        "db_rows_per_s": None if rows0 is None else (rows1 - rows0) / elapsed,
        "flush_machines_per_s": (flushed1 - flushed0) / elapsed,
        "flushes": flusher.flushes,
        "flush_writes_per_s": (writes1 - writes0) / elapsed,
        "jobs_per_s": len(fleet.created) / elapsed,
        "rss_mb": rss / 2**20,
        "cpu_percent": 100 * (cpu1 - cpu0) / elapsed,
        "search_idle_p95_ms": idle_search,
        "search_load_p95_ms": loaded_search,
        "window_s": elapsed,
    }


def report(results: list[dict], vendor: str) -> None:
    print(f"\nAgent fleet on one web node ({vendor}); targets beside each figure")
    for r in results:
        ratio = r["search_load_p95_ms"] / r["search_idle_p95_ms"]
        print(
            f"\n  N = {r['agents']:,} agents  (registered through the API in "
            f"{r['registered_in_s']:.0f} s)"
        )
        ok = "ok" if r["connected"] >= min(r["agents"], AGENTS_TARGET) else "MISSED"
        print(
            f"    connected agents (long-polling) {r['connected']:>10,}   "
            f"target {AGENTS_TARGET:,} on one node  [{ok}]"
        )
        ok = "ok" if r["dispatch_p95_s"] <= DISPATCH_P95_TARGET_S else "MISSED"
        print(
            f"    dispatch latency p50 / p95      {r['dispatch_p50_s']:>7.3f} / "
            f"{r['dispatch_p95_s']:.3f} s   target p95 <= {DISPATCH_P95_TARGET_S} s  [{ok}]"
            f"  ({r['jobs_received']}/{r['jobs']} jobs received)"
        )
        print(
            f"    jobs by wake-up {r['woken_by']}; over 1 s: {r['slow'][:12]}; this client's "
            f"event-loop delay p95 {r['client_lag_p95_s']:.3f} s"
        )
        if r["errors"]:
            print(f"    errors: {r['errors']}")
        print(
            f"    heartbeats ingested             {r['heartbeats_per_s']:>10.1f} /s  "
            f"+ polls answered (each a heartbeat) {r['polls_per_s']:.1f} /s  "
            f"({r['heartbeat_errors']} failed; long-poll errors {r['poll_errors']})"
        )
        rows = "n/a (SQLite)" if r["db_rows_per_s"] is None else f"{r['db_rows_per_s']:.1f} /s"
        print(
            f"    database rows written           {rows:>12}   of which heartbeat flush "
            f"{r['flush_machines_per_s']:.1f} machines/s in {r['flushes']} bulk flushes; "
            f"jobs {r['jobs_per_s']:.2f}/s"
        )
        print(
            f"    channel processes RSS / CPU     {r['rss_mb']:>7.0f} MB / "
            f"{r['cpu_percent']:.0f}% of one core"
        )
        ok = "ok" if ratio <= SEARCH_RATIO_TARGET else "MISSED"
        print(
            f"    renter search p95 idle / load   {r['search_idle_p95_ms']:>7.1f} / "
            f"{r['search_load_p95_ms']:.1f} ms = {ratio:.2f}x   target <= "
            f"{SEARCH_RATIO_TARGET}x  [{ok}]"
        )
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        print(
            f"\n  Database writes, N={lo['agents']:,} -> N={hi['agents']:,} "
            "(target: independent of N)"
        )
        print(
            f"    heartbeat write statements  {lo['flush_writes_per_s']:.2f} -> "
            f"{hi['flush_writes_per_s']:.2f} /s "
            f"(bulk flushes), where one write transaction per heartbeat or poll would be "
            f"{lo['heartbeats_per_s'] + lo['polls_per_s']:.0f} -> "
            f"{hi['heartbeats_per_s'] + hi['polls_per_s']:.0f} /s"
        )
        if lo["db_rows_per_s"] is not None:
            print(
                f"    rows written (all tables)   {lo['db_rows_per_s']:.1f} -> "
                f"{hi['db_rows_per_s']:.1f} /s; the flush refreshes each machine's last-seen "
                f"row once per interval it heartbeated in: {lo['flush_machines_per_s']:.1f} -> "
                f"{hi['flush_machines_per_s']:.1f} machines/s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default="500,5000", help="comma-separated fleet sizes")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--heartbeat-seconds", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=60, help="jobs created in the window")
    parser.add_argument("--window", type=float, default=60.0, help="steady window, seconds")
    parser.add_argument("--searches", type=int, default=100, help="renter searches per sample")
    parser.add_argument("--listings", type=int, default=2000)
    args = parser.parse_args()

    limit = _raise_file_limit()
    url = _configure(args.database_url)
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    seed_listings(args.listings)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        # Thousands of registrations from one address; per-agent limits stay as configured.
        "THROTTLE_AUTH": "1000000/minute",
        "HEARTBEAT_FLUSH_SECONDS": str(settings.HEARTBEAT_FLUSH_SECONDS),
    }
    print(f"open files limit {limit}; database {connection.vendor}; Redis {settings.REDIS_URL}")
    results = []
    for n in [int(x) for x in args.agents.split(",")]:
        if 2 * n + 100 > limit:
            print(f"  N={n}: needs about {2 * n} open files, the limit is {limit}")
        print(f"running N={n:,} ...", flush=True)
        results.append(asyncio.run(run_one(n, args, env)))
    report(results, connection.vendor)


if __name__ == "__main__":
    main()
