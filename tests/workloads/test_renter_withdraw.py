"""`withdraw` on a real node (Anvil): settlement credited bob's share and alice's refund in the
escrow; each signs its own withdrawal from the calldata the API hands out (bob with a provider's
wallet key, part of his credit, to another address). No chain mocks."""

import os
import subprocess
import sys

import pytest

from marketplace.payments import chain
from marketplace.payments.indexer import index
from marketplace.payments.services.deployment import contracts_deploy
from marketplace.payments.services.faucet import demo_renter_fund
from tests.integration.conftest import live_chain, node  # noqa: F401 - fixtures
from tests.payments.helpers import ALICE, ALICE_KEY, BOB, BOB_KEY, USDC, credit_of, sign_and_send
from tests.workloads.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DAVE = "0x" + "da" * 20  # where bob has part of his earnings paid


def _withdraw(live_server, node, tmp_path, user, key: str, *args: str):  # noqa: F811
    from marketplace.accounts.services import api_token_create

    _, token = api_token_create(user=user)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "RENTER"))}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "RENTER_CONFIG": str(tmp_path / f"{user.username}.json"),
        "RENTER_URL": live_server.url,
        "RENTER_TOKEN": token,
        "RENTER_PRIVATE_KEY": key,
    }
    command = [sys.executable, "-m", "workers.renter", "--quiet", "withdraw", "--rpc", node.url]
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_payees_withdraw_their_credits_with_the_cli(
    live_server,
    live_chain,  # noqa: F811 - the fixture imported above
    node,  # noqa: F811
    alice,
    bob,
    tmp_path,
):
    contracts_deploy(reward_pool=0)
    demo_renter_fund(address=ALICE, amount=100 * USDC)
    token, escrow = chain.contract("token"), chain.contract("escrow")
    # A lease of 7 units/s for at most 1,000 s, funded with 9,000: settled at 777 s it bills
    # 5,439, fee floor(5,439 * 1,000 / 10,000) = 543 (PLATFORM_FEE_BPS 10 %), bob 4,896,
    # alice's refund 3,561.
    lease = b"\x01" * 32
    sign_and_send(
        live_chain, ALICE_KEY, token.address, token.encode_abi("approve", [escrow.address, 9_000])
    )
    sign_and_send(
        live_chain,
        ALICE_KEY,
        escrow.address,
        escrow.encode_abi("fund", [lease, BOB, 9_000, 7, 1_000]),
    )
    chain.confirm(
        chain.send_call(escrow.functions.settle(lease, 777), purpose="test", idempotency_key="s")
    )
    index()
    assert (credit_of(address=BOB), credit_of(address=ALICE)) == (4_896, 3_561)
    alice_before, bob_before = (token.functions.balanceOf(a).call() for a in (ALICE, BOB))

    done = _withdraw(live_server, node, tmp_path, bob, BOB_KEY, "--amount", "4000", "--to", DAVE)
    assert done.returncode == 0, done.stderr
    dave = live_chain.to_checksum_address(DAVE)
    assert f"withdrew $0.0040 of $0.0049 credited to {BOB}, paid to {dave}" in done.stdout
    assert token.functions.balanceOf(dave).call() == 4_000
    assert token.functions.balanceOf(BOB).call() == bob_before
    assert escrow.functions.credits(BOB).call() == 896

    done = _withdraw(live_server, node, tmp_path, alice, ALICE_KEY)
    assert done.returncode == 0, done.stderr
    assert token.functions.balanceOf(ALICE).call() == alice_before + 3_561
    index()
    assert (credit_of(address=BOB), credit_of(address=ALICE)) == (896, 0)

    # Nothing left to take: a plain answer, no transaction; more than the credit: the API's 400.
    done = _withdraw(live_server, node, tmp_path, alice, ALICE_KEY)
    assert done.returncode == 0 and f"{ALICE} has no credit to withdraw" in done.stdout
    done = _withdraw(live_server, node, tmp_path, bob, BOB_KEY, "--amount", "897")
    assert done.returncode == 2
    assert "payments_amount_above_credit" in done.stderr
