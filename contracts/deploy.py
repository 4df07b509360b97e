"""Django-free helpers to load the committed build and deploy the marketplace contracts.

Deployment here sends from an unlocked node account (eth-tester, Anvil, Ganache). The Django
chain client (marketplace/payments/chain.py) signs and nonce-manages its own transactions and only
needs `CONTRACT_ARTIFACTS` and `load_artifact` from this module.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

BUILD_DIR = Path(__file__).resolve().parent / "build"

# The platform's contracts by role, each with the build artifact it is deployed from.
CONTRACT_ARTIFACTS = {
    "token": "TestStablecoin",
    "escrow": "LeaseEscrow",
    "staking": "ProviderStaking",
}

TOKEN_NAME = "Test USD"
TOKEN_SYMBOL = "tUSD"


class DeploymentError(RuntimeError):
    pass


# Role bits of contracts/src/Governed.sol.
ADMIN, SETTLER, SLASHER, REWARDER = 1, 2, 4, 8


class StakingLimits(NamedTuple):
    """ProviderStaking's caps on its hot keys (contracts/src/ProviderStaking.sol, Limits)."""

    period_seconds: int
    max_lock_seconds: int
    slash_cap: int  # token units slashed per period, in total
    reward_cap: int  # token units rewarded per period, in total


# Defaults for a 6-decimal token (/work/helpers/contracts-design.md says why these numbers).
DEFAULT_TIMELOCK_DELAY = 2 * 86_400
DEFAULT_STAKING_LIMITS = StakingLimits(
    period_seconds=86_400,
    max_lock_seconds=365 * 86_400,
    slash_cap=50_000 * 10**6,
    reward_cap=5_000 * 10**6,
)


class Marketplace(TypedDict):
    token: Contract
    escrow: Contract
    staking: Contract


@cache
def _read_artifact(name: str) -> str:
    path = BUILD_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no artifact {path}; run `python contracts/compile.py`")
    return path.read_text()


def load_artifact(name: str) -> dict[str, Any]:
    """The build/<name>.json artifact (abi, bytecode, ...); a fresh dict on every call."""
    return json.loads(_read_artifact(name))


def contract_at(w3: Web3, name: str, address: str) -> Contract:
    return w3.eth.contract(
        address=Web3.to_checksum_address(address), abi=load_artifact(name)["abi"]
    )


def deploy(w3: Web3, name: str, *args: Any, sender: ChecksumAddress | str) -> Contract:
    """Deploy `name` with constructor `args` from the unlocked account `sender`."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx_hash = factory.constructor(*args).transact({"from": Web3.to_checksum_address(sender)})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise DeploymentError(f"deploying {name} failed in transaction {tx_hash.hex()}")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def deploy_marketplace(
    w3: Web3,
    *,
    owner: ChecksumAddress | str,
    operator: ChecksumAddress | str,
    treasury: ChecksumAddress | str,
    fee_bps: int,
    reclaim_delay: int,
    unstake_delay: int,
    timelock_delay: int = DEFAULT_TIMELOCK_DELAY,
    staking_limits: StakingLimits = DEFAULT_STAKING_LIMITS,
) -> Marketplace:
    """Deploy token, escrow and staking. `owner` deploys and holds ADMIN of both contracts;
    `operator` holds SETTLER on the escrow and SETTLER, SLASHER and REWARDER on staking."""
    token = deploy(w3, "TestStablecoin", TOKEN_NAME, TOKEN_SYMBOL, sender=owner)
    escrow = deploy(
        w3,
        "LeaseEscrow",
        token.address,
        operator,
        treasury,
        fee_bps,
        reclaim_delay,
        timelock_delay,
        sender=owner,
    )
    staking = deploy(
        w3,
        "ProviderStaking",
        token.address,
        operator,
        treasury,
        unstake_delay,
        timelock_delay,
        tuple(staking_limits),  # the Solidity struct Limits, in field order
        sender=owner,
    )
    return Marketplace(token=token, escrow=escrow, staking=staking)
