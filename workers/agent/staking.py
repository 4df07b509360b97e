"""python -m workers.agent stake --provider ID [--amount UNITS --key-file PATH]

Prints what the provider's machines require as collateral (GET /providers/{id}/staking): stake,
locks, free stake, the requirement per listed machine and the shortfall. With --amount (token
units; "shortfall" for exactly what is missing) it signs token.approve then staking.stake with
the provider wallet's key, locally, as the renter CLI signs a deposit, and waits until the
stake is indexed. The staking endpoint is the owner's: it takes the owner's API token
(--api-token or PROVIDER_API_TOKEN), not the machine's agent credential. No Django."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

UNITS = 10**6  # the payment token has 6 decimals


def _usd(units: int) -> str:
    return f"{units / UNITS:,.6f} USD ({units} units)"


def _server_url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url
    from workers.agent.config import ConfigError, config_load, config_path

    try:
        return config_load(config_path(args.config))["url"]
    except ConfigError as exc:
        raise SystemExit(f"error: give --url or register first ({exc})") from None


def _print_state(state: dict) -> None:
    rows = [
        ("wallet", state["wallet_address"]),
        ("staked", _usd(state["staked"])),
        ("pending unstake", _usd(state["pending_unstake"])),
        ("locked by leases", _usd(state["locked"])),
        ("free", _usd(state["free"])),
        ("required", _usd(state["required"])),
        ("shortfall", _usd(state["shortfall"])),
    ]
    if state["multiplier"] > 1:
        rows.append(
            ("multiplier", f"x{state['multiplier']} ({state['rejected_machines']} rejected)")
        )
    for label, value in rows:
        print(f"  {label:<17} {value}")
    for machine in state["machines"]:
        print(
            f"  machine {machine['machine_id']} {machine['name']} "
            f"({machine['accelerators']} accelerators, {machine['state']}): "
            f"{_usd(machine['required'])}"
        )
    if state["pending_unstake"] and state["unlock_time"]:
        print(f"  withdrawable after unix time {state['unlock_time']}")
    print("  covered: listed machines show in search" if state["covered"] else "  NOT covered")


def _key(args: argparse.Namespace) -> str:
    if args.key_file:
        return Path(args.key_file).expanduser().read_text().strip()
    key = os.environ.get("PROVIDER_PRIVATE_KEY", "").strip()
    if not key:
        raise SystemExit("error: give --key-file PATH or set PROVIDER_PRIVATE_KEY to sign")
    return key


def cmd_stake(args: argparse.Namespace) -> int:
    from workers.renter.api import Api, CliError

    token = args.api_token or os.environ.get("PROVIDER_API_TOKEN")
    if not token:
        print("error: give --api-token or set PROVIDER_API_TOKEN (the owner's)", file=sys.stderr)
        return 2
    path = f"/providers/{args.provider}/staking"
    try:
        api = Api(_server_url(args), token)
        state = api.get(path)
        print(f"provider {args.provider}:")
        _print_state(state)
        if args.amount is None:
            return 0
        amount = state["shortfall"] if args.amount == "shortfall" else args.amount
        if not str(amount).isdigit() or int(amount) <= 0:
            print("nothing to stake" if amount == 0 else f"error: bad --amount {amount}")
            return 0 if amount == 0 else 2
        plan = api.get(path, params={"amount": str(amount)})
        staked_before = plan["staked"]
        _sign_stake(args, plan)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            state = api.get(path)
            if state["staked"] >= staked_before + int(amount):
                print("indexed:")
                _print_state(state)
                return 0
            time.sleep(2)
        print("error: the stake was sent but is not indexed yet; check again", file=sys.stderr)
        return 1
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _sign_stake(args: argparse.Namespace, plan: dict) -> None:
    """approve, then stake, from the provider's wallet: the renter CLI's local signer."""
    from workers.renter.api import CliError
    from workers.renter.cli import _rpc, _send, _wait_receipt

    try:
        from eth_account import Account
    except ImportError:
        raise CliError("stake needs eth-account: pip install eth-account") from None
    account = Account.from_key(_key(args))
    if account.address.lower() != plan["wallet_address"].lower():
        raise CliError(
            f"the key is {account.address}; the provider's wallet is {plan['wallet_address']}"
        )
    rpc = args.rpc or os.environ.get("CHAIN_RPC_URL") or "http://127.0.0.1:8545"
    chain_id = int(_rpc(rpc, "eth_chainId", []), 16)
    if chain_id != plan["chain_id"]:
        raise CliError(f"{rpc} is chain {chain_id}; the staking contract is on {plan['chain_id']}")
    print(f"staking {_usd(plan['stake_amount'])} from {account.address}")
    nonce = int(_rpc(rpc, "eth_getTransactionCount", [account.address, "pending"]), 16)
    approve = _send(rpc, account, chain_id, plan["token_address"], plan["approve_calldata"], nonce)
    _wait_receipt(rpc, approve, args.timeout)
    print(f"  approve {approve}")
    stake = _send(
        rpc, account, chain_id, plan["staking_address"], plan["stake_calldata"], nonce + 1
    )
    _wait_receipt(rpc, stake, args.timeout)
    print(f"  stake   {stake}")


def add_stake_parser(sub) -> None:
    p = sub.add_parser("stake", help="show the collateral requirement; --amount stakes")
    p.add_argument("--provider", type=int, required=True, help="provider id")
    p.add_argument("--url", help="server URL (default: the agent config's)")
    p.add_argument("--config", help="agent config file, for its server URL")
    p.add_argument("--api-token", help="the owner's API token (default $PROVIDER_API_TOKEN)")
    p.add_argument(
        "--amount",
        type=lambda v: v if v == "shortfall" else int(v),
        help="token units to stake (6 decimals), or 'shortfall'",
    )
    p.add_argument(
        "--key-file", help="the provider wallet's private key (or $PROVIDER_PRIVATE_KEY)"
    )
    p.add_argument("--rpc", help="chain node (default $CHAIN_RPC_URL or 127.0.0.1:8545)")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for each step")
    p.set_defaults(func=cmd_stake)
