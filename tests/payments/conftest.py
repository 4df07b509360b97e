"""An in-process chain (eth-tester on py-evm) wired into marketplace.payments.chain. One chain per
session; each test runs between a snapshot and a revert, as the database runs inside a rollback."""

from __future__ import annotations

import threading

import pytest
from web3 import EthereumTesterProvider, Web3

from marketplace.payments import chain
from marketplace.payments.services.deployment import contracts_deploy
from marketplace.payments.services.faucet import demo_renter_fund
from tests.payments.helpers import ALICE, BOB, USDC
from workers.renter.wallet import address_of


class LockedTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe; a real node serialises requests the same way."""

    _lock = threading.RLock()

    def make_request(self, method, params):
        with self._lock:
            return super().make_request(method, params)


@pytest.fixture(scope="session")
def tester_w3() -> Web3:
    w3 = Web3(LockedTesterProvider())
    rich = w3.eth.accounts[0]
    gas_money = [address_of(key) for key in chain.DEV_KEYS.values()]
    for address in (*gas_money, ALICE, BOB):
        w3.eth.send_transaction({"from": rich, "to": address, "value": 10**21})
    return w3


@pytest.fixture
def chain_w3(tester_w3):
    tester = tester_w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    chain.set_web3(tester_w3)
    yield tester_w3
    chain.set_web3(None)
    tester.revert_to_snapshot(snapshot)


@pytest.fixture
def deployed(chain_w3, db):
    contracts_deploy(reward_pool=1_000 * USDC)
    return {name: chain.contract(name) for name in chain.CONTRACT_ARTIFACTS}


@pytest.fixture
def rich_alice(deployed):
    demo_renter_fund(address=ALICE, amount=1_000 * USDC)
    return ALICE
