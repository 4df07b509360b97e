"""`make demo`: the whole marketplace story, narrated, on this machine, in a few minutes.

It starts what it needs (its own Anvil, Redis, gunicorn and a Celery worker, each on a free port,
with a separate SQLite database under .run/demo/) and stops everything it started on the way
out. Three providers run real agents (`python -m workers.agent`): bob is honest; mallory behaves
through onboarding and then returns wrong results; chuck behaves through onboarding and then
stops fetching jobs while his agent keeps heartbeating (the `cheat-agent` and `dodge-agent`
entries below: the real agent loop around a JobRunner with one overridden step).

Collateral first: bob's listing is refused until he stakes (409 collateral_insufficient, with
the shortfall); all three stake through the staking API's calldata, then list. Alice rents the
three machines, paying into escrow on Anvil. Every lease's check is queued: bob's passes;
mallory's answer is rejected; chuck's is never fetched and fails his lease when the fetch
deadline (LEASE_CHECK_DEADLINE_SECONDS, shortened here) passes. Both failed leases refund alice
what was not served and slash the provider with the report hash on chain; bob's lease completes
and settles. Mallory then registers a fresh machine whose agent relays to the card behind her
first one: refused as device_reused, suspended, slashed again. `python -m workers.audit
--all-slashes` audits every slash from the public reports and the chain; a reward period
closes; a table of what moved. Then alice rents bob's machine again with the renter CLI
(`python -m workers.renter`, a subprocess, as a renter would): search, order, fund (the CLI
signs approve + fund), run the training example in bob's sandbox with its log streamed live,
download the checkpoint, stop, and the receipt checked against the chain. Last, `manage.py
reconcile`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# DEMO_RUN_DIR: where a test runs it (logs, configs, the SQLite file), beside a `make demo`.
RUN = Path(os.environ.get("DEMO_RUN_DIR") or ROOT / ".run" / "demo")
PY = str(ROOT / ".venv" / "bin" / "python")
CHEAT_FLAG = RUN / "mallory-cheats"
DODGE_FLAG = RUN / "chuck-dodges"
DODGE_ACK = RUN / "chuck-stopped-polling"

# Anvil's public dev accounts (the "test test ... junk" mnemonic): local chains only.
KEYS = {
    "bob": "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",  # account 1
    "mallory": "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",  # 2
    "chuck": "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",  # 3
    "alice": "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",  # 4
}
USDC = 10**6
STAKE = 200 * USDC
LEASE_SECONDS_BEFORE_CHECK = 20
# How long a leased machine has to fetch its lease check (LEASE_CHECK_DEADLINE_SECONDS, 180 s
# by default): shorter here so that chuck's dodge is decided while the others' checks run.
LEASE_CHECK_DEADLINE = 30
PROVIDERS = ("bob", "mallory", "chuck")
# Which of the demo's dishonest agents (cheat_agent below) each cheater runs.
CHEAT_MODES = {"mallory": "cheat-agent", "chuck": "dodge-agent"}
# The card behind both of mallory's registrations (a made-up GPU UUID: see cheat_agent).
MALLORY_CARD = "GPU-6d616c6c-6f72-7900-0000-000000000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ narration


def say(step: str) -> None:
    print(f"\n\033[1m==> {step}\033[0m", flush=True)


def note(text: str) -> None:
    print(f"    {text}", flush=True)


class DemoError(Exception):
    pass


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    """Polls `check` until it returns something truthy; a spinner meanwhile; DemoError after
    `timeout` seconds, naming what did not happen."""
    spinner = "|/-\\"
    start = time.monotonic()
    i = 0
    while True:
        result = check()
        if result:
            print(f"\r    {what}: done in {time.monotonic() - start:.0f}s" + " " * 10, flush=True)
            return result
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            print()
            raise DemoError(f"timed out after {timeout:.0f}s waiting for: {what}")
        print(f"\r    {spinner[i % 4]} {what} ({elapsed:.0f}s)", end="", flush=True)
        i += 1
        time.sleep(interval)


# ------------------------------------------------------------------------------ processes


class Processes:
    """Everything the demo starts; stopped in reverse order, each by its own pid."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.redis_pid: int | None = None

    def start(self, name: str, cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
        out = open(log, "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise DemoError(
                    f"{name} exited with {proc.returncode}; see {RUN / (name + '.log')}"
                )

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                # The whole session: gunicorn's and Celery's own children go with their parent.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.redis_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.redis_pid, signal.SIGTERM)


def demo_env(ports: dict[str, int]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "marketplace.settings",
            "DATABASE_URL": f"sqlite:///{RUN / 'demo.sqlite3'}",
            "CHAIN_RPC_URL": f"http://127.0.0.1:{ports['anvil']}",
            # A private Redis: another checkout's worker on a shared broker would take our tasks
            # and run them against its own database.
            "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
            "CHAIN_CONFIRMATIONS": "1",
            "BENCHMARK_SMALL_SUITES": "1",
            "FAST_PASSWORD_HASHER": "1",
            "SLASH_AMOUNT": str(100 * USDC),
            "LEASE_CHECK_DEADLINE_SECONDS": str(LEASE_CHECK_DEADLINE),
            # The story shows collateral before capacity, whatever the caller's environment says
            # (the test suite turns it off for tests that have no chain to stake on).
            "COLLATERAL_ENFORCED": "true",
            # Rewards are per served accelerator-hour: 0.01 USDC a second shows on a short lease
            # (and the lock of a 1-hour lease, which counts its rewards, fits the 200 staked).
            "REWARD_PER_ACCELERATOR_HOUR": str(36 * USDC),
            "REWARD_PERIOD_SECONDS": "60",
            "THROTTLE_AGENT": "100000/minute",
            "THROTTLE_AUTH": "10000/minute",
            "DJANGO_DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for key in (
        "CHAIN_OPERATOR_PRIVATE_KEY",
        "CHAIN_DEPLOYER_PRIVATE_KEY",
        "CHAIN_TREASURY_ADDRESS",
    ):
        env.pop(key, None)
    return env


# ------------------------------------------------------------------------------ the story


def main() -> int:
    RUN.mkdir(parents=True, exist_ok=True)
    for stale in (
        "demo.sqlite3",
        "demo.sqlite3-journal",
        "bob.json",
        "mallory.json",
        "mallory-2.json",
        "chuck.json",
        "alice-renter.json",
        "pending-orders.json",
        "alice.key",
    ):
        (RUN / stale).unlink(missing_ok=True)
    shutil.rmtree(RUN / "results", ignore_errors=True)
    for flag in (CHEAT_FLAG, DODGE_FLAG, DODGE_ACK):
        flag.unlink(missing_ok=True)
    for log in RUN.glob("*.log"):
        log.unlink()
    ports = {name: free_port() for name in ("anvil", "redis", "web")}
    env = demo_env(ports)
    os.environ.update(env)
    procs = Processes()
    started = time.monotonic()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        story(procs, env, ports)
        print(f"\nThe demo took {time.monotonic() - started:.0f}s.")
        return 0
    except DemoError as exc:
        print(f"\n\033[31mdemo failed: {exc}\033[0m\nLogs: {RUN}/*.log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        say("Stopping everything the demo started")
        procs.stop_all()
        note("stopped.")


def story(procs: Processes, env: dict, ports: dict) -> None:
    ensure_sandbox_numpy()
    say("Starting a private stack: Redis, Anvil, the database, gunicorn and a Celery worker")
    redis_pidfile = ROOT / ".run" / "redis.pid"
    before = redis_pidfile.read_text().strip() if redis_pidfile.exists() else None
    subprocess.run(["bash", "scripts/ensure_redis.sh"], cwd=ROOT, env=env, check=True)
    if redis_pidfile.exists() and redis_pidfile.read_text().strip() != before:
        procs.redis_pid = int(redis_pidfile.read_text().strip())
    note(f"Redis    {env['REDIS_URL']}")
    procs.start(
        "anvil",
        [
            str(ROOT / "node_modules" / ".bin" / "anvil"),
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["anvil"]),
            "--chain-id",
            "31337",
            "--silent",
        ],
        env,
        RUN / "anvil.log",
    )
    from web3 import HTTPProvider, Web3

    w3 = Web3(HTTPProvider(env["CHAIN_RPC_URL"]))
    wait_for("Anvil answers", lambda: _safe(w3.is_connected), 60, 0.2)
    note(f"Anvil    {env['CHAIN_RPC_URL']} (chain id 31337)")
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    note(f"Database {RUN / 'demo.sqlite3'} (SQLite, only for this demo)")

    import django

    django.setup()
    from django.core.management import call_command

    call_command("deploy_contracts", reward_pool=1_000 * USDC)

    procs.start(
        "web",
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "marketplace.wsgi",
            "--bind",
            f"127.0.0.1:{ports['web']}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--timeout",
            "60",
        ],
        env,
        RUN / "web.log",
    )
    procs.start(
        "worker",
        [
            str(ROOT / ".venv" / "bin" / "celery"),
            "-A",
            "marketplace",
            "worker",
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
        ],
        env,
        RUN / "worker.log",
    )
    url = f"http://127.0.0.1:{ports['web']}"
    import requests

    wait_for("the API answers", lambda: _safe(lambda: requests.get(f"{url}/api/v1/health").ok), 60)
    note(f"API      {url}/api/v1/   worker: Celery, 2 processes")

    from marketplace.accounts.models import User
    from marketplace.payments import chain
    from marketplace.payments.indexer import index
    from marketplace.providers.models import Machine
    from marketplace.providers.services import provider_create

    def run_indexer():
        procs.check_alive()
        index()

    wallets = {name: Web3.to_checksum_address(_address(key)) for name, key in KEYS.items()}

    # ---------------------------------------------------------------- providers
    say("Three providers sign up; each gets a one-time registration token")
    from marketplace.accounts.services import api_token_create

    providers, provider_api = {}, {}
    for name in PROVIDERS:
        user = User.objects.create_user(
            username=name, password=os.urandom(8).hex(), role=User.Role.PROVIDER_OWNER
        )
        providers[name] = provider_create(
            owner=user, name=f"{name}'s GPUs", wallet_address=wallets[name]
        )
        # Each provider's own API token: listing and staking go through the API, as theirs would.
        provider_api[name] = requests.Session()
        provider_api[name].headers["Authorization"] = f"Token {api_token_create(user=user)[1]}"
        note(f"{name:<8} provider {providers[name].pk}, wallet {wallets[name]}")
    note("bob is honest; mallory will cheat on her results; chuck will dodge his lease's checks")

    say("Each provider registers a real agent: python -m workers.agent register, then run")
    for name in PROVIDERS:
        config = register_agent(env, url, providers[name], f"{name}-box", name)
        if name == "bob":
            cmd = [
                PY,
                "-m",
                "workers.agent",
                "run",
                "--config",
                str(config),
                "--no-progress",
                "--poll-wait",
                "2",
            ]
        else:
            cmd = [PY, str(Path(__file__).resolve()), CHEAT_MODES[name], str(config)]
        procs.start(f"agent-{name}", cmd, env, RUN / f"agent-{name}.log")
    note("mallory's and chuck's agents are the real agent loop with one step overridden:")
    note("  mallory's compute step turns dishonest later on; chuck's stops fetching jobs later on")

    machines = {n: Machine.objects.get(provider=providers[n]) for n in PROVIDERS}

    def all_verified():
        procs.check_alive()
        states = {n: Machine.objects.get(pk=m.pk).state for n, m in machines.items()}
        if "suspended" in states.values():
            raise DemoError(f"onboarding failed: {states}")
        return all(s == Machine.State.VERIFIED for s in states.values())

    say(
        "Onboarding: each machine proves its speed; the server recomputes parts it draws only "
        "after each answer"
    )
    wait_for("all three machines pass onboarding (small CPU suites)", all_verified, 240, 1)

    # ---------------------------------------------------------------- collateral
    prices = {"bob": 72_000, "mallory": 36_000, "chuck": 54_000}

    def publish(name: str):
        # Prices and region only: kind, model, devices and precisions are what was verified.
        return provider_api[name].post(
            f"{url}/api/v1/listings",
            json={
                "machine_id": machines[name].pk,
                "storage_gb": 50,
                "network_gbps": 1,
                "region": "local",
                "price_per_hour": prices[name],
            },
            timeout=30,
        )

    say("Collateral before capacity: bob tries to list his verified machine before staking")
    refused = publish("bob")
    error = refused.json().get("error", {}) if refused.status_code == 409 else {}
    if error.get("code") != "collateral_insufficient":
        raise DemoError(f"listing without stake was not refused: {refused.status_code}")
    detail = error["detail"]
    note(f"POST /api/v1/listings -> {refused.status_code} {error['code']}")
    note(
        f"required {detail['required'] / USDC:.2f} USDC of free stake, staked "
        f"{detail['staked'] / USDC:.2f}, shortfall {detail['shortfall'] / USDC:.2f} USDC"
    )

    say(
        f"All three stake {STAKE / USDC:.0f} USDC: GET /providers/{{id}}/staking gives the "
        "calldata, each wallet signs approve + stake"
    )
    from marketplace.payments.services.faucet import demo_renter_fund

    def staking_of(name: str, **params) -> dict:
        path = f"{url}/api/v1/providers/{providers[name].pk}/staking"
        return provider_api[name].get(path, params=params, timeout=30).json()

    for name in PROVIDERS:
        demo_renter_fund(address=wallets[name], amount=STAKE)
        calls = staking_of(name, amount=str(STAKE))
        _sign(w3, KEYS[name], calls["token_address"], calls["approve_calldata"])
        tx = _sign(w3, KEYS[name], calls["staking_address"], calls["stake_calldata"])
        note(f"{name:<8} staked {STAKE / USDC:.0f} USDC in {tx}")

    def all_staked():
        run_indexer()
        return all(staking_of(n)["staked"] == STAKE for n in PROVIDERS)

    wait_for("the stakes indexed", all_staked, 60, 1)

    say("Now they list; mallory undercuts everyone")
    for name in PROVIDERS:
        listed = publish(name)
        if listed.status_code != 201:
            raise DemoError(f"{name}'s listing refused: {listed.status_code} {listed.text}")
        note(f"{name:<8} listed at {prices[name] / USDC:.3f} USDC per hour ({listed.status_code})")

    # ---------------------------------------------------------------- renter
    say("Alice signs up as a renter and searches, cheapest first")
    alice_password = "alice-" + os.urandom(6).hex()
    signup = requests.post(
        f"{url}/api/v1/auth/signup",
        json={
            "username": "alice",
            "password": alice_password,
            "role": "renter",
            "email": "alice@example.com",
        },
        timeout=30,
    )
    if signup.status_code not in (200, 201):
        raise DemoError(f"signup refused: {signup.status_code} {signup.text}")
    token_key = _find_token(signup.json())
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token_key}"
    found = api.get(f"{url}/api/v1/listings", params={"sort": "price"}, timeout=30).json()
    rows = found.get("results", found)
    for row in rows:
        note(
            f"listing {row['id']}: {row['model'][:30]:<30} {row['price_per_hour'] / USDC:.3f} "
            f"USDC/h, verified {float(row.get('verified_tflops') or 0):.2g} TFLOP/s, "
            f"provider {row['provider_id']}"
        )

    demo_renter_fund(address=wallets["alice"], amount=10 * USDC)
    note(f"alice's wallet {wallets['alice']} holds 10 test USDC")
    owner_of = {providers[n].pk: n for n in PROVIDERS}
    orders = {}
    for rank, listing in zip(("cheapest", "second", "third"), rows, strict=False):
        key = f"alice-{rank}-{int(time.time())}"
        body = {
            "listing_id": listing["id"],
            "pricing_mode": "on_demand",
            "accelerators": 1,
            "hours": 1,
        }
        first = api.post(f"{url}/api/v1/orders", json=body, headers={"Idempotency-Key": key})
        again = api.post(f"{url}/api/v1/orders", json=body, headers={"Idempotency-Key": key})
        if first.status_code != 201 or again.json()["id"] != first.json()["id"]:
            raise DemoError(f"ordering failed: {first.status_code} {first.text}")
        order = first.json()
        provider = owner_of[listing["provider_id"]]
        orders[provider] = order["id"]
        say(f"Alice orders the {rank} machine ({provider}'s), Idempotency-Key {key}")
        note(
            f"order {order['id']} created ({first.status_code}); the same request again "
            f"returned the same order ({again.status_code})"
        )
        funding = api.get(f"{url}/api/v1/orders/{order['id']}/funding", timeout=30).json()
        note(
            f"escrow {funding['amount'] / USDC:.3f} USDC for {funding['max_duration_seconds']} s"
            f" at {funding['rate_per_second']} units/s"
        )
        approve = _sign(w3, KEYS["alice"], funding["token_address"], funding["approve_calldata"])
        fund = _sign(w3, KEYS["alice"], funding["escrow_address"], funding["fund_calldata"])
        note(f"alice signed approve {approve}")
        note(f"alice signed fund    {fund}")
    if set(orders) != set(PROVIDERS):
        raise DemoError(f"alice found {sorted(orders)} in the search, not all three")

    from marketplace.orders.models import Order

    def all_active():
        run_indexer()
        return all(Order.objects.get(pk=o).state == "active" for o in orders.values())

    say("The indexer sees the three deposits on chain: the leases start")
    wait_for("all three orders active", all_active, 60, 1)

    say(f"The leases run for {LEASE_SECONDS_BEFORE_CHECK} s")
    end = time.monotonic() + LEASE_SECONDS_BEFORE_CHECK
    wait_for("lease time passes", lambda: time.monotonic() >= end, LEASE_SECONDS_BEFORE_CHECK + 5)

    say(
        "Mallory's agent starts returning wrong results; chuck's agent stops fetching jobs "
        "but keeps heartbeating"
    )
    CHEAT_FLAG.touch()
    DODGE_FLAG.touch()
    # Only once chuck's agent is out of its long poll is it certain not to fetch his check.
    wait_for("chuck's agent has stopped polling for jobs", DODGE_ACK.exists, 30, 0.5)

    say("Re-verification of every running lease is queued now")
    from marketplace.benchmarks.services import (
        benchmarks_schedule_reverification,
        lease_checks_expire_unfetched,
    )

    jobs = benchmarks_schedule_reverification()
    note(
        f"queued lease re-verification jobs {jobs} (beat would do this every "
        f"{int(os.environ.get('BENCHMARK_LEASE_INTERVAL_SECONDS', 3600))} s)"
    )
    note(
        f"each machine must fetch its check within {LEASE_CHECK_DEADLINE} s "
        "(LEASE_CHECK_DEADLINE_SECONDS, 180 s by default) while it heartbeats"
    )
    from django.utils import timezone

    from marketplace.benchmarks.models import BenchmarkJob
    from marketplace.providers.heartbeats import machines_last_seen

    def jobs_done():
        procs.check_alive()
        # What beat's lease-checks-expire-unfetched does every 15 s.
        lease_checks_expire_unfetched()
        return not BenchmarkJob.objects.filter(
            pk__in=jobs, state__in=BenchmarkJob.OPEN_STATES
        ).exists()

    wait_for("the three lease checks reach a verdict", jobs_done, 180, 1)
    for job in BenchmarkJob.objects.filter(pk__in=jobs).select_related("machine").order_by("pk"):
        fetched = "never fetched" if job.dispatched_at is None else "fetched"
        waited = (job.finished_at or job.updated_at) - job.created_at
        note(
            f"job {job.pk} on {job.machine.name}: {job.state} {job.outcome_reason or ''} "
            f"({fetched}; decided {waited.total_seconds():.0f} s after it was queued)"
        )
        seen = [job.machine.last_heartbeat_at]
        seen += machines_last_seen(machine_ids=[job.machine_id]).values()
        last = max((at for at in seen if at), default=None)
        if job.dispatched_at is None and last:
            age = (timezone.now() - last).total_seconds()
            note(
                f"  {job.machine.name}'s last heartbeat was {age:.0f} s ago: alive, so the "
                "unfetched check is the provider's fault (silence would be the heartbeat timeout's)"
            )

    say("Bob's lease completes: alice stops it through the API")
    stop = api.post(f"{url}/api/v1/orders/{orders['bob']}/stop", timeout=30)
    if stop.status_code != 200:
        raise DemoError(f"stop refused: {stop.status_code} {stop.text}")

    from marketplace.payments.models import Slash

    def settled():
        run_indexer()
        states = [Order.objects.get(pk=o).state for o in orders.values()]
        return all(s == "settled" for s in states) and Slash.objects.count() >= 2

    say(
        "The worker settles bob's lease, fails mallory's and chuck's (alice refunded, each "
        "provider slashed); the indexer records it"
    )
    wait_for("three leases settled and two slashes indexed", settled, 120, 1)
    for name in ("mallory", "chuck"):
        broken_lease(name, orders[name], wallets[name])

    relay_scene(env=env, url=url, procs=procs, provider=providers["mallory"],
                api=provider_api["mallory"], wallet=wallets["mallory"],
                run_indexer=run_indexer)  # fmt: skip

    say("Anyone audits every slash: the report behind its hash, without our database")
    from marketplace.payments.models import ContractDeployment

    staking_address = ContractDeployment.objects.get(name="staking").address
    audit = subprocess.run(
        [
            PY,
            "-m",
            "workers.audit",
            "--url",
            url,
            "--rpc",
            env["CHAIN_RPC_URL"],
            "--staking",
            staking_address,
            "--all-slashes",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    for line in audit.stdout.strip().splitlines():
        note(line)
    if audit.returncode != 0:
        raise DemoError(f"the audit of the slashes failed:\n{audit.stdout}{audit.stderr}")
    passed = sum(line.endswith(": PASSED") for line in audit.stdout.splitlines())
    if passed != Slash.objects.count():
        raise DemoError(f"{passed} reports passed the audit, of {Slash.objects.count()} slashes")
    note(f"all {passed} slashes audited: every report PASSED")

    say("Reward period closes: rewards per verified, staked, leased accelerator-hour")
    from django.conf import settings

    from marketplace.orders.models import Order as _Order
    from marketplace.payments.models import Reward
    from marketplace.payments.services.rewarding import providers_reward

    # The demo closes a 60-s reward period at once rather than wait for beat: the one holding
    # more of bob's ~50-s lease, the period it ended in or the one before (a lease that ended a
    # second into its last period earned nothing in it). mallory and chuck, slashed and their
    # leases failed, earn nothing.
    bob = _Order.objects.get(pk=orders["bob"])
    served_to = bob.started_at + timedelta(seconds=bob.billable_seconds or 0)
    length = settings.REWARD_PERIOD_SECONDS
    boundary = datetime.fromtimestamp(served_to.timestamp() // length * length, tz=UTC)
    last_period = served_to - boundary > boundary - bob.started_at
    for tx in providers_reward(
        now=served_to + timedelta(seconds=length) if last_period else served_to
    ):
        _confirm(chain, tx)
    wait_for("the reward indexed", lambda: (run_indexer(), Reward.objects.exists())[1], 30, 1)

    print_table(orders, providers, wallets)

    alice_cli = renter_scene(
        env=env,
        url=url,
        w3=w3,
        alice_password=alice_password,
        bob_provider_id=providers["bob"].pk,
        run_indexer=run_indexer,
    )
    withdraw_scene(
        env=env,
        url=url,
        w3=w3,
        alice_cli=alice_cli,
        bob_token=provider_api["bob"].headers["Authorization"].split()[1],
        wallets=wallets,
        run_indexer=run_indexer,
    )

    say("Reconciliation: python manage.py reconcile")
    run_indexer()
    rec = subprocess.run(
        [PY, "manage.py", "reconcile"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    for line in rec.stdout.strip().splitlines():
        note(line)
    if rec.returncode != 0:
        raise DemoError(f"reconcile found differences (exit {rec.returncode}) {rec.stderr}")


# ------------------------------------------------------------------------------ the providers


def register_agent(env: dict, url: str, provider, machine_name: str, config_name: str) -> Path:
    """`python -m workers.agent register` with a fresh one-time token, as the provider would;
    returns the agent's config file."""
    from marketplace.providers.services import registration_token_create

    _, raw = registration_token_create(provider=provider, user=provider.owner)
    config = RUN / f"{config_name}.json"
    command = ["register", "--url", url, "--token", raw, "--name", machine_name]
    out = subprocess.run(
        [PY, "-m", "workers.agent", *command, "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise DemoError(f"{machine_name}'s agent did not register: {out.stderr.strip()}")
    note(f"{provider.owner.username:<8} {out.stdout.strip()}")
    return config


def broken_lease(name: str, order_id: int, wallet: str) -> None:
    """What the platform decided about a failed lease, from the indexed chain events."""
    from marketplace.orders.models import Order
    from marketplace.payments.models import ChainEvent, Slash

    order = Order.objects.get(pk=order_id)
    failed = ChainEvent.objects.filter(lease_id=order.lease_id, name="LeaseFailed").first()
    if failed is None:
        raise DemoError(f"{name}'s lease #{order_id} did not fail on chain")
    a = failed.args
    slash = Slash.objects.filter(address__iexact=wallet, report_hash__iexact=a["reportHash"])
    if not slash.exists():
        raise DemoError(f"no slash of {name} cites the report {a['reportHash']}")
    billed = int(a["providerAmount"]) + int(a["feeAmount"])
    note(f"{name}'s lease #{order.pk} failed: {order.end_reason}")
    note(
        f"  billed {int(a['secondsUsed'])} s ({billed / USDC:.6f} USDC); alice refunded "
        f"{int(a['refundAmount']) / USDC:.6f} of {order.escrow_amount / USDC:.6f} USDC"
    )
    note(
        f"  {name} slashed {sum(int(s.amount) for s in slash) / USDC:.6f} USDC, citing report "
        f"{a['reportHash']}"
    )


def relay_scene(*, env: dict, url: str, procs: Processes, provider, api, wallet: str,
                run_indexer) -> None:  # fmt: skip
    """Sybil and relay resistance: mallory registers a fresh machine whose agent relays its jobs
    to the card that answered for her suspended one; the server refuses the card on a second
    machine (device_reused), suspends the newcomer and slashes her again."""
    from marketplace.benchmarks.models import BenchmarkJob
    from marketplace.payments.models import Slash
    from marketplace.providers.models import Machine

    say(
        "Mallory comes back under a new name: mallory-box-2, an agent that relays its jobs to "
        "the card behind mallory-box"
    )
    note(f"both her agents report that card's identity, {MALLORY_CARD}, as an agent reads it")
    note("from a GPU (on this CPU-only demo every agent shares the host's id, which the server")
    note("does not bind; so her agents say which card they use)")
    before = list(Slash.objects.values_list("pk", flat=True))
    config = register_agent(env, url, provider, "mallory-box-2", "mallory-2")
    procs.start(
        "agent-mallory-relay",
        [PY, str(Path(__file__).resolve()), "relay-agent", str(config)],
        env,
        RUN / "agent-mallory-relay.log",
    )
    relay = Machine.objects.get(provider=provider, name="mallory-box-2")

    def caught():
        procs.check_alive()
        run_indexer()
        job = BenchmarkJob.objects.filter(machine=relay).exclude(outcome_reason="").first()
        slash = Slash.objects.exclude(pk__in=before).filter(address__iexact=wallet).first()
        return (job, slash) if job and slash else None

    job, slash = wait_for("the server's verdict on mallory-box-2, its slash indexed", caught, 120)
    relay.refresh_from_db()
    note(f"job {job.pk} on mallory-box-2: {job.state} {job.outcome_reason}")
    note(f"  {job.outcome_detail}")
    note(f"mallory-box-2 is {relay.state}; it was never listed")
    note(f"mallory slashed {int(slash.amount) / USDC:.6f} USDC more, citing {slash.report_hash}")
    state = api.get(f"{url}/api/v1/providers/{provider.pk}/staking", timeout=30).json()
    note(
        f"her stake now: {state['staked'] / USDC:.6f} USDC; {state['rejected_machines']} of her "
        f"machines rejected for cheating, so any machine she lists needs {state['multiplier']} x "
        "the usual collateral"
    )


# ------------------------------------------------------------------------------ the renter CLI


def ensure_sandbox_numpy() -> None:
    """The training example imports numpy inside bob's sandbox, which sees the system's /usr
    read-only and nothing else of the machine (not the repository's .venv: its interpreter lives
    under /root, which the sandbox's uid cannot enter). So the demo's provider machine offers
    Debian's python3-numpy, installed here when missing as make installs Redis and bwrap."""
    check = ["/usr/bin/python3", "-c", "import numpy"]
    if subprocess.run(check, capture_output=True).returncode == 0:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise DemoError(
            "the renter's training example needs numpy in the workload sandbox: "
            "sudo apt-get install python3-numpy"
        )
    note("installing Debian's python3-numpy: the sandboxed training example imports numpy")
    install = ["apt-get", "install", "-y", "-q", "python3-numpy"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        subprocess.run(install, capture_output=True, check=True)


def renter_cli(env: dict, args: list[str], *, tick=None, timeout: float = 300, show=True) -> str:
    """Runs `python -m workers.renter ARGS` as alice would, printing its output as it comes
    (stamped with seconds since the command started, so live streaming shows); `tick` is called
    about once a second meanwhile (the demo's indexer: there is no beat here). Returns stdout."""
    note("$ python -m workers.renter " + " ".join(shlex.quote(a) for a in args))
    proc = subprocess.Popen(
        [PY, "-m", "workers.renter", "--quiet", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    started = time.monotonic()
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if show:
                print(f"    {time.monotonic() - started:5.1f}s | {line.rstrip()}", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while True:
        try:
            proc.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() - started > timeout:
                proc.kill()
                proc.wait()
                raise DemoError(f"renter {args[0]} still running after {timeout:.0f}s") from None
            if tick:
                tick()
    reader.join(timeout=10)
    if proc.returncode != 0:
        tail = "\n".join(lines[-5:])
        raise DemoError(f"renter {args[0]} exited with {proc.returncode}:\n{tail}")
    return "\n".join(lines)


def renter_scene(*, env: dict, url: str, w3, alice_password: str, bob_provider_id: int,
                 run_indexer) -> None:  # fmt: skip
    import json

    from marketplace.orders.models import Order

    cli_env = {k: v for k, v in env.items() if k not in ("RENTER_URL", "RENTER_TOKEN")}
    cli_env.update(
        {
            "RENTER_CONFIG": str(RUN / "alice-renter.json"),
            "ALICE_PASSWORD": alice_password,
            "CHAIN_RPC_URL": env["CHAIN_RPC_URL"],
        }
    )
    key_file = RUN / "alice.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(KEYS["alice"])

    say("Alice rents again, this time with the renter CLI (python -m workers.renter)")
    note("it needs only workers/renter/requirements.txt; her token goes to .run/demo/ (0600)")
    renter_cli(
        cli_env, ["login", "--url", url, "--username", "alice", "--password-env", "ALICE_PASSWORD"]
    )
    renter_cli(cli_env, ["search", "--min-free", "1", "--sort", "price_per_tflop_hour"])
    rows = json.loads(renter_cli(cli_env, ["search", "--min-free", "1", "--json"], show=False))
    bob_rows = [r for r in rows if r["provider_id"] == bob_provider_id]
    if not bob_rows:
        raise DemoError(f"bob's machine is not in the search: {[r['id'] for r in rows]}")
    listing = bob_rows[0]["id"]
    note(f"alice picks listing {listing}: bob's (mallory's and chuck's machines were suspended)")

    say("Order and fund from the CLI: it signs approve + fund with alice's key file")
    out = renter_cli(cli_env, ["order", str(listing), "--accelerators", "1", "--hours", "1"])
    order_id = int(out.split("order ", 1)[1].split(":", 1)[0])
    renter_cli(cli_env, ["fund", str(order_id), "--key-file", str(key_file)], tick=run_indexer)

    say("Alice runs the training example on bob's machine; its log streams back live")
    note("bob's agent runs it in bubblewrap: read-only /usr, /work, no network, no credential")
    note("numpy there is Debian's python3-numpy under /usr: the agent binds nothing else")
    results = RUN / "results"
    renter_cli(
        cli_env,
        [
            "run",
            str(order_id),
            "--dir",
            "examples/train",
            "--result",
            "out",
            "--out",
            str(results),
            "--env",
            "EPOCHS=4000",
            "--",
            "python3",
            "train.py",
        ],
        timeout=300,
    )
    checkpoint = results / "out" / "model.npz"
    if not checkpoint.is_file():
        raise DemoError(f"no checkpoint at {checkpoint}")
    import numpy as np

    with np.load(checkpoint) as model:
        shapes = ", ".join(f"{k} {tuple(model[k].shape)}" for k in model.files)
    shown = checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint
    note(f"checkpoint {shown}: {checkpoint.stat().st_size} bytes ({shapes})")

    say("Alice stops the lease; the worker settles it on chain")
    renter_cli(cli_env, ["stop", str(order_id)])

    def settled():
        run_indexer()
        return Order.objects.get(pk=order_id).state == "settled"

    wait_for("the lease settled and indexed", settled, 120, 1)

    say("The receipt, and the same figures read from the chain")
    receipt = renter_cli(cli_env, ["receipt", str(order_id)])
    receipt_matches_chain(receipt, w3, order_id)
    return cli_env, key_file


def withdraw_scene(*, env: dict, url: str, w3, alice_cli: tuple, bob_token: str, wallets: dict,
                   run_indexer) -> None:  # fmt: skip
    """Settlement credited every lease's money in the escrow and paid nobody (pull payments):
    bob withdraws his earnings and alice her refunds with the CLI, anyone pays the fees to the
    treasury; each balance moves by exactly the credit the indexer recorded."""
    from marketplace.payments import chain
    from marketplace.payments.models import AccruedFees, ChainEvent, Credit

    token, escrow = chain.contract("token"), chain.contract("escrow")
    treasury = chain.treasury_address()

    def credit(address: str) -> int:
        row = Credit.objects.filter(address=address).first()
        return int(row.amount) if row else 0

    def balance(address: str) -> int:
        return token.functions.balanceOf(address).call()

    say("Settlement paid nobody: it credited each lease's money in the escrow. The payees withdraw")
    run_indexer()
    owed = {"bob": credit(wallets["bob"]), "alice": credit(wallets["alice"])}
    fees = int(AccruedFees.objects.get().amount)
    # The credits are the indexed settlements added up: bob's shares, alice's refunds.
    closes = ChainEvent.objects.filter(name__in=("LeaseSettled", "LeaseFailed"))
    leases = {e.lease_id: e.args for e in ChainEvent.objects.filter(name="LeaseFunded")}
    shares = sum(
        int(e.args["providerAmount"])
        for e in closes
        if leases[e.lease_id]["provider"] == wallets["bob"]
    )
    refunds = sum(int(e.args["refundAmount"]) for e in closes)
    if (owed["bob"], owed["alice"], fees) != (
        shares,
        refunds,
        sum(int(e.args["feeAmount"]) for e in closes),
    ):
        raise DemoError(f"credits {owed}, fees {fees} differ from the indexed settlements")
    for name in ("bob", "alice"):
        note(f"{name:<6} credited {owed[name] / USDC:.6f} USDC in the escrow")
    note(f"fees   accrued  {fees / USDC:.6f} USDC for the treasury")
    before = {who: balance(wallets[who]) for who in ("bob", "alice")}
    before["treasury"] = balance(treasury)

    key_file = RUN / "bob.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(KEYS["bob"])
    bob_cli = {k: v for k, v in env.items() if k not in ("RENTER_URL", "RENTER_TOKEN")}
    bob_cli.update(
        {
            "RENTER_CONFIG": str(RUN / "bob-renter.json"),
            "RENTER_URL": url,
            "RENTER_TOKEN": bob_token,
            "CHAIN_RPC_URL": env["CHAIN_RPC_URL"],
        }
    )
    note("bob's wallet key signs his own withdrawal; nobody else can take his credit")
    renter_cli(bob_cli, ["withdraw", "--key-file", str(key_file)])
    alice_env, alice_key = alice_cli
    renter_cli(alice_env, ["withdraw", "--key-file", str(alice_key)])
    tx = _sign(w3, KEYS["alice"], escrow.address, escrow.encode_abi("withdrawFees", []))
    note(f"withdrawFees (anyone may call it; it pays only the treasury): {tx}")
    run_indexer()
    moved = {who: balance(wallets[who]) - before[who] for who in ("bob", "alice")}
    moved["treasury"] = balance(treasury) - before["treasury"]
    for who, expected in (("bob", owed["bob"]), ("alice", owed["alice"]), ("treasury", fees)):
        ok = moved[who] == expected
        note(
            f"{who:<9} received {moved[who] / USDC:.6f} USDC, its credit was "
            f"{expected / USDC:.6f}: " + ("matches" if ok else "DIFFERS")
        )
        if not ok:
            raise DemoError(f"{who} received {moved[who]} units, credited {expected}")
    left = (credit(wallets["bob"]), credit(wallets["alice"]), int(AccruedFees.objects.get().amount))
    if left != (0, 0, 0):
        raise DemoError(f"credits left after the withdrawals: {left}")


def receipt_matches_chain(receipt: str, w3, order_id: int) -> None:
    """Reads the lease's LeaseFunded and LeaseSettled events from the escrow contract through
    web3 (not the indexer's rows) and checks the CLI's billed and refunded figures and every
    transaction hash it printed against them."""
    from marketplace.orders.models import Order
    from marketplace.payments import chain
    from workers.renter.cli import _usd

    fields: dict[str, str] = {}
    tx_of: dict[str, tuple[int, str]] = {}
    lease_id = ""
    for raw in receipt.splitlines():
        line = raw.strip()
        if line.startswith("order ") and ", lease " in line:
            lease_id = line.rsplit(", lease ", 1)[1].strip()
        elif line.startswith(("billed ", "refunded ", "escrow ")):
            name, value = line.split(None, 1)
            fields[name] = value.strip()
        elif line.startswith("Lease") and " tx " in line:
            name, _, block, _, tx = line.split()
            tx_of[name] = (int(block), tx)
    if not lease_id or not {"billed", "refunded"} <= set(fields):
        raise DemoError(f"could not read the receipt:\n{receipt}")
    escrow = chain.contract("escrow")
    lid = bytes.fromhex(lease_id.removeprefix("0x"))
    settled = escrow.events.LeaseSettled().get_logs(from_block=0, argument_filters={"leaseId": lid})
    funded = escrow.events.LeaseFunded().get_logs(from_block=0, argument_filters={"leaseId": lid})
    if len(settled) != 1 or len(funded) != 1:
        raise DemoError(f"lease {lease_id}: {len(funded)} funded, {len(settled)} settled on chain")
    s, f = settled[0], funded[0]
    billed = s.args.providerAmount + s.args.feeAmount
    refunded = s.args.refundAmount
    order = Order.objects.get(pk=order_id)
    checks = [
        ("escrow", fields.get("escrow"), _usd(f.args.amount), order.escrow_amount, f.args.amount),
        ("billed", fields["billed"], _usd(billed), order.amount_owed, billed),
        ("refunded", fields["refunded"], _usd(refunded), order.refund_amount, refunded),
    ]
    failures = []
    for name, shown, on_chain, exact, chain_exact in checks:
        ok = shown == on_chain and exact == chain_exact
        verdict = "matches" if ok else "DIFFERS"
        note(f"{name:<9} receipt {shown:<10} chain {on_chain:<10} ({chain_exact} units) {verdict}")
        if not ok:
            failures.append(name)
    for name, event in (("LeaseFunded", f), ("LeaseSettled", s)):
        block, tx = tx_of.get(name, (None, None))
        ok = tx == event.transactionHash.to_0x_hex() and block == event.blockNumber
        mined = w3.eth.get_transaction_receipt(tx)["status"] == 1 if ok else False
        note(f"{name:<13} tx {tx} block {block}: " + ("matches" if ok and mined else "DIFFERS"))
        if not (ok and mined):
            failures.append(name)
    if failures:
        raise DemoError(f"the receipt differs from the chain: {', '.join(failures)}")
    note(f"{s.args.secondsUsed} s billed; the receipt matches the chain")


def print_table(orders: dict, providers: dict, wallets: dict) -> None:
    from marketplace.orders.models import Order
    from marketplace.payments.models import ChainEvent, ChainTransaction, Reward, Slash

    say("What moved, per lease (USDC; every figure read from the indexed chain events)")
    head = (
        f"{'lease':<8}{'provider':<9}{'outcome':<8}{'secs':>6}{'escrow':>10}{'paid':>10}"
        f"{'fee':>9}{'refund':>10}{'slashed':>10}{'reward':>9}"
    )
    print("    " + head)
    print("    " + "-" * len(head))
    hashes = []
    shown: set[int] = set()
    for name in ("mallory", "chuck", "bob"):
        order = Order.objects.get(pk=orders[name])
        close = ChainEvent.objects.get(
            lease_id=order.lease_id, name__in=("LeaseSettled", "LeaseFailed")
        )
        funded = ChainEvent.objects.get(lease_id=order.lease_id, name="LeaseFunded")
        a = close.args
        # The slash that cites this lease's failure report (mallory's relay slash is not one).
        slashes = Slash.objects.filter(
            address=wallets[name], report_hash__iexact=a.get("reportHash") or "-"
        )
        rewards = Reward.objects.filter(address=wallets[name])
        outcome = "failed" if close.name == "LeaseFailed" else "settled"
        print(
            f"    #{order.pk:<7}{name:<9}{outcome:<8}"
            f"{int(a['secondsUsed']):>6}{order.escrow_amount / USDC:>10.6f}"
            f"{int(a['providerAmount']) / USDC:>10.6f}{int(a['feeAmount']) / USDC:>9.6f}"
            f"{int(a['refundAmount']) / USDC:>10.6f}"
            f"{sum(int(s.amount) for s in slashes) / USDC:>10.2f}"
            f"{sum(int(r.amount) for r in rewards) / USDC:>9.2f}"
        )
        hashes.append((f"#{order.pk} fund", funded.tx_hash))
        start = ChainTransaction.objects.filter(order=order, purpose="lease_start").first()
        if start:
            hashes.append((f"#{order.pk} start", start.tx_hash))
        hashes.append((f"#{order.pk} {close.name[5:].lower()}", close.tx_hash))
        if close.name == "LeaseFailed":
            hashes.append((f"#{order.pk} report", a["reportHash"]))
        for s in slashes:
            shown.add(s.pk)
            hashes.append((f"{name} slash", s.tx_hash))
            hashes.append((f"{name} slash report", s.report_hash))
        for r in rewards:
            hashes.append((f"{name} reward", r.tx_hash))
    print(
        "    paid: credited to the provider; fee: accrued for the treasury; refund: credited to "
        "alice; secs: billed"
    )
    names = {address.lower(): name for name, address in wallets.items()}
    for s in Slash.objects.exclude(pk__in=shown).order_by("pk"):
        name = names.get(s.address.lower(), s.address)
        print(f"    and no lease: {name} slashed {int(s.amount) / USDC:.6f} USDC (the relay)")
        hashes.append((f"{name} relay slash", s.tx_hash))
        hashes.append((f"{name} relay report", s.report_hash))
    print()
    for label, value in hashes:
        print(f"    {label:<22}{value}")


# ------------------------------------------------------------------------------ helpers


def _safe(fn):
    try:
        return fn()
    except Exception:
        return False


def _address(key: str) -> str:
    from workers.renter.wallet import address_of

    return address_of(key)


def _sign(w3, key: str, to: str, data: str) -> str:
    """What a wallet does: sign locally, send, wait for the receipt (workers/renter/wallet.py)."""
    from workers.renter.wallet import TransactionFailed, sign_and_send

    try:
        return sign_and_send(w3, key, to, data)["transactionHash"].to_0x_hex()
    except TransactionFailed as exc:
        raise DemoError(str(exc)) from None


def _confirm(chain, tx) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            chain.confirm(tx)
            return
        except chain.NotConfirmed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _find_token(data) -> str:
    if isinstance(data, dict):
        for key in ("token", "key", "api_token"):
            if isinstance(data.get(key), str) and data[key].startswith("mkt_"):
                return data[key]
        for value in data.values():
            found = _find_token(value)
            if found:
                return found
    return ""


# ------------------------------------------------------------------------------ the cheater


def cheat_agent(mode: str, config_file: str) -> int:
    """The demo's dishonest agents: the real CLI loop (workers.agent.cli.run_loop, with its
    heartbeat) around a JobRunner with one step overridden. Demo only: nothing else runs these.

    - cheat-agent (mallory): honest until CHEAT_FLAG appears (after onboarding, partway
      through her lease), then it skips work: a chain job's sketch has every third unit left
      uncomputed (zeros), an int8 job's result has every seventh entry wrong.
    - relay-agent (mallory's second registration): honest compute, on the card that already
      answered for her first machine: it reports that card's identity.
    - dodge-agent (chuck): honest until DODGE_FLAG appears, then it never polls for a job again
      (so never fetches its lease's check) while its heartbeat goes on; it writes DODGE_ACK once
      it has stopped polling."""
    from workers.agent.cli import _Heartbeat, run_loop
    from workers.agent.client import AgentApi, RequestsTransport
    from workers.agent.config import config_load
    from workers.agent.runner import JobRunner

    class OnMalloryCard(JobRunner):
        def device_id(self, index, spec):
            # A real agent reports the GPU's UUID here; this CPU's id is shared by every agent
            # on the host (and so not bound by the server), so mallory's agents name her card.
            return MALLORY_CARD

    class LateCheater(OnMalloryCard):
        def compute(self, spec, seed):
            output = super().compute(spec, seed)
            if CHEAT_FLAG.exists():
                output = output.copy()
                output.flat[::7] += 1  # a wrong answer in every seventh entry
            return output

        def sketch(self, spec, seed):
            y = super().sketch(spec, seed)
            if CHEAT_FLAG.exists():
                y = y.copy()
                y[::3] = 0  # a third of the units never computed
            return y

    class Dodger(JobRunner):
        def run_batch(self, wait=25):
            if not DODGE_FLAG.exists():
                return super().run_batch(wait)
            DODGE_ACK.touch()
            self.sleep(wait)  # heartbeats go on in their own thread; no job is ever fetched
            return []

    runners = {"cheat-agent": LateCheater, "relay-agent": OnMalloryCard, "dodge-agent": Dodger}
    config = config_load(Path(config_file))
    api = AgentApi(RequestsTransport(config["url"], config["credential"]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    _Heartbeat(api, stop, 10).start()
    return run_loop(runners[mode](api), stop, max_jobs=None, poll_wait=2)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if len(sys.argv) == 3 and sys.argv[1] in ("cheat-agent", "relay-agent", "dodge-agent"):
        sys.exit(cheat_agent(sys.argv[1], sys.argv[2]))
    sys.exit(main())
