"""Latency and throughput of listing search against the trivial health endpoint, over real HTTP.

    .venv/bin/python benchmarks/api_search.py                      # 100,000 listings, SQLite
    .venv/bin/python benchmarks/api_search.py --listings 20000 --requests 500 --concurrency 4
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/marketplace_bench \\
        .venv/bin/python benchmarks/api_search.py                  # an explicit database

Without DATABASE_URL it uses its own SQLite file, .run/bench_api_search.sqlite3, never the dev
database. It migrates, seeds the listings (reusing them when the count already matches), starts
`manage.py runserver --noreload` on a free 127.0.0.1 port, and sends a bounded number of GETs
from --concurrency client threads, each with its own keep-alive connection. Targets: search
p95 <= 50 ms and search throughput >= 50% of the health endpoint's. --profile prints, for each
search, the SQL it runs and the time of each statement.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
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


def seed(n: int, *, rng: random.Random) -> None:
    from django.db import transaction
    from tqdm import tqdm

    from marketplace.accounts.models import User
    from marketplace.listings.models import Listing
    from marketplace.providers.models import Machine, Provider

    owner, _ = User.objects.get_or_create(username=BENCH_OWNER, defaults={"role": "provider_owner"})
    existing = Listing.objects.filter(provider__owner=owner, is_searchable=True).count()
    if existing == n:
        print(f"Reusing {n:,} seeded listings.")
        return
    print(f"Seeding {n:,} listings (found {existing:,}) ...")
    with transaction.atomic():
        Listing.objects.filter(provider__owner=owner).delete()
        Machine.objects.filter(provider__owner=owner).delete()
        Provider.objects.filter(owner=owner).delete()
        providers = Provider.objects.bulk_create(
            Provider(
                owner=owner,
                name=f"bench provider {i}",
                wallet_address="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            )
            for i in range(200)
        )

    weights = [c[-1] for c in CATALOGUE]
    batch = 5000
    with tqdm(total=n, unit="listing", desc="seed") as bar:
        for start in range(0, n, batch):
            size = min(batch, n - start)
            specs = []
            for _ in range(size):
                kind, vendor, model, mem, bw, links, precisions, usd, tflops, _w = rng.choices(
                    CATALOGUE, weights
                )[0]
                count = rng.choices([c for c, _ in COUNTS], [w for _, w in COUNTS])[0]
                specs.append(
                    {
                        "provider": rng.choice(providers),
                        "kind": kind,
                        "vendor": vendor,
                        "model": model,
                        "memory": mem,
                        "bandwidth": bw,
                        "interconnect": rng.choice(links) if count > 1 else "none",
                        "precisions": "," + ",".join(sorted(precisions.split())) + ",",
                        "count": count,
                        "region": rng.choices([r for r, _ in REGIONS], [w for _, w in REGIONS])[0],
                        # Market spread around the reference price, skewed towards cheap offers.
                        "price": _price_units(usd * rng.lognormvariate(0, 0.25)),
                        "tflops": (
                            round(tflops * count * rng.uniform(0.82, 1.0), 2)
                            if rng.random() < 0.9
                            else None
                        ),
                    }
                )
            with transaction.atomic():
                machines = Machine.objects.bulk_create(
                    Machine(
                        provider=s["provider"],
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
                    for i, s in enumerate(specs)
                )
                Listing.objects.bulk_create(
                    Listing(
                        machine=m,
                        provider=s["provider"],
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
                        network_gbps=rng.choice([10, 25, 100, 400]),
                        region=s["region"],
                        price_per_hour=s["price"],
                        interruptible_floor_per_hour=(
                            _price_units(s["price"] / 1_000_000 * 0.4)
                            if rng.random() < 0.5
                            else None
                        ),
                        verified_tflops=s["tflops"],
                        price_per_tflop_hour=(
                            round(s["price"] * s["count"] / s["tflops"]) if s["tflops"] else None
                        ),
                    )
                    for m, s in zip(machines, specs, strict=True)
                )
            bar.update(size)
    _analyze()


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def profile() -> None:
    """Each search in-process, with the SQL it runs and the time of each statement."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    for path in SEARCHES:
        client.get(path)  # warm caches
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.get(path)
            total = (time.perf_counter() - started) * 1000
        print(f"\n{path}  -> {response.status_code}, {total:.1f} ms in-process")
        for q in ctx.captured_queries:
            print(f"  {float(q['time']) * 1000:7.1f} ms  {q['sql'][:220]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, server: str) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_DEBUG": "0", "LOG_LEVEL": "WARNING"}
    if server == "gunicorn":
        cmd = [
            sys.executable, "-m", "gunicorn", "-c", str(REPO_ROOT / "gunicorn.conf.py"),
            "marketplace.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", "4", "--threads", "4",
            "--log-level", "warning",
        ]  # fmt: skip
    else:
        cmd = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
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
    proc.terminate()
    raise SystemExit("the server did not answer within 60 s")


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
    parser.add_argument("--server", choices=["runserver", "gunicorn"], default="runserver")
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
    server = start_server(port, args.server)
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
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    print(
        f"\n{args.listings:,} listings, {args.server}, concurrency {args.concurrency}, "
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
    p95_ok = search.pct(95) <= 50
    ratio_ok = ratio >= 0.5
    print(f"\nsearch p95 {search.pct(95):.1f} ms (target <= 50): {'PASS' if p95_ok else 'MISS'}")
    print(f"search/health throughput {ratio:.0%} (target >= 50%): {'PASS' if ratio_ok else 'MISS'}")
    if search.errors or health.errors:
        print("some requests failed: the figures above count only successful ones")
    sys.exit(0 if p95_ok and ratio_ok and not (search.errors or health.errors) else 1)


if __name__ == "__main__":
    main()
