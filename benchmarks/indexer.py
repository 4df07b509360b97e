"""Indexer throughput from scratch: many money events on a fresh Anvil, indexed into a new database.

    python benchmarks/indexer.py                      # SQLite, 20,000 events
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mkt_x python benchmarks/indexer.py

Generates the events once (stakes, lease deposits, unstake requests, slashes and rewards from
97 wallets, sent as JSON-RPC batches into blocks mined on demand), then times `index()` from
an empty database in a child process per measurement, so that each one starts cold, as a
fresh deployment would:
  - batched: the indexer of this checkout, into PostgreSQL when DATABASE_URL names it (in a
    database created next to it and dropped afterwards; the named one is never touched);
  - sqlite: the same into a fresh SQLite file;
  - per-event: the indexer before batching (contracts/indexer.py at --legacy-rev: one
    eth_getLogs per contract, one transaction per event), into the same kind of database as the
    batched figure, for the ratio (--no-legacy skips it).
Each run checks its result against the chain: every money event stored and final once, every
wallet's stake equal to ProviderStaking.stakeOf, slashes and rewards summed to the unit.
Target: >= 1,000 events/s into PostgreSQL (anchors from a public benchmark over RPC: rindexer
about 200 events/s, Ponder about 50).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

TARGET_EVENTS_PER_SECOND = 1_000
ANCHORS = {"rindexer": 200, "Ponder": 50}
LEGACY_REV = "e143524"  # main before the batched indexer
USDC = 10**6
MAX_UINT = 2**256 - 1
DEV_MNEMONIC = "test test test test test test test test test test test junk"
ACCOUNTS = 100
TX_GAS = 200_000
RPC_BATCH = 500  # requests per JSON-RPC batch
BLOCK_TXS = 400  # transactions per mined block (block gas limit 100M / ~80k gas each, halved)
RATE, DURATION = 1_000, 3_600


# ------------------------------------------------------------------------------ the chain


class Anvil:
    def __init__(self) -> None:
        from tests.integration.conftest import anvil_binary, free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                str(anvil_binary()),
                "--port",
                str(self.port),
                "--chain-id",
                "31337",
                "--mnemonic",
                DEV_MNEMONIC,
                "--accounts",
                str(ACCOUNTS),
                "--gas-limit",
                "100000000",
                "--order",
                "fifo",
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait(self):
        from web3 import HTTPProvider, Web3

        w3 = Web3(HTTPProvider(self.url, request_kwargs={"timeout": 120}))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if w3.is_connected():
                    return w3
            except Exception:
                pass
            time.sleep(0.1)
        raise SystemExit("anvil did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


class Sender:
    """Unsigned transactions from Anvil's unlocked accounts, sent many per HTTP request and
    mined BLOCK_TXS per block: generating 20,000 events takes seconds, not minutes."""

    def __init__(self, w3, url: str) -> None:
        import requests

        self.w3, self.url = w3, url
        self.session = requests.Session()
        self.nonces: dict[str, int] = {}
        self.queue: list[dict] = []
        self.sent = 0

    def rpc(self, calls: list[tuple[str, list]]) -> list:
        body = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)
        ]
        answers = self.session.post(self.url, json=body, timeout=300).json()
        answers.sort(key=lambda a: a["id"])
        errors = [a["error"] for a in answers if "error" in a]
        if errors:
            raise SystemExit(f"node refused a transaction: {errors[0]}")
        return [a["result"] for a in answers]

    def send(self, sender: str, to: str, data: str) -> None:
        nonce = self.nonces.get(sender)
        if nonce is None:
            nonce = self.w3.eth.get_transaction_count(sender, "pending")
        self.nonces[sender] = nonce + 1
        self.queue.append(
            {
                "from": sender,
                "to": to,
                "data": data,
                "gas": hex(TX_GAS),
                "nonce": hex(nonce),
                "gasPrice": hex(2 * 10**9),
            }
        )
        if len(self.queue) >= BLOCK_TXS:
            self.flush()

    def flush(self) -> None:
        queue, self.queue = self.queue, []
        for i in range(0, len(queue), RPC_BATCH):
            self.rpc([("eth_sendTransaction", [tx]) for tx in queue[i : i + RPC_BATCH]])
        self.rpc([("evm_mine", [])])
        self.sent += len(queue)


def generate(w3, url: str, events: int) -> dict:
    """Deploys the contracts and emits about `events` money events; returns what the indexer
    and the checks need."""
    from contracts.deploy import deploy_marketplace

    accounts = w3.eth.accounts
    owner, operator, treasury = accounts[0], accounts[1], accounts[2]
    stakers, renters = accounts[3:53], accounts[53:]
    market = deploy_marketplace(
        w3,
        owner=owner,
        operator=operator,
        treasury=treasury,
        fee_bps=250,
        reclaim_delay=86_400,
        unstake_delay=86_400,
    )
    token, escrow, staking = market["token"], market["escrow"], market["staking"]
    deployed_at = w3.eth.block_number
    w3.provider.make_request("evm_setAutomine", [False])
    tx = Sender(w3, url)
    # Setup: tokens, allowances, a first stake per staker and the reward pool.
    for who in (*stakers, *renters, treasury):
        tx.send(owner, token.address, token.encode_abi("mint", [who, 10**12 * USDC]))
    tx.flush()
    for who in (*stakers, *renters, treasury):
        for spender in (escrow.address, staking.address):
            tx.send(who, token.address, token.encode_abi("approve", [spender, MAX_UINT]))
    tx.flush()
    for who in stakers:
        tx.send(who, staking.address, staking.encode_abi("stake", [100 * USDC]))
    tx.send(treasury, staking.address, staking.encode_abi("fundRewards", [events * USDC]))
    tx.flush()
    money_txs = len(stakers) + 1
    # The mix: per 20 events, 10 stakes, 6 lease deposits, 2 unstake requests, 1 slash, 1 reward.
    report = "0x" + "ab" * 32
    for i in range(max(0, events - money_txs)):
        kind = i % 20
        staker = stakers[i % len(stakers)]
        if kind < 10:
            tx.send(staker, staking.address, staking.encode_abi("stake", [10 * USDC + i]))
        elif kind < 16:
            lease = (i + 1).to_bytes(32, "big")
            data = escrow.encode_abi("fund", [lease, staker, RATE * DURATION + i, RATE, DURATION])
            tx.send(renters[i % len(renters)], escrow.address, data)
        elif kind < 18:
            tx.send(staker, staking.address, staking.encode_abi("requestUnstake", [1 + i]))
        elif kind == 18:
            data = staking.encode_abi("slash", [staker, 1 + i, report])
            tx.send(operator, staking.address, data)
        else:
            data = staking.encode_abi("reward", [staker, 1 + i, report])
            tx.send(operator, staking.address, data)
        money_txs += 1
    tx.flush()
    w3.provider.make_request("evm_setAutomine", [True])
    head = w3.eth.block_number
    failed = sum(
        1
        for block in range(deployed_at + 1, head + 1)
        for receipt in w3.eth.get_block_receipts(block)
        if receipt["status"] != 1
    )
    if failed:
        raise SystemExit(f"{failed} generated transactions reverted")
    return {
        "rpc_url": url,
        "events": money_txs,
        "head": head,
        "blocks": head - deployed_at,
        "stakers": list(stakers),
        "addresses": {name: c.address for name, c in market.items()},
        "deployed_at": deployed_at,
    }


# ------------------------------------------------------------------------------ one measurement


def _legacy_index():
    """contracts/indexer.py as it was before batching, loaded from git."""
    source = subprocess.run(
        ["git", "show", f"{os.environ['BENCH_LEGACY_REV']}:contracts/indexer.py"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # The old module imports the chain client and the effects from where they lived then; point
    # it at where the same functions live now.
    source = source.replace(
        "from contracts import chain", "from marketplace.payments import chain"
    ).replace(
        "from marketplace.payments.services import chain_event_finalize",
        "from marketplace.payments.services.chain_events import chain_event_finalize",
    )
    path = Path(tempfile.mkdtemp()) / "legacy_indexer.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("legacy_indexer", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.index


def measure(chain_info: dict, mode: str) -> dict:
    """Runs in a child process whose DATABASE_URL names an empty database."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ["CHAIN_RPC_URL"] = chain_info["rpc_url"]
    os.environ["CHAIN_CONFIRMATIONS"] = "1"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Sum

    from marketplace.payments import chain
    from marketplace.payments.indexer import index
    from marketplace.payments.models import ChainEvent, ContractDeployment, Reward, Slash, Stake

    call_command("migrate", verbosity=0)
    w3 = chain.get_web3()
    cid = w3.eth.chain_id
    for name, address in chain_info["addresses"].items():
        ContractDeployment.objects.create(
            chain_id=cid,
            name=name,
            address=address,
            block_number=chain_info["deployed_at"],
            tx_hash="0x",
        )
    run = _legacy_index() if mode == "per-event" else index
    started = time.perf_counter()
    run(w3)
    seconds = time.perf_counter() - started

    # The checks: every event once and final, every stake and payout as the chain has it.
    staking = chain.contract("staking", w3)
    wrong_stakes = 0
    for address in chain_info["stakers"]:
        staked, pending, unlock = staking.functions.stakeOf(address).call()
        row = Stake.objects.filter(chain_id=cid, address=address).first()
        if row is None or (row.staked, row.pending, row.unlock_time) != (staked, pending, unlock):
            wrong_stakes += 1
    sums = {}
    for model, name in ((Slash, "Slashed"), (Reward, "Rewarded")):
        on_chain = sum(
            int(e.args["amount"]) for e in ChainEvent.objects.filter(name=name).only("args")
        )
        sums[name] = (model.objects.aggregate(s=Sum("amount"))["s"] or 0) == on_chain
    stored = ChainEvent.objects.count()
    return {
        "mode": mode,
        "vendor": connection.vendor,
        "stored": stored,
        "final": ChainEvent.objects.filter(is_final=True).count(),
        "seconds": seconds,
        "wrong_stakes": wrong_stakes,
        "payouts_exact": all(sums.values()),
    }


