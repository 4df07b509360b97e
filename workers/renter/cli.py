"""python -m workers.renter {login,search,order,fund,run,workloads,logs,stop,receipt,withdraw}

From search to results in five commands:
    python -m workers.renter search --min-free 1 --sort price_per_tflop_hour
    python -m workers.renter order 12 --accelerators 1 --hours 2
    python -m workers.renter fund 34 --key-file ~/.renter-key
    python -m workers.renter run 34 --dir examples/train --result out -- python3 train.py
    python -m workers.renter receipt 34
    python -m workers.renter withdraw --key-file ~/.renter-key

Settlement credits refunds (and a provider's earnings) in the escrow instead of paying them out:
`withdraw` takes them, signed with the wallet's own key (a provider's wallet key works the same).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from workers.renter.api import Api, CliError, config_load, config_path, config_save
from workers.renter.wallet import sign_call

UNITS = 10**6  # the payment token has 6 decimals
FINAL = {"succeeded", "failed", "cancelled", "timed_out", "lost"}
SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".mypy_cache", ".pytest_cache"}


def _usd(units: int | None) -> str:
    return "-" if units is None else f"${units / UNITS:,.4f}"


def _bar(total: int | None, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=quiet, file=sys.stderr)


def _api(args: argparse.Namespace) -> Api:
    config = config_load(config_path(args.config))
    if not config.get("token"):
        raise CliError("not signed in: run `login --url URL --username NAME` or set RENTER_TOKEN")
    return Api(config.get("url", ""), config["token"])


# --- login, search, order -------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    import getpass

    password = os.environ.get(args.password_env) if args.password_env else None
    password = password or getpass.getpass(f"password for {args.username}: ")
    api = Api(args.url)
    reply = api.post("/auth/tokens", json={"username": args.username, "password": password})
    path = config_path(args.config)
    config_save(path, {"url": args.url, "token": reply["token"]})
    print(f"signed in as {args.username}; token saved to {path} (0600)")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    params = {
        k: v
        for k, v in {
            "kind": args.kind,
            "model": args.model,
            "min_count": args.min_count,
            "min_free": args.min_free,
            "max_price": args.max_price,
            "region": args.region,
            "precision": args.precision,
            "min_tflops": args.min_tflops,
            "sort": args.sort,
        }.items()
        if v is not None
    }
    reply = _api(args).get("/listings", params=params)
    rows = reply.get("results", reply) if isinstance(reply, dict) else reply
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("ID", "MODEL", "FREE/ALL", "REGION", "PRICE/ACC-H", "VERIFIED TFLOP/S", "$/TFLOP-H")
    table = [header]
    for row in rows:
        tflops = row.get("verified_tflops")
        per_tflop = row.get("price_per_tflop_hour")
        table.append(
            (
                str(row["id"]),
                f"{row['accelerator_count']}× {row['model']}",
                f"{row.get('free_accelerators', '?')}/{row['accelerator_count']}",
                row.get("region", ""),
                _usd(row.get("price_per_hour")),
                "-" if tflops is None else f"{float(tflops):,.1f}",
                "-" if per_tflop is None else _usd(int(float(per_tflop))),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if len(table) == 1:
        print("(no listings match)")
    return 0


def _pending_path(config: str | None) -> Path:
    return config_path(config).with_name("pending-orders.json")


def cmd_order(args: argparse.Namespace) -> int:
    api = _api(args)
    body: dict[str, Any] = {
        "listing_id": args.listing,
        "pricing_mode": args.mode,
        "accelerators": args.accelerators,
    }
    if args.mode == "reserved":
        body["reserved_term"] = args.term
    else:
        body["hours"] = args.hours
    if args.mode == "interruptible":
        body["bid_per_hour"] = args.bid
    # The key is kept on disk until the server answers, so a retry after a lost reply (or a
    # crash) sends the same key and gets the same order instead of a second lease.
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    pending_path = _pending_path(args.config)
    pending = json.loads(pending_path.read_text()) if pending_path.exists() else {}
    key = args.idempotency_key or pending.get(fingerprint) or f"cli-{secrets.token_hex(12)}"
    pending[fingerprint] = key
    config_save(pending_path, pending)
    order = api.post("/orders", json=body, headers={"Idempotency-Key": key})
    pending.pop(fingerprint, None)
    config_save(pending_path, pending)
    print(
        f"order {order['id']}: {order['state']}, {order['accelerators']} "
        f"accelerator{'' if order['accelerators'] == 1 else 's'} for "
        f"{order['duration_seconds'] // 3600} h, escrow {_usd(order['escrow_amount'])}; "
        f"fund it before {order.get('hold_expires_at')} (idempotency key {key})"
    )
    return 0


# --- fund -----------------------------------------------------------------------------------


def _rpc(url: str, method: str, params: list) -> Any:
    import requests

    try:
        reply = requests.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=30
        ).json()
    except (requests.RequestException, ValueError) as exc:
        raise CliError(f"chain node {url}: {exc}") from None
    if "error" in reply:
        raise CliError(f"chain node refused {method}: {reply['error'].get('message')}")
    return reply["result"]


def _private_key(args: argparse.Namespace) -> str:
    if args.key_file:
        try:
            return Path(args.key_file).expanduser().read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read the key file: {exc}") from None
    key = os.environ.get("RENTER_PRIVATE_KEY")
    if not key:
        raise CliError("give --key-file PATH or set RENTER_PRIVATE_KEY to sign the transaction")
    return key.strip()


def _send(rpc: str, account, chain_id: int, to: str, data: str, nonce: int) -> str:
    tx = {"from": account.address, "to": to, "data": data, "chainId": hex(chain_id)}
    raw = sign_call(
        account,
        to=to,
        data=data,
        chain_id=chain_id,
        nonce=nonce,
        gas_estimate=int(_rpc(rpc, "eth_estimateGas", [tx]), 16),
        gas_price=int(_rpc(rpc, "eth_gasPrice", []), 16),
    )
    return _rpc(rpc, "eth_sendRawTransaction", [raw])


def _wait_receipt(rpc: str, tx_hash: str, timeout: float) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        receipt = _rpc(rpc, "eth_getTransactionReceipt", [tx_hash])
        if receipt and receipt.get("blockNumber"):
            if int(receipt["status"], 16) != 1:
                raise CliError(f"transaction {tx_hash} reverted")
            return receipt
        time.sleep(1)
    raise CliError(f"transaction {tx_hash} not mined within {timeout:.0f} s")


def cmd_fund(args: argparse.Namespace) -> int:
    try:
        from eth_account import Account
    except ImportError:
        raise CliError(
            "fund needs eth-account: pip install -r workers/renter/requirements.txt"
        ) from None
    api = _api(args)
    plan = api.get(f"/orders/{args.order}/funding")
    rpc = args.rpc or os.environ.get("CHAIN_RPC_URL") or "http://127.0.0.1:8545"
    account = Account.from_key(_private_key(args))
    chain_id = int(_rpc(rpc, "eth_chainId", []), 16)
    if chain_id != plan["chain_id"]:
        raise CliError(f"{rpc} is chain {chain_id}; the order is funded on {plan['chain_id']}")
    print(f"funding order {args.order}: {_usd(plan['amount'])} from {account.address}")
    nonce = int(_rpc(rpc, "eth_getTransactionCount", [account.address, "pending"]), 16)
    approve = _send(rpc, account, chain_id, plan["token_address"], plan["approve_calldata"], nonce)
    _wait_receipt(rpc, approve, args.timeout)
    print(f"  approve {approve}")
    fund = _send(rpc, account, chain_id, plan["escrow_address"], plan["fund_calldata"], nonce + 1)
    _wait_receipt(rpc, fund, args.timeout)
    print(f"  fund    {fund}")
    return _wait_active(api, args.order, args.timeout, quiet=args.quiet)


def cmd_withdraw(args: argparse.Namespace) -> int:
    try:
        from eth_account import Account
    except ImportError:
        raise CliError(
            "withdraw needs eth-account: pip install -r workers/renter/requirements.txt"
        ) from None
    api = _api(args)
    account = Account.from_key(_private_key(args))
    params = {"amount": str(args.amount) if args.amount else None, "to": args.to}
    plan = api.get(f"/credits/{account.address}", params={k: v for k, v in params.items() if v})
    if not plan["withdraw_calldata"]:
        print(f"{account.address} has no credit to withdraw")
        return 0
    rpc = args.rpc or os.environ.get("CHAIN_RPC_URL") or "http://127.0.0.1:8545"
    chain_id = int(_rpc(rpc, "eth_chainId", []), 16)
    if chain_id != plan["chain_id"]:
        raise CliError(f"{rpc} is chain {chain_id}; the escrow is on {plan['chain_id']}")
    nonce = int(_rpc(rpc, "eth_getTransactionCount", [account.address, "pending"]), 16)
    tx = _send(rpc, account, chain_id, plan["escrow_address"], plan["withdraw_calldata"], nonce)
    _wait_receipt(rpc, tx, args.timeout)
    print(
        f"withdrew {_usd(plan['withdraw_amount'])} of {_usd(plan['credit'])} credited to "
        f"{account.address}, paid to {plan['to']}"
    )
    print(f"  withdraw {tx}")
    return 0


def _wait_active(api: Api, order_id: int, timeout: float, *, quiet: bool) -> int:
    from tqdm import tqdm

    end = time.monotonic() + timeout
    with tqdm(desc="waiting for the lease to start", disable=quiet, file=sys.stderr) as bar:
        while time.monotonic() < end:
            order = api.get(f"/orders/{order_id}")
            bar.set_postfix_str(order["state"])
            bar.update(1)
            if order["state"] == "active":
                print(f"order {order_id} is active")
                return 0
            if order["state"] not in ("created", "funded", "starting"):
                raise CliError(f"order {order_id} is {order['state']}: {order['end_reason']}")
            time.sleep(2)
    raise CliError(f"order {order_id} did not become active within {timeout:.0f} s")


# --- run, logs, stop ------------------------------------------------------------------------


def _pack(directory: Path) -> Path:
    """A tar.gz of `directory`, leaving out VCS and cache folders and links that point out of
    it (the platform refuses an archive with such a link)."""
    root = directory.resolve()
    fh = tempfile.NamedTemporaryFile(suffix=".tar.gz", delete=False)  # noqa: SIM115
    fh.close()

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if any(part in SKIP_DIRS for part in parts):
            return None
        if info.issym() or info.islnk():
            target = (root / Path(info.name).parent / info.linkname).resolve()
            if info.linkname.startswith("/") or (target != root and root not in target.parents):
                print(f"skipping {info.name}: a link out of {directory}", file=sys.stderr)
                return None
        if not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fh.name, "w:gz") as tar:
        for child in sorted(root.iterdir()):
            tar.add(child, arcname=child.name, filter=keep)
    return Path(fh.name)


class _MultipartBody:
    """A multipart/form-data body read from disk with a progress bar, with a known length
    (so the server sees a Content-Length and can refuse an oversized upload up front)."""

    def __init__(self, spec: dict, archive: Path, bar) -> None:
        self.boundary = "----renter" + secrets.token_hex(12)
        head = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="spec"\r\n\r\n'
            f"{json.dumps(spec)}\r\n--{self.boundary}\r\nContent-Disposition: form-data; "
            f'name="archive"; filename="input.tar.gz"\r\nContent-Type: application/gzip\r\n\r\n'
        ).encode()
        tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.parts = [head, archive, tail]
        self.length = len(head) + archive.stat().st_size + len(tail)
        self.bar = bar
        self._file = None
        self._index = 0

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        while self._index < len(self.parts):
            part = self.parts[self._index]
            if isinstance(part, bytes):
                self._index += 1
                self.bar.update(len(part))
                return part
            if self._file is None:
                self._file = open(part, "rb")  # noqa: SIM115 - closed when exhausted
            data = self._file.read(size if size > 0 else 2**20)
            if data:
                self.bar.update(len(data))
                return data
            self._file.close()
            self._index += 1
        return b""


def cmd_run(args: argparse.Namespace) -> int:
    api = _api(args)
    if not args.command:
        raise CliError("give the command after --, e.g. run 34 -- python3 train.py")
    env = {}
    for item in args.env or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--env takes NAME=VALUE, not {item!r}")
        env[name] = value
    spec: dict[str, Any] = {"argv": args.command, "env": env, "result_paths": args.result or []}
    if args.time_limit:
        spec["time_limit_seconds"] = args.time_limit
    directory = Path(args.dir)
    if not directory.is_dir():
        raise CliError(f"{directory} is not a directory")
    archive = _pack(directory)
    try:
        with _bar(None, "uploading", args.quiet) as bar:
            body = _MultipartBody(spec, archive, bar)
            bar.total = len(body)
            workload = api.post(
                f"/orders/{args.order}/workloads",
                data=body,
                headers={"Content-Type": f"multipart/form-data; boundary={body.boundary}"},
            )
    finally:
        archive.unlink(missing_ok=True)
    print(f"workload {workload['id']} queued on order {args.order}", file=sys.stderr)
    if args.detach:
        print(workload["id"])
        return 0
    state = _follow(api, args.order, workload["id"], quiet=args.quiet)
    if state["has_results"]:
        _download(api, args.order, workload["id"], Path(args.out), quiet=args.quiet)
    print(
        f"workload {workload['id']}: {state['state']} ({state['reason']})",
        file=sys.stderr,
    )
    if state["state"] in ("succeeded", "failed") and state["exit_code"] is not None:
        return state["exit_code"]
    return 1


def _follow(api: Api, order_id: int, workload_id: int, *, quiet: bool, offset: int = 0) -> dict:
    """Prints the log as it arrives until the workload ends; returns its final detail."""
    base = f"/orders/{order_id}/workloads/{workload_id}"
    while True:
        page = api.get(f"{base}/logs", params={"offset": offset})
        data = base64.b64decode(page["data_b64"])
        if data:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        offset = page["next_offset"]
        if page["finished"]:
            if page["truncated"]:
                print("[log truncated by the platform's cap]", file=sys.stderr)
            return api.get(base)
        if not data:
            time.sleep(1)


def _download(api: Api, order_id: int, workload_id: int, out: Path, *, quiet: bool) -> None:
    response = api.get(f"/orders/{order_id}/workloads/{workload_id}/results", stream=True)
    total = int(response.headers.get("Content-Length") or 0) or None
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"workload-{workload_id}-results.tar.gz"
    with _bar(total, "downloading results", quiet) as bar, open(target, "wb") as fh:
        for piece in response.iter_content(2**16):
            fh.write(piece)
            bar.update(len(piece))
    with tarfile.open(target, "r:gz") as tar:
        tar.extractall(out, filter="data")  # never writes outside `out`
    print(f"results in {out}/ (archive {target.name})", file=sys.stderr)


def cmd_workloads(args: argparse.Namespace) -> int:
    reply = _api(args).get(f"/orders/{args.order}/workloads")
    for w in reply.get("results", reply) if isinstance(reply, dict) else reply:
        print(f"{w['id']:>6}  {w['state']:<10} exit={w['exit_code']}  {' '.join(w['argv'])[:60]}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    api = _api(args)
    if args.follow:
        _follow(api, args.order, args.workload, quiet=True, offset=args.offset)
        return 0
    offset = args.offset
    while True:
        page = api.get(
            f"/orders/{args.order}/workloads/{args.workload}/logs", params={"offset": offset}
        )
        if page["next_offset"] == offset:
            return 0
        sys.stdout.buffer.write(base64.b64decode(page["data_b64"]))
        offset = page["next_offset"]


def cmd_stop(args: argparse.Namespace) -> int:
    api = _api(args)
    if args.workload is not None:
        w = api.post(f"/orders/{args.order}/workloads/{args.workload}/cancel")
        print(f"workload {w['id']}: {w['state']}")
        return 0
    order = api.post(f"/orders/{args.order}/stop")
    print(
        f"order {order['id']}: {order['state']} ({order['end_reason']}); billed "
        f"{_usd(order['amount_owed'])} for {order['billable_seconds']} s, refund "
        f"{_usd(order['refund_amount'])} once settled"
    )
    return 0


def cmd_receipt(args: argparse.Namespace) -> int:
    api = _api(args)
    order = api.get(f"/orders/{args.order}")
    chain = api.get(f"/orders/{args.order}/chain")
    print(f"order {order['id']} ({order['state']}), lease {order['lease_id']}")
    print(f"  escrow    {_usd(order['escrow_amount'])}")
    print(f"  used      {order['used_seconds']} s of {order['duration_seconds']} s")
    billed = order["amount_owed"] if order["amount_owed"] is not None else order["amount_owed_now"]
    print(f"  billed    {_usd(billed)}")
    print(f"  refunded  {_usd(order['refund_amount'])}")
    if order["end_reason"]:
        print(f"  ended     {order['ended_at']} ({order['end_reason']})")
    for event in chain["events"]:
        print(f"  {event['name']:<16} block {event['block_number']:>8}  tx {event['tx_hash']}")
    settlement = chain.get("settlement_tx")
    if settlement:
        print(f"  settlement tx {settlement.get('tx_hash')} ({settlement.get('status')})")
    if order["state"] == "settled" and order["refund_amount"]:
        print("  the refund is credited to your wallet in the escrow: `withdraw` takes it")
    return 0


# --- the parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.renter",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", help="default $RENTER_CONFIG or ~/.config/gpu-marketplace/renter.json"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("login", help="get an API token and save it")
    p.add_argument("--url", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password-env", help="read the password from this environment variable")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("search", help="listings, with the API's filters and sorts")
    p.add_argument("--kind")
    p.add_argument("--model")
    p.add_argument("--min-count", type=int)
    p.add_argument("--min-free", type=int)
    p.add_argument("--max-price", type=int, help="token units per accelerator-hour")
    p.add_argument("--region")
    p.add_argument("--precision")
    p.add_argument("--min-tflops", type=float)
    p.add_argument("--sort", help="price, -price, tflops, -tflops, price_per_tflop_hour, …")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("order", help="order a lease (safe to retry)")
    p.add_argument("listing", type=int)
    p.add_argument("--accelerators", type=int, default=1)
    p.add_argument("--hours", type=int, default=1)
    p.add_argument(
        "--mode", choices=["on_demand", "interruptible", "reserved"], default="on_demand"
    )
    p.add_argument("--bid", type=int, help="interruptible: token units per accelerator-hour")
    p.add_argument("--term", help="reserved: the term, e.g. 1m")
    p.add_argument("--idempotency-key")
    p.set_defaults(func=cmd_order)

    p = sub.add_parser("fund", help="approve + fund the escrow, wait until the lease is active")
    p.add_argument("order", type=int)
    p.add_argument("--key-file", help="a file holding the private key (else $RENTER_PRIVATE_KEY)")
    p.add_argument("--rpc", help="chain node URL (else $CHAIN_RPC_URL)")
    p.add_argument("--timeout", type=float, default=300)
    p.set_defaults(func=cmd_fund)

    p = sub.add_parser("run", help="run a command on the lease: upload, stream logs, get results")
    p.add_argument("order", type=int)
    p.add_argument("--dir", default=".", help="the directory to upload (default: this one)")
    p.add_argument("--result", action="append", help="a path to bring back (repeatable)")
    p.add_argument("--env", action="append", help="NAME=VALUE (repeatable)")
    p.add_argument("--time-limit", type=int, help="seconds (default: the rest of the lease)")
    p.add_argument("--out", default="results", help="where results are unpacked")
    p.add_argument("--detach", action="store_true", help="print the workload id and return")
    p.set_defaults(func=cmd_run, command=[])

    p = sub.add_parser("workloads", help="the workloads of a lease")
    p.add_argument("order", type=int)
    p.set_defaults(func=cmd_workloads)

    p = sub.add_parser("logs", help="a workload's output")
    p.add_argument("order", type=int)
    p.add_argument("workload", type=int)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("stop", help="stop the lease, or cancel one workload")
    p.add_argument("order", type=int)
    p.add_argument("workload", type=int, nargs="?")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("receipt", help="what was billed and refunded, with the chain transactions")
    p.add_argument("order", type=int)
    p.set_defaults(func=cmd_receipt)

    p = sub.add_parser(
        "withdraw", help="take the refunds (or earnings) settlement credited to your wallet"
    )
    p.add_argument("--key-file", help="a file holding the private key (else $RENTER_PRIVATE_KEY)")
    p.add_argument("--amount", type=int, help="token units (default: the whole credit)")
    p.add_argument("--to", help="pay this address instead of the wallet itself")
    p.add_argument("--rpc", help="chain node URL (else $CHAIN_RPC_URL)")
    p.add_argument("--timeout", type=float, default=300)
    p.set_defaults(func=cmd_withdraw)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is the workload's command, kept verbatim (argparse would
    # mix its options, e.g. `-c`, with ours).
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    args = build_parser().parse_args(argv)
    if command:
        if args.cmd != "run":
            print("error: `-- command` is only for run", file=sys.stderr)
            return 2
        args.command = command
    try:
        return args.func(args)
    except CliError as exc:  # ApiError included: its message names the code and status
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
