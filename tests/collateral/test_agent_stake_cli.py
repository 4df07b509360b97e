"""The provider's CLI path: `python -m workers.agent stake` against a live server and Anvil prints
the requirement, then signs approve + stake with the wallet's key and waits until the stake is
indexed, after which the listed machine is covered."""

from __future__ import annotations

import threading

import pytest

from marketplace.accounts.services import api_token_create
from marketplace.payments.indexer import index
from marketplace.payments.services.deployment import contracts_deploy
from marketplace.payments.services.faucet import demo_renter_fund
from tests.factories import ListingFactory
from tests.payments.helpers import BOB, BOB_KEY, USDC
from workers.agent.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_stake_subcommand_shows_the_requirement_and_stakes_the_shortfall(
    live_chain, live_server, bob_provider, tmp_path, capsys
):
    contracts_deploy()
    listing = ListingFactory(machine__provider=bob_provider)  # 8 GPUs: 250 USDC
    demo_renter_fund(address=BOB, amount=300 * USDC)
    _, token = api_token_create(user=bob_provider.owner)
    key_file = tmp_path / "bob.key"
    key_file.write_text(BOB_KEY)
    base = ["stake", "--provider", str(bob_provider.pk), "--url", live_server.url]
    base += ["--api-token", token]

    assert main(base) == 0
    shown = capsys.readouterr().out
    assert "shortfall         250.000000 USD (250000000 units)" in shown
    assert f"machine {listing.machine_id}" in shown and "NOT covered" in shown

    outcome = {}
    stake = base + [
        "--amount",
        "shortfall",
        "--key-file",
        str(key_file),
        "--rpc",
        live_chain.provider.endpoint_uri,
    ]
    worker = threading.Thread(target=lambda: outcome.setdefault("code", main(stake)))
    worker.start()
    for _ in range(600):  # the indexer's part, until the CLI has seen its stake indexed
        worker.join(0.1)
        if not worker.is_alive():
            break
        index()
    worker.join(5)
    out = capsys.readouterr().out
    assert outcome == {"code": 0}, out
    assert "staking 250.000000 USD" in out and "  stake   0x" in out
    assert out.rstrip().endswith("covered: listed machines show in search")
    assert (
        live_chain.eth.contract(address=deployed_staking(), abi=staking_abi())
        .functions.stakeOf(BOB)
        .call()[0]
        == 250 * USDC
    )


def deployed_staking() -> str:
    from marketplace.payments import chain

    return chain.contract("staking").address


def staking_abi() -> list:
    from marketplace.payments import chain

    return chain.contract("staking").abi
