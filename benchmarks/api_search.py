"""Latency and throughput of listing search against the trivial health endpoint, over real HTTP.

    .venv/bin/python benchmarks/api_search.py                      # 100,000 listings, SQLite
    .venv/bin/python benchmarks/api_search.py --listings 20000 --requests 500 --concurrency 4
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/marketplace_bench \\
        .venv/bin/python benchmarks/api_search.py --listings 1000000  # PostgreSQL, a million

Without DATABASE_URL it uses its own SQLite file, .run/bench_api_search.sqlite3, never the dev
database. It migrates, seeds the listings (reusing them when the count already matches; on
PostgreSQL with COPY, a million rows in minutes), starts the web server the way `make run` does
(the Procfile's `web` line, see `web_server_command`) on a free 127.0.0.1 port, and sends a
bounded number of GETs from --concurrency client threads, each with its own keep-alive
connection. Targets: search p95 <= 25 ms up to 100,000 listings and <= 50 ms at 1,000,000, and
search throughput >= 25% of the health endpoint's in the same run. --no-cache measures with the
search result cache off (every request runs its queries). --profile prints, for each search, the
SQL it runs and the time of each statement.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_DB = f"sqlite:///{REPO_ROOT / '.run' / 'bench_api_search.sqlite3'}"
BENCH_OWNER = "bench-search-owner"

SEARCHES = [
    "/api/v1/listings?kind=gpu&min_count=4&max_price=3000000&sort=price_per_tflop_hour",
    "/api/v1/listings?precision=bf16&region=us-east&sort=-tflops",
    "/api/v1/listings?model=H100",
    "/api/v1/listings?kind=gpu&min_memory=48&interconnect=nvlink&sort=price",
    "/api/v1/listings?region=eu-west&min_tflops=100&sort=-price",
    "/api/v1/listings",
]
HEALTH = "/api/v1/health"
P95_TARGET_MS_AT_100K = 25
P95_TARGET_MS_AT_1M = 50
THROUGHPUT_RATIO_TARGET = 0.25

# (kind, vendor, model, memory GB, bandwidth GB/s, interconnects, precisions,
#  USD per accelerator-hour, fp32-family TFLOP/s per accelerator, weight)
CATALOGUE = [
    (
        "gpu",
        "NVIDIA",
        "H100 80GB HBM3",
        80,
        3350,
        ["nvlink", "infiniband"],
        "bf16 fp16 fp32 fp8 int8 tf32",
        2.49,
        67,
        14,
    ),
    (
        "gpu",
        "NVIDIA",
        "H200 141GB",
        141,
        4800,
        ["nvlink"],
        "bf16 fp16 fp32 fp8 int8 tf32",
        3.59,
        67,
        4,
    ),
    (
        "gpu",
        "NVIDIA",
        "A100 80GB",
        80,
        2039,
        ["nvlink", "pcie"],
        "bf16 fp16 fp32 int8 tf32",
        1.29,
        19.5,
        16,
    ),
    ("gpu", "NVIDIA", "A100 40GB", 40, 1555, ["pcie"], "bf16 fp16 fp32 int8 tf32", 0.99, 19.5, 8),
    ("gpu", "NVIDIA", "L40S", 48, 864, ["pcie"], "bf16 fp16 fp32 fp8 int8 tf32", 0.89, 91.6, 10),
    ("gpu", "NVIDIA", "L4", 24, 300, ["pcie"], "bf16 fp16 fp32 fp8 int8 tf32", 0.43, 30.3, 12),
    (
        "gpu",
        "NVIDIA",
        "RTX 4090",
        24,
        1008,
        ["pcie", "none"],
        "bf16 fp16 fp32 int8",
        0.34,
        82.6,
        14,
    ),
    ("gpu", "AMD", "MI300X", 192, 5300, ["infiniband"], "bf16 fp16 fp32 fp8 int8", 2.19, 163, 5),
    ("tpu", "Google", "TPU v5e", 16, 819, ["none"], "bf16 int8", 1.19, 98, 5),
    (
        "inference_asic",
        "AWS",
        "Inferentia2",
        32,
        820,
        ["neuronlink"],
        "bf16 fp16 fp8 int8",
        0.76,
        47.5,
        6,
    ),
    ("cpu", "AMD", "EPYC 9654", 0, 460, ["none"], "fp32", 0.04, 5.4, 6),
]
REGIONS = [
    ("us-east", 18),
    ("us-west", 12),
    ("us-central", 6),
    ("eu-west", 14),
    ("eu-central", 10),
    ("eu-north", 5),
    ("ap-northeast", 8),
    ("ap-southeast", 7),
    ("ap-south", 5),
    ("sa-east", 3),
    ("ca-central", 4),
    ("me-central", 2),
]
COUNTS = [(1, 30), (2, 20), (4, 20), (8, 28), (16, 2)]


def _configure(database_url: str | None) -> str:
    url = database_url or os.environ.get("DATABASE_URL") or DEFAULT_DB
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ.setdefault("FAST_PASSWORD_HASHER", "1")
    (REPO_ROOT / ".run").mkdir(exist_ok=True)
    import django

    django.setup()
    return url


def _price_units(usd_per_hour: float) -> int:
    """USD per hour as token units (6 decimals), on the grid of whole units per second."""
    units = round(usd_per_hour * 1_000_000 / 3600) * 3600
    return max(3600, units)


def _spec(rng: random.Random) -> dict:
    weights = _spec.weights  # type: ignore[attr-defined]
    kind, vendor, model, mem, bw, links, precisions, usd, tflops, _w = rng.choices(
        CATALOGUE, weights
    )[0]
    count = rng.choices(_spec.counts, _spec.count_weights)[0]  # type: ignore[attr-defined]
    price = _price_units(usd * rng.lognormvariate(0, 0.25))
    return {
        "kind": kind,
        "vendor": vendor,
        "model": model,
        "memory": mem,
        "bandwidth": bw,
        "interconnect": rng.choice(links) if count > 1 else "none",
        "precisions": "," + ",".join(sorted(precisions.split())) + ",",
        "count": count,
        "region": rng.choices(_spec.regions, _spec.region_weights)[0],  # type: ignore[attr-defined]
        # Market spread around the reference price, skewed towards cheap offers.
        "price": price,
        "floor": _price_units(price / 1_000_000 * 0.4) if rng.random() < 0.5 else None,
        "network": rng.choice([10, 25, 100, 400]),
        "tflops": (
            round(tflops * count * rng.uniform(0.82, 1.0), 2) if rng.random() < 0.9 else None
        ),
    }


_spec.weights = [c[-1] for c in CATALOGUE]  # type: ignore[attr-defined]
_spec.counts = [c for c, _ in COUNTS]  # type: ignore[attr-defined]
_spec.count_weights = [w for _, w in COUNTS]  # type: ignore[attr-defined]
_spec.regions = [r for r, _ in REGIONS]  # type: ignore[attr-defined]
_spec.region_weights = [w for _, w in REGIONS]  # type: ignore[attr-defined]


def _bench_rows(start: int, size: int, providers: list, rng: random.Random):
    """Unsaved machines and listings for one batch, built the way the services would build them
    (the listing's search fields come from the same code path as a published listing's)."""
    from marketplace.listings.models import Listing
    from marketplace.providers.models import Machine

    machines, listings = [], []
    for i in range(size):
        s = _spec(rng)
        provider = providers[rng.randrange(len(providers))]
        machine = Machine(
            provider=provider,
            name=f"bench-{start + i}",
            state=Machine.State.LISTED,
            accelerator_kind=s["kind"],
            accelerator_vendor=s["vendor"],
            accelerator_model=s["model"],
            accelerator_count=s["count"],
            accelerator_memory_gb=s["memory"],
            vcpu_count=16 * s["count"],
            ram_gib=128 * s["count"],
        )
        listing = Listing(
            machine=machine,
            provider=provider,
            status=Listing.Status.ACTIVE,
            is_searchable=True,
            accelerator_kind=s["kind"],
            vendor=s["vendor"],
            model=s["model"],
            accelerator_count=s["count"],
            memory_per_accelerator_gb=s["memory"],
            memory_bandwidth_gbps=s["bandwidth"],
            interconnect=s["interconnect"],
            precisions=s["precisions"],
            vcpu_count=16 * s["count"],
            ram_gib=128 * s["count"],
            storage_gb=2000 * s["count"],
            network_gbps=s["network"],
            region=s["region"],
            price_per_hour=s["price"],
            interruptible_floor_per_hour=s["floor"],
            verified_tflops=s["tflops"],
            price_per_tflop_hour=(
                round(s["price"] * s["count"] / s["tflops"]) if s["tflops"] else None
            ),
            verified_tflops_by_precision={"fp32": s["tflops"]} if s["tflops"] else {},
        )
        machines.append(machine)
        listings.append(listing)
    return machines, listings


def _copy_rows(cursor, model, objs: list, first_id: int) -> None:
    """PostgreSQL COPY of unsaved instances with ids from first_id: every concrete column, as the
    model's own fields prepare it, so columns added later need no change here."""
    import json

    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    fields = [f for f in model._meta.concrete_fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    is_json = [f.get_internal_type() == "JSONField" for f in fields]
    is_stamp = [bool(getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False))
                for f in fields]  # fmt: skip
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for offset, obj in enumerate(objs):
            obj.pk = first_id + offset
            row = []
            for field, json_field, stamp in zip(fields, is_json, is_stamp, strict=True):
                value = getattr(obj, field.attname)
                if stamp:
                    value = now
                elif json_field:
                    value = json.dumps(value)
                row.append(value)
            copy.write_row(row)