# ------------------------------------------------------------------------------ databases


class PostgresScratch:
    """A database created beside the one DATABASE_URL names, dropped afterwards."""

    def __init__(self, url: str, suffix: str) -> None:
        import psycopg

        parsed = urlparse(url)
        self.name = f"{parsed.path.lstrip('/')}_bench_{suffix}"
        self.admin = urlunparse(parsed._replace(path="/postgres"))
        self.url = urlunparse(parsed._replace(path=f"/{self.name}"))
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def run_child(chain_info: dict, mode: str, database_url: str, legacy_rev: str) -> dict:
    env = dict(os.environ, DATABASE_URL=database_url, BENCH_LEGACY_REV=legacy_rev)
    if not env.get("DJANGO_SECRET_KEY"):
        env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode],
        input=json.dumps(chain_info),
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_into(chain_info: dict, mode: str, target: str, legacy_rev: str) -> dict:
    if target.startswith("postgres"):
        scratch = PostgresScratch(target, mode.replace("-", "_"))
        try:
            return run_child(chain_info, mode, scratch.url, legacy_rev)
        finally:
            scratch.drop()
    db = Path(tempfile.mkdtemp()) / "indexer.sqlite3"
    return run_child(chain_info, mode, f"sqlite:///{db}", legacy_rev)


