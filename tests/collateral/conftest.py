"""Collateral tests: the requirement on (the rest of the suite runs with it off, having no chain
to stake on), the contracts on the in-process chain, bob staking with his own key."""

from __future__ import annotations

import pytest

from marketplace.payments.indexer import index
from marketplace.payments.services.faucet import demo_renter_fund
from marketplace.providers.models import Machine
from tests.admin.conftest import operator, operator_client  # noqa: F401
from tests.factories import MachineFactory
from tests.integration.conftest import live_chain, node  # noqa: F401
from tests.payments.conftest import chain_w3, deployed, rich_alice, tester_w3  # noqa: F401
from tests.payments.helpers import BOB, BOB_KEY, USDC, sign_and_send


@pytest.fixture(autouse=True)
def _collateral_enforced(settings):
    # Pinned, so the amounts the tests compute by hand do not follow the defaults.
    settings.COLLATERAL_ENFORCED = True
    settings.COLLATERAL_BASE = 50 * USDC
    settings.COLLATERAL_PER_ACCELERATOR = 25 * USDC
    settings.COLLATERAL_DETECTION_PPM = 950_000
    settings.COLLATERAL_MARGIN_BPS = 12_000
    settings.COLLATERAL_DISPUTE_WINDOW_SECONDS = 2 * 86_400
    settings.COLLATERAL_REJECTION_WINDOW_SECONDS = 30 * 86_400
    settings.BENCHMARK_LEASE_INTERVAL_SECONDS = 3_600
    settings.REWARD_PER_ACCELERATOR_HOUR = 10_000
    settings.SLASH_AMOUNT = 50 * USDC


@pytest.fixture
def bob_machine(bob_provider):
    """A verified one-GPU machine of bob's, not listed yet: it needs 75 USDC of free stake."""
    return MachineFactory(provider=bob_provider, accelerator_count=1, state=Machine.State.VERIFIED)


def bob_signs(w3, plan: dict, *calls: str) -> None:
    """bob's wallet sends the calldata the staking endpoint handed him, in order."""
    for call in calls:
        to = plan["token_address"] if call == "approve_calldata" else plan["staking_address"]
        sign_and_send(w3, BOB_KEY, to, plan[call])
    index()


def bob_stakes(w3, plan: dict) -> None:
    demo_renter_fund(address=BOB, amount=plan["stake_amount"])
    bob_signs(w3, plan, "approve_calldata", "stake_calldata")