def _next_id(cursor, model) -> int:
    cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {model._meta.db_table}")
    return cursor.fetchone()[0]


def _reset_sequence(cursor, model) -> None:
    table = model._meta.db_table
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
        f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
    )


def seed(n: int, *, rng: random.Random) -> None:
    from django.db import connection, transaction
    from tqdm import tqdm

    from marketplace.accounts.models import User
    from marketplace.listings.models import Listing, ReservedPrice
    from marketplace.providers.models import Machine, Provider

    owner, _ = User.objects.get_or_create(username=BENCH_OWNER, defaults={"role": "provider_owner"})
    existing = Listing.objects.filter(provider__owner=owner, is_searchable=True).count()
    if existing == n:
        print(f"Reusing {n:,} seeded listings.")
        return
    print(f"Seeding {n:,} listings (found {existing:,}) ...")
    started = time.monotonic()
    with transaction.atomic():
        # Raw deletes scoped to the bench owner: the ORM's collector would load every row first.
        provider_ids = list(Provider.objects.filter(owner=owner).values_list("pk", flat=True))
        ReservedPrice.objects.filter(listing__provider_id__in=provider_ids)._raw_delete("default")
        Listing.objects.filter(provider_id__in=provider_ids)._raw_delete("default")
        Machine.objects.filter(provider_id__in=provider_ids)._raw_delete("default")
        Provider.objects.filter(owner=owner).delete()
        providers = Provider.objects.bulk_create(
            Provider(
                owner=owner,
                name=f"bench provider {i}",
                wallet_address="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            )
            for i in range(200)
        )

    postgres = connection.vendor == "postgresql"
    batch = 50_000 if postgres else 5000
    with tqdm(total=n, unit="listing", desc="seed") as bar:
        for start in range(0, n, batch):
            size = min(batch, n - start)
            machines, listings = _bench_rows(start, size, providers, rng)
            with transaction.atomic():
                if postgres:
                    with connection.cursor() as cursor:
                        raw = cursor.cursor  # psycopg's own cursor, for COPY
                        _copy_rows(raw, Machine, machines, _next_id(cursor, Machine))
                        for listing, machine in zip(listings, machines, strict=True):
                            listing.machine_id = machine.pk
                        _copy_rows(raw, Listing, listings, _next_id(cursor, Listing))
                else:
                    Machine.objects.bulk_create(machines)
                    for listing, machine in zip(listings, machines, strict=True):
                        listing.machine_id = machine.pk
                    Listing.objects.bulk_create(listings)
            bar.update(size)
    if postgres:
        with connection.cursor() as cursor:
            _reset_sequence(cursor, Machine)
            _reset_sequence(cursor, Listing)
    _analyze()
    print(f"Seeded in {time.monotonic() - started:.0f} s.")


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def profile() -> None:
    """Each search in-process, with the SQL it runs and the time of each statement."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    client = Client()
    for path in SEARCHES:
        client.get(path)  # warm the database's caches
        with override_settings(SEARCH_CACHE_SECONDS=0), CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.get(path)
            total = (time.perf_counter() - started) * 1000
        print(f"\n{path}  -> {response.status_code}, {total:.1f} ms in-process")
        for q in ctx.captured_queries:
            print(f"  {float(q['time']) * 1000:7.1f} ms  {q['sql'][:220]}")
        page_query = next((q["sql"] for q in ctx.captured_queries if "ORDER BY" in q["sql"]), None)
        if page_query is not None:
            explain(page_query)


def explain(sql: str) -> None:
    """The page query's plan: EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on SQLite."""
    from django.db import connection

    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(("EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN ") + sql)
        for row in cursor.fetchall():
            print("      | " + " ".join(str(col) for col in row[-1:]))


def connection_vendor() -> str:
    from django.db import connection

    return connection.vendor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_server_command(port: int) -> list[str]:
    """The web server `make run` starts: the Procfile's `web` line, on the benchmark's port. Read
    from the Procfile, not restated, so the benchmark follows whatever server that line names."""
    line = next(
        raw.split(":", 1)[1]
        for raw in (REPO_ROOT / "Procfile").read_text().splitlines()
        if raw.startswith("web:")
    )
    line = re.sub(r"\$\{WEB_PORT(:-[^}]*)?\}|\$WEB_PORT", str(port), line)
    return ["bash", "-c", f"exec {line.strip()}"]


def start_server(port: int, server: str, *, no_cache: bool = False) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_DEBUG": "0", "LOG_LEVEL": "WARNING", "WEB_PORT": str(port)}
    if no_cache:
        env["SEARCH_CACHE_SECONDS"] = "0"
    if server == "procfile":
        cmd = web_server_command(port)
    else:
        cmd = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server and its workers stop together, by process group
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", HEALTH)
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise SystemExit("the server did not answer within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Result:
    name: str
    latencies_ms: list[float]
    seconds: float
    errors: int

    def pct(self, q: float) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


def measure(
    name: str, paths: list[str], *, port: int, requests: int, concurrency: int, max_seconds: float
) -> Result:
    local = threading.local()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def one(i: int) -> None:
        nonlocal errors
        if time.monotonic() > deadline:
            return
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        path = paths[i % len(paths)]
        started = time.perf_counter()
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            local.conn = None
            ok = False
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            if ok:
                latencies.append(elapsed)
            else:
                errors += 1

    warmup = min(50, requests)
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(warmup)))
    latencies.clear()
    errors = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    return Result(name, latencies, time.perf_counter() - started, errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000, help="per measured scenario")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--database-url", help="default: DATABASE_URL, else its own SQLite file")
    parser.add_argument(
        "--server",
        choices=["procfile", "runserver"],
        default="procfile",
        help="procfile: the web server `make run` starts (default)",
    )
    parser.add_argument("--no-cache", action="store_true", help="search result cache off")
    parser.add_argument("--max-seconds", type=float, default=120, help="per scenario")
    parser.add_argument("--per-query", action="store_true", help="also measure each search")
    parser.add_argument("--profile", action="store_true", help="print each search's SQL timings")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    url = _configure(args.database_url)
    from django.core.management import call_command

    print(f"Database: {url}")
    call_command("migrate", verbosity=0)
    seed(args.listings, rng=random.Random(args.seed))
    if args.profile:
        profile()

    port = _free_port()
    server = start_server(port, args.server, no_cache=args.no_cache)
    try:
        results = [
            measure(
                "search (mixed)",
                SEARCHES,
                port=port,
                requests=args.requests,
                concurrency=args.concurrency,
                max_seconds=args.max_seconds,
            )
        ]
        if args.per_query:
            for path in SEARCHES:
                results.append(
                    measure(
                        path.removeprefix("/api/v1/"),
                        [path],
                        port=port,
                        requests=max(1, args.requests // 4),
                        concurrency=args.concurrency,
                        max_seconds=args.max_seconds,
                    )
                )
        health = measure(
            "health",
            [HEALTH],
            port=port,
            requests=args.requests,
            concurrency=args.concurrency,
            max_seconds=args.max_seconds,
        )
        results.append(health)
    finally:
        stop_server(server)

    print(
        f"\n{args.listings:,} listings, {connection_vendor()}, {args.server}, "
        f"cache {'off' if args.no_cache else 'on'}, concurrency {args.concurrency}, "
        f"{args.requests:,} requests per scenario"
    )
    width = max(len(r.name) for r in results)
    print(f"{'endpoint':<{width}}  {'n':>6} {'err':>4} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p99 ms':>8} {'req/s':>8}")  # fmt: skip
    for r in results:
        print(
            f"{r.name:<{width}}  {len(r.latencies_ms):>6} {r.errors:>4} {r.pct(50):>8.1f} "
            f"{r.pct(95):>8.1f} {r.pct(99):>8.1f} {r.rps:>8.1f}"
        )
    search = results[0]
    ratio = search.rps / health.rps if health.rps else 0.0
    p95_target = P95_TARGET_MS_AT_100K if args.listings <= 100_000 else P95_TARGET_MS_AT_1M
    p95_ok = search.pct(95) <= p95_target
    ratio_ok = ratio >= THROUGHPUT_RATIO_TARGET
    print(
        f"\nsearch p95 {search.pct(95):.1f} ms (target <= {p95_target} ms): "
        f"{'PASS' if p95_ok else 'MISS'}"
    )
    print(
        f"search/health throughput {ratio:.0%} (target >= {THROUGHPUT_RATIO_TARGET:.0%}): "
        f"{'PASS' if ratio_ok else 'MISS'}"
    )
    if search.errors or health.errors:
        print("some requests failed: the figures above count only successful ones")
    sys.exit(0 if p95_ok and ratio_ok and not (search.errors or health.errors) else 1)


if __name__ == "__main__":
    main()
