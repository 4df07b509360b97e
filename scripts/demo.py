"""`make demo`: the whole marketplace story, narrated, on this machine, in a few minutes.

It starts what it needs (its own Anvil, Redis, gunicorn and a Celery worker, each on a free port,
with a separate SQLite database under .run/demo/) and stops everything it started on the way
out. Two providers run real agents (`python -m workers.agent`): bob is honest; mallory behaves
through onboarding and then returns wrong results (the `cheat-agent` entry below: a JobRunner
with one overridden step). Alice rents both machines, paying into escrow on Anvil; mallory is
caught by re-verification, her lease fails (alice is refunded the unused time) and her stake is
slashed with the report hash on chain; bob's lease completes and settles. Then a table of what
moved. Then alice rents bob's machine again with the renter CLI (`python -m workers.renter`, a
subprocess, as a renter would): search, order, fund (the CLI signs approve + fund), run the
training example in bob's sandbox with its log streamed live, download the checkpoint, stop, and
the receipt checked against the chain. Last, `manage.py reconcile`.
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
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run" / "demo"
PY = str(ROOT / ".venv" / "bin" / "python")
CHEAT_FLAG = RUN / "mallory-cheats"

# Anvil's public dev accounts (the "test test ... junk" mnemonic): local chains only.
KEYS = {
    "bob": "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",  # account 1
    "mallory": "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",  # 2
    "alice": "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",  # 4
}
USDC = 10**6
STAKE = 200 * USDC
LEASE_SECONDS_BEFORE_CHECK = 20


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
        "alice-renter.json",
        "pending-orders.json",
        "alice.key",
    ):
        (RUN / stale).unlink(missing_ok=True)
    shutil.rmtree(RUN / "results", ignore_errors=True)
    CHEAT_FLAG.unlink(missing_ok=True)
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
    from marketplace.providers.services import provider_create, registration_token_create

    def run_indexer():
        procs.check_alive()
        index()

    wallets = {name: Web3.to_checksum_address(_address(key)) for name, key in KEYS.items()}

    # ---------------------------------------------------------------- providers
    say("Two providers sign up; each gets a one-time registration token")
    providers = {}
    for name in ("bob", "mallory"):
        user = User.objects.create_user(
            username=name, password=os.urandom(8).hex(), role=User.Role.PROVIDER_OWNER
        )
        providers[name] = provider_create(
            owner=user, name=f"{name}'s GPUs", wallet_address=wallets[name]
        )
        note(f"{name:<8} provider {providers[name].pk}, wallet {wallets[name]}")

    say("Both stake 200 USDC in ProviderStaking (approve + stake, signed with their own keys)")
    from marketplace.payments.services import demo_renter_fund

    staking, token, escrow = (chain.contract(n) for n in ("staking", "token", "escrow"))
    for name in ("bob", "mallory"):
        demo_renter_fund(address=wallets[name], amount=STAKE)
        _sign(w3, KEYS[name], token.address, token.encode_abi("approve", [staking.address, STAKE]))
        tx = _sign(w3, KEYS[name], staking.address, staking.encode_abi("stake", [STAKE]))
        note(f"{name:<8} staked {STAKE / USDC:.0f} USDC in {tx}")
    run_indexer()

    say("Each provider registers a real agent: python -m workers.agent register, then run")
    for name in ("bob", "mallory"):
        _, raw = registration_token_create(provider=providers[name], user=providers[name].owner)
        config = RUN / f"{name}.json"
        out = subprocess.run(
            [
                PY,
                "-m",
                "workers.agent",
                "register",
                "--url",
                url,
                "--token",
                raw,
                "--name",
                f"{name}-box",
                "--config",
                str(config),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise DemoError(f"{name}'s agent did not register: {out.stderr.strip()}")
        note(f"{name:<8} {out.stdout.strip()}")
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
            cmd = [PY, str(Path(__file__).resolve()), "cheat-agent", str(config)]
        procs.start(f"agent-{name}", cmd, env, RUN / f"agent-{name}.log")
    note("mallory's agent is a wrapper whose compute step turns dishonest later on")

    machines = {n: Machine.objects.get(provider=providers[n]) for n in ("bob", "mallory")}

    def both_verified():
        procs.check_alive()
        states = {n: Machine.objects.get(pk=m.pk).state for n, m in machines.items()}
        if "suspended" in states.values():
            raise DemoError(f"onboarding failed: {states}")
        return all(s == Machine.State.VERIFIED for s in states.values())

    say(
        "Onboarding: each machine proves its speed; the server recomputes parts it draws only "
        "after each answer"
    )
    wait_for("both machines pass onboarding (small CPU suites)", both_verified, 240, 1)

    say("Both list their verified machine; mallory undercuts bob")
    from marketplace.listings.services import listing_publish

    for name, price in (("bob", 72_000), ("mallory", 36_000)):
        m = machines[name]
        # Prices and region only: kind, model, devices and precisions are what was verified.
        listing_publish(
            user=providers[name].owner,
            machine_id=m.pk,
            storage_gb=50,
            network_gbps=1,
            region="local",
            price_per_hour=price,
        )
        note(f"{name:<8} {price / USDC:.3f} USDC per hour")

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
    cheapest, other = rows[0], rows[1]

    demo_renter_fund(address=wallets["alice"], amount=10 * USDC)
    note(f"alice's wallet {wallets['alice']} holds 10 test USDC")
    orders = {}
    for who, listing in (("cheapest", cheapest), ("second", other)):
        key = f"alice-{who}-{int(time.time())}"
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
        provider = "mallory" if listing["provider_id"] == providers["mallory"].pk else "bob"
        orders[provider] = order["id"]
        say(f"Alice orders the {who} machine ({provider}'s), Idempotency-Key {key}")
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

    from marketplace.orders.models import Order

    def all_active():
        run_indexer()
        return all(Order.objects.get(pk=o).state == "active" for o in orders.values())

    say("The indexer sees both deposits on chain: the leases start")
    wait_for("both orders active", all_active, 60, 1)

    say(f"The leases run for {LEASE_SECONDS_BEFORE_CHECK} s")
    end = time.monotonic() + LEASE_SECONDS_BEFORE_CHECK
    wait_for("lease time passes", lambda: time.monotonic() >= end, LEASE_SECONDS_BEFORE_CHECK + 5)

    say("Mallory's agent starts returning wrong results; re-verification is triggered now")
    CHEAT_FLAG.touch()
    from marketplace.benchmarks.services import benchmarks_schedule_reverification

    jobs = benchmarks_schedule_reverification()
    note(
        f"queued lease re-verification jobs {jobs} (beat would do this every "
        f"{int(os.environ.get('BENCHMARK_LEASE_INTERVAL_SECONDS', 3600))} s)"
    )
    from marketplace.benchmarks.models import BenchmarkJob

    def jobs_done():
        procs.check_alive()
        return not BenchmarkJob.objects.filter(
            pk__in=jobs, state__in=BenchmarkJob.OPEN_STATES
        ).exists()

    wait_for("both lease checks reach a verdict", jobs_done, 180, 1)
    for job in BenchmarkJob.objects.filter(pk__in=jobs).select_related("machine__provider"):
        note(f"job {job.pk} on {job.machine.name}: {job.state} {job.outcome_reason}")

    say("Bob's lease completes: alice stops it through the API")
    stop = api.post(f"{url}/api/v1/orders/{orders['bob']}/stop", timeout=30)
    if stop.status_code != 200:
        raise DemoError(f"stop refused: {stop.status_code} {stop.text}")

    from marketplace.payments.models import Slash

    def settled():
        run_indexer()
        states = [Order.objects.get(pk=o).state for o in orders.values()]
        return all(s == "settled" for s in states) and Slash.objects.exists()

    say("The worker settles both leases and slashes mallory; the indexer records it")
    wait_for("both leases settled and the slash indexed", settled, 120, 1)

    say("Anyone audits the slash: the report behind its hash, without our database")
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

    say("Reward period closes: rewards per verified, staked, leased accelerator-hour")
    from marketplace.orders.models import Order as _Order
    from marketplace.payments.models import Reward
    from marketplace.payments.services import providers_reward

    # The demo closes the 60-s reward period in which bob's lease ended rather than wait for it;
    # mallory, slashed and her lease failed, earns nothing.
    bob_ended = _Order.objects.get(pk=orders["bob"]).ended_at
    for tx in providers_reward(now=bob_ended + timedelta(seconds=59)):
        _confirm(chain, tx)
    wait_for("the reward indexed", lambda: (run_indexer(), Reward.objects.exists())[1], 30, 1)

    print_table(orders, providers, wallets)

    renter_scene(
        env=env,
        url=url,
        w3=w3,
        alice_password=alice_password,
        bob_provider_id=providers["bob"].pk,
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
    note(f"alice picks listing {listing}: bob's (mallory's machine was suspended)")

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
    note(f"checkpoint {checkpoint.relative_to(ROOT)}: {checkpoint.stat().st_size} bytes ({shapes})")

    say("Alice stops the lease; the worker settles it on chain")
    renter_cli(cli_env, ["stop", str(order_id)])

    def settled():
        run_indexer()
        return Order.objects.get(pk=order_id).state == "settled"

    wait_for("the lease settled and indexed", settled, 120, 1)

    say("The receipt, and the same figures read from the chain")
    receipt = renter_cli(cli_env, ["receipt", str(order_id)])
    receipt_matches_chain(receipt, w3, order_id)


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
    for name in ("mallory", "bob"):
        order = Order.objects.get(pk=orders[name])
        close = ChainEvent.objects.get(
            lease_id=order.lease_id, name__in=("LeaseSettled", "LeaseFailed")
        )
        funded = ChainEvent.objects.get(lease_id=order.lease_id, name="LeaseFunded")
        slashes = Slash.objects.filter(address=wallets[name])
        rewards = Reward.objects.filter(address=wallets[name])
        a = close.args
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
            hashes.append((f"{name} slash", s.tx_hash))
            hashes.append((f"{name} slash report", s.report_hash))
        for r in rewards:
            hashes.append((f"{name} reward", r.tx_hash))
    print("    paid: to the provider; fee: to the treasury; refund: back to alice; secs: billed")
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
    from eth_account import Account

    return Account.from_key(key).address


def _sign(w3, key: str, to: str, data: str) -> str:
    """What a wallet does: sign locally, send, wait for the receipt."""
    from eth_account import Account
    from web3 import Web3

    sender = Account.from_key(key)
    tx = {
        "to": Web3.to_checksum_address(to),
        "data": data,
        "value": 0,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "gasPrice": w3.eth.gas_price,
    }
    tx["gas"] = w3.eth.estimate_gas({**tx, "from": sender.address}) * 2
    tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    if receipt["status"] != 1:
        raise DemoError(f"transaction {tx_hash.to_0x_hex()} reverted")
    return tx_hash.to_0x_hex()


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


def cheat_agent(config_file: str) -> int:
    """mallory's agent: the real CLI loop with its compute steps overridden. Honest until the
    flag file appears (after onboarding, partway through her lease), then it skips work: a
    chain job's sketch has every third unit left uncomputed (zeros), an int8 job's result has
    every seventh entry wrong."""
    import threading

    from workers.agent.cli import _Heartbeat, run_loop
    from workers.agent.client import AgentApi, RequestsTransport
    from workers.agent.config import config_load
    from workers.agent.runner import JobRunner

    class LateCheater(JobRunner):
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

    config = config_load(Path(config_file))
    api = AgentApi(RequestsTransport(config["url"], config["credential"]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    _Heartbeat(api, stop, 30).start()
    return run_loop(LateCheater(api), stop, max_jobs=None, poll_wait=2)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if len(sys.argv) == 3 and sys.argv[1] == "cheat-agent":
        sys.exit(cheat_agent(sys.argv[2]))
    sys.exit(main())
