"""GET /orders/{id}/funding, /orders/{id}/chain, /providers/{id}/chain."""

from __future__ import annotations

import pytest
from hexbytes import HexBytes

from marketplace.payments.indexer import index
from tests.conftest import client_for
from tests.payments.helpers import ALICE_KEY, fund_with_instructions, make_order

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(alice, listing, rich_alice):
    return make_order(renter=alice, listing=listing)


def test_funding_instructions_are_what_the_escrow_expects(alice, order, deployed, chain_w3):
    response = client_for(alice).get(f"/api/v1/orders/{order.pk}/funding")
    assert response.status_code == 200
    body = response.json()
    escrow, token = deployed["escrow"], deployed["token"]
    assert body["chain_id"] == chain_w3.eth.chain_id
    assert (body["token_address"], body["escrow_address"]) == (token.address, escrow.address)
    assert body["amount"] == order.escrow_amount and body["lease_id"] == order.lease_id
    assert body["provider_wallet"] == order.provider.wallet_address
    assert body["rate_per_second"] == order.rate_per_second
    assert body["max_duration_seconds"] == order.duration_seconds
    fn, args = escrow.decode_function_input(body["fund_calldata"])
    assert fn.fn_name == "fund"
    assert args == {
        "leaseId": HexBytes(order.lease_id),
        "provider": order.provider.wallet_address,
        "amount": order.escrow_amount,
        "ratePerSecond": order.rate_per_second,
        "maxDuration": order.duration_seconds,
    }
    fn, args = token.decode_function_input(body["approve_calldata"])
    assert (fn.fn_name, args["spender"], args["amount"]) == (
        "approve",
        escrow.address,
        order.escrow_amount,
    )


@pytest.mark.parametrize("who", ["carol", "bob"])
def test_only_the_renter_gets_funding_instructions(request, who, order, deployed):
    response = client_for(request.getfixturevalue(who)).get(f"/api/v1/orders/{order.pk}/funding")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "payments_order_not_found"


def test_a_funded_order_gets_no_funding_instructions(alice, order, deployed, chain_w3):
    client = client_for(alice)
    fund_with_instructions(
        chain_w3, ALICE_KEY, client.get(f"/api/v1/orders/{order.pk}/funding").json()
    )
    index()
    response = client.get(f"/api/v1/orders/{order.pk}/funding")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "payments_order_not_fundable"

    chain_state = client.get(f"/api/v1/orders/{order.pk}/chain").json()
    assert chain_state["state"] == "starting"  # active once the escrow's `start` is final
    [funded] = [e for e in chain_state["events"] if e["name"] == "LeaseFunded"]
    assert funded["args"]["amount"] == str(order.escrow_amount) and funded["tx_hash"]


def test_funding_without_deployed_contracts_is_a_conflict(alice, listing, chain_w3):
    order = make_order(renter=alice, listing=listing)
    response = client_for(alice).get(f"/api/v1/orders/{order.pk}/funding")
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "payments_not_deployed",
            "message": "The payment contracts are not deployed on this chain yet.",
            "detail": {},
        }
    }


def test_order_chain_state_is_hidden_from_other_renters(carol, order, deployed):
    response = client_for(carol).get(f"/api/v1/orders/{order.pk}/chain")
    assert response.status_code == 404
    assert "error" in response.json()


def test_provider_chain_state_lists_stake_slashes_and_rewards(alice, bob_provider, deployed):
    response = client_for(alice).get(f"/api/v1/providers/{bob_provider.pk}/chain")
    assert response.status_code == 200
    assert response.json() == {
        "provider_id": bob_provider.pk,
        "wallet_address": bob_provider.wallet_address,
        "staked": "0",
        "pending_unstake": "0",
        "unlock_time": 0,
        "slashes": [],
        "rewards": [],
    }
    missing = client_for(alice).get("/api/v1/providers/999999/chain")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "payments_provider_not_found"
