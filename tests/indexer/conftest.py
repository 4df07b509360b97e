"""A real Anvil for the indexer tests, one per module. Every test starts from the same chain (an
Anvil snapshot, reverted afterwards) and a database rolled back after it."""

from __future__ import annotations

import os

import pytest

from marketplace.payments import chain
from marketplace.payments.services.deployment import contracts_deploy
from marketplace.payments.services.faucet import demo_renter_fund
from tests.indexer.helpers import DAVE
from tests.integration.conftest import Node, chain_point_at
from tests.payments.helpers import ALICE, BOB, USDC


@pytest.fixture(scope="module")
def anvil(tmp_path_factory):
    node = Node("anvil", tmp_path_factory.mktemp("anvil"))
    node.start()
    yield node
    node.stop()


@pytest.fixture
def live_chain(anvil, settings):
    os.environ.pop("CHAIN_OPERATOR_PRIVATE_KEY", None)
    w3 = chain_point_at(settings, anvil)
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    yield w3
    w3.provider.make_request("evm_revert", [snapshot])
    chain.set_web3(None)


@pytest.fixture
def market(live_chain, db):
    contracts_deploy(reward_pool=1_000 * USDC)
    demo_renter_fund(address=ALICE, amount=1_000 * USDC)
    demo_renter_fund(address=BOB, amount=1_000 * USDC)
    demo_renter_fund(address=DAVE, amount=1_000 * USDC)
    return {name: chain.contract(name) for name in chain.CONTRACT_ARTIFACTS}
