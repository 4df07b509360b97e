"""GET /api/v1/credits/{address}: an account's escrow credit and its withdraw calldata."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from marketplace.payments.models import ContractDeployment, Credit
from tests.conftest import client_for
from tests.payments.helpers import ALICE, BOB

pytestmark = pytest.mark.django_db

CAROL_WALLET = "0x" + "c0" * 20


@pytest.fixture
def bob_credit(deployed):
    cid = ContractDeployment.objects.get(name="escrow").chain_id
    # As the indexer would have recorded it from final LeaseSettled events.
    return Credit.objects.create(chain_id=cid, address=BOB, amount=934_848)


def test_the_whole_credit_to_the_account_itself_by_default(alice, deployed, bob_credit):
    response = client_for(alice).get(f"/api/v1/credits/{BOB}")

    assert response.status_code == 200
    body = response.json()
    escrow = deployed["escrow"]
    assert {k: v for k, v in body.items() if k != "withdraw_calldata"} == {
        "chain_id": bob_credit.chain_id,
        "escrow_address": escrow.address,
        "address": BOB,
        "credit": 934_848,
        "withdraw_amount": 934_848,
        "to": BOB,
    }
    fn, args = escrow.decode_function_input(body["withdraw_calldata"])
    assert (fn.fn_name, args) == ("withdraw", {"to": BOB, "amount": 934_848})


def test_part_of_the_credit_to_another_address(alice, deployed, bob_credit):
    response = client_for(alice).get(
        f"/api/v1/credits/{BOB.lower()}", {"amount": "300001", "to": CAROL_WALLET}
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["address"], body["credit"], body["withdraw_amount"]) == (BOB, 934_848, 300_001)
    fn, args = deployed["escrow"].decode_function_input(body["withdraw_calldata"])
    carol = deployed["escrow"].w3.to_checksum_address(CAROL_WALLET)
    assert (fn.fn_name, args) == ("withdraw", {"to": carol, "amount": 300_001})


def test_an_account_without_credit_gets_no_calldata(alice, deployed, bob_credit):
    body = client_for(alice).get(f"/api/v1/credits/{ALICE}").json()
    assert (body["credit"], body["withdraw_amount"], body["withdraw_calldata"]) == (0, 0, None)


@pytest.mark.parametrize(
    ("address", "params", "code"),
    [
        ("0x1234", {}, "payments_bad_address"),
        ("not-an-address", {}, "payments_bad_address"),
        (BOB, {"to": "0xzz"}, "payments_bad_address"),
        (BOB, {"amount": "-5"}, "payments_bad_amount"),
        (BOB, {"amount": "1.5"}, "payments_bad_amount"),
        (BOB, {"amount": "0"}, "payments_bad_amount"),
        (BOB, {"amount": str(2**300)}, "payments_bad_amount"),
        (BOB, {"amount": "934849"}, "payments_amount_above_credit"),
    ],
)
def test_bad_input_is_a_400_in_the_error_shape(alice, deployed, bob_credit, address, params, code):
    response = client_for(alice).get(f"/api/v1/credits/{address}", params)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert set(response.json()["error"]) == {"code", "message", "detail"}


def test_before_deployment_it_is_a_conflict(alice):
    response = client_for(alice).get(f"/api/v1/credits/{BOB}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "payments_not_deployed"


def test_anonymous_callers_are_refused(deployed):
    assert APIClient().get(f"/api/v1/credits/{BOB}").status_code in (401, 403)