def report(result: dict, events: int) -> float:
    rate = result["stored"] / result["seconds"]
    ok = (
        result["stored"] == events
        and result["final"] == events
        and result["wrong_stakes"] == 0
        and result["payouts_exact"]
    )
    label = f"{result['mode']} → {result['vendor']}"
    print(
        f"  {label:<26}{result['seconds']:>8.2f} s{rate:>10,.0f} events/s"
        f"   {'checks ok' if ok else 'CHECKS FAILED: ' + json.dumps(result)}"
    )
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--legacy-rev", default=LEGACY_REV)
    parser.add_argument("--no-legacy", action="store_true", help="skip the per-event figure")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite figure")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(measure(json.loads(sys.stdin.read()), args.child)))
        return 0

    target = os.environ.get("DATABASE_URL", "")
    anvil = Anvil()
    try:
        w3 = anvil.wait()
        started = time.perf_counter()
        info = generate(w3, anvil.url, args.events)
        print(
            f"generated {info['events']:,} money events in {info['blocks']:,} blocks "
            f"in {time.perf_counter() - started:.1f} s (Anvil {w3.client_version})"
        )
        # Figures from a shared machine mean little without its load beside them.
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"host: {os.cpu_count()} CPUs, load average {load}")
        print("== Indexer from scratch (index() wall time: scan, store, finalize, effects) ==")
        rates = {}
        main_target = target if target.startswith("postgres") else "sqlite"
        rates["batched"] = report(
            measure_into(info, "batched", main_target, args.legacy_rev), info["events"]
        )
        if main_target != "sqlite" and not args.no_sqlite:
            report(measure_into(info, "batched", "sqlite", args.legacy_rev), info["events"])
        if not args.no_legacy:
            rates["per-event"] = report(
                measure_into(info, "per-event", main_target, args.legacy_rev), info["events"]
            )
        vendor = "PostgreSQL" if main_target != "sqlite" else "SQLite"
        verdict = "met" if rates["batched"] >= TARGET_EVENTS_PER_SECOND else "NOT met"
        print(
            f"  target >= {TARGET_EVENTS_PER_SECOND:,} events/s into PostgreSQL: "
            f"{rates['batched']:,.0f} into {vendor} ({verdict}"
            f"{'' if vendor == 'PostgreSQL' else '; set DATABASE_URL for the PostgreSQL figure'})"
        )
        print(
            "  anchors over RPC: "
            + ", ".join(f"{k} ~{v}/s ({rates['batched'] / v:.0f}x)" for k, v in ANCHORS.items())
        )
        if "per-event" in rates:
            print(f"  batched / per-event: {rates['batched'] / rates['per-event']:.1f}x")
    finally:
        anvil.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
