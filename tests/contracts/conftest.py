"""In-process chain (web3 EthereumTesterProvider on py-evm) for the contract tests.

One deployment per session; every test runs between a snapshot and a revert, so tests are
isolated without paying for redeployment. No database is involved.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_signature_to_4byte_selector, keccak
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from contracts.deploy import Marketplace, StakingLimits, deploy, deploy_marketplace

USDC = 10**6
MAX_UINT = 2**256 - 1
FEE_BPS = 250
RECLAIM_DELAY = 3_600
UNSTAKE_DELAY = 7 * 86_400
STARTING_BALANCE = 1_000_000 * USDC
TEST_GAS_LIMIT = 5_000_000
TIMELOCK_DELAY = 2 * 86_400
# Small enough that the tests (and the property tests' random walks) reach them.
LIMITS = StakingLimits(
    period_seconds=86_400,
    max_lock_seconds=30 * 86_400,
    slash_cap=3_000 * USDC,
    reward_cap=800 * USDC,
)
ADMIN, SETTLER, SLASHER, REWARDER = 1, 2, 4, 8


@dataclass(frozen=True)
class Actors:
    owner: str
    operator: str
    treasury: str
    alice: str  # renter
    bob: str  # honest provider
    mallory: str  # cheating provider
    carol: str  # second renter / bystander


class Chain:
    """A web3 connection plus the eth-tester controls the tests need."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.tester = w3.provider.ethereum_tester

    def transact(self, fn: ContractFunction, sender: str) -> TxReceipt:
        """Send a call expected to succeed; a revert is mined with status 0 and fails here.

        A fixed gas limit skips eth-tester's gas estimation, which would execute every call
        twice and dominates the run time of the property tests.
        """
        tx_hash = fn.transact({"from": sender, "gas": TEST_GAS_LIMIT})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1, f"{fn.fn_name} reverted"
        return receipt

    def expect_revert(
        self, fn: ContractFunction, sender: str, error: str, contract: Contract
    ) -> tuple[Any, ...]:
        """Send `fn` and require it to revert with custom `error` of `contract`; return its args."""
        # Without a gas limit the node simulates the call first and raises with the revert data.
        with pytest.raises((TransactionFailed, ContractLogicError)) as excinfo:
            fn.transact({"from": sender})
        data = revert_data(excinfo.value)
        abi = next(
            item for item in contract.abi if item["type"] == "error" and item["name"] == error
        )
        types = [arg["type"] for arg in abi["inputs"]]
        selector = function_signature_to_4byte_selector(f"{error}({','.join(types)})")
        assert data[:4] == selector, f"expected {error}, got revert data 0x{data.hex()}"
        values = self.w3.codec.decode(types, data[4:])
        return tuple(
            Web3.to_checksum_address(v) if t == "address" else v
            for t, v in zip(types, values, strict=True)
        )

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def pending_timestamp(self) -> int:
        """The timestamp the next transaction will run at."""
        return self.w3.eth.get_block("pending")["timestamp"]

    def next_block_at(self, timestamp: int) -> None:
        """Make the next transaction run at exactly `timestamp`.

        eth-tester mines an empty block at timestamp - 1 to get there, so chained calls
        should each name an absolute time rather than add offsets to `now()`.
        """
        self.tester.time_travel(timestamp)

    def propose(self, contract: Contract, fn_name: str, args: list[Any], admin: str) -> bytes:
        """Propose the timelocked call `fn_name(*args)` on `contract`; return its call data."""
        data = bytes.fromhex(contract.encode_abi(fn_name, args).removeprefix("0x"))
        self.transact(contract.functions.propose(data), admin)
        return data

    def timelocked(
        self, contract: Contract, fn_name: str, args: list[Any], admin: str
    ) -> TxReceipt:
        """Propose `fn_name(*args)`, wait out the delay and execute it; return the receipt."""
        data = self.propose(contract, fn_name, args, admin)
        ready = contract.functions.readyAt(keccak(data)).call()
        if self.pending_timestamp() < ready:
            self.next_block_at(ready)
        return self.transact(contract.functions.execute(data), admin)


def revert_data(exc: BaseException) -> bytes:
    """Raw revert data from eth-tester's TransactionFailed chain or web3's ContractLogicError."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ContractLogicError) and isinstance(seen.data, str):
            return bytes.fromhex(seen.data.removeprefix("0x"))
        if seen.args and isinstance(seen.args[0], bytes):
            return seen.args[0]
        seen = seen.__context__
    raise AssertionError(f"no revert data in {exc!r}")


def events(contract: Contract, name: str, receipt: TxReceipt) -> list[dict[str, Any]]:
    logs = getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)
    return [dict(log["args"]) for log in logs if log["address"] == contract.address]


def lease_id(n: int) -> bytes:
    return n.to_bytes(32, "big")


@pytest.fixture(scope="session")
def _session_chain() -> Chain:
    return Chain(Web3(EthereumTesterProvider()))


@pytest.fixture(scope="session")
def actors(_session_chain: Chain) -> Actors:
    a = _session_chain.w3.eth.accounts
    return Actors(
        owner=a[0], operator=a[1], treasury=a[2], alice=a[3], bob=a[4], mallory=a[5], carol=a[6]
    )


@pytest.fixture(scope="session")
def _session_market(_session_chain: Chain, actors: Actors) -> Marketplace:
    chain = _session_chain
    market = deploy_marketplace(
        chain.w3,
        owner=actors.owner,
        operator=actors.operator,
        treasury=actors.treasury,
        fee_bps=FEE_BPS,
        reclaim_delay=RECLAIM_DELAY,
        unstake_delay=UNSTAKE_DELAY,
        timelock_delay=TIMELOCK_DELAY,
        staking_limits=LIMITS,
    )
    token = market["token"].functions
    for holder in (actors.alice, actors.bob, actors.mallory, actors.carol):
        chain.transact(token.mint(holder, STARTING_BALANCE), actors.owner)
        for spender in (market["escrow"], market["staking"]):
            chain.transact(token.approve(spender.address, MAX_UINT), holder)
    return market


@pytest.fixture
def chain(_session_chain: Chain, _session_market: Marketplace) -> Iterator[Chain]:
    snapshot = _session_chain.tester.take_snapshot()
    yield _session_chain
    _session_chain.tester.revert_to_snapshot(snapshot)


@pytest.fixture
def market(chain: Chain, _session_market: Marketplace) -> Marketplace:
    return _session_market


@pytest.fixture
def token(market: Marketplace) -> Contract:
    return market["token"]


@pytest.fixture
def escrow(market: Marketplace) -> Contract:
    return market["escrow"]


@pytest.fixture
def staking(market: Marketplace) -> Contract:
    return market["staking"]


@pytest.fixture
def deploy_contract(chain: Chain, actors: Actors):
    def _deploy(name: str, *args: Any) -> Contract:
        return deploy(chain.w3, name, *args, sender=actors.owner)

    return _deploy
