"""workers/renter/wallet.py: the one local signer of the renter CLI, the agent's stake, the demo
and the tests. What it signs is decoded back here, field by field."""

from __future__ import annotations

import rlp
from eth_account import Account
from eth_account._utils.legacy_transactions import Transaction
from hexbytes import HexBytes

from workers.renter import wallet

# Anvil's public dev account 4 (alice in the tests).
ALICE_KEY = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"
ALICE = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
APPROVE = "0x095ea7b3" + "00" * 12 + "e7f1725e7734ce288f8367e1bb143e90bb3f0512" + f"{10**6:064x}"


def test_address_of_a_key():
    assert wallet.address_of(ALICE_KEY) == ALICE


def test_a_signed_call_carries_the_terms_and_20_percent_over_the_estimate():
    raw = wallet.sign_call(
        wallet.account_from_key(ALICE_KEY),
        to=TOKEN,
        data=APPROVE,
        chain_id=31337,
        nonce=7,
        gas_estimate=46_000,
        gas_price=1_000_000_000,
    )
    assert raw.startswith("0x")
    tx = rlp.decode(HexBytes(raw), Transaction)
    assert tx.nonce == 7
    assert tx.gas == 55_200
    assert tx.gasPrice == 1_000_000_000
    assert tx.to == HexBytes(TOKEN)
    assert tx.value == 0
    assert tx.data == HexBytes(APPROVE)
    # EIP-155: v = chain id * 2 + 35 or 36.
    assert tx.v in (31337 * 2 + 35, 31337 * 2 + 36)
    assert Account.recover_transaction(raw) == ALICE


def test_sign_and_send_through_web3_spends_from_the_key(chain_w3, deployed):
    from tests.payments.helpers import USDC

    token, escrow = deployed["token"], deployed["escrow"]
    before = token.functions.allowance(ALICE, escrow.address).call()
    receipt = wallet.sign_and_send(
        chain_w3, ALICE_KEY, token.address, token.encode_abi("approve", [escrow.address, 3 * USDC])
    )
    assert receipt["status"] == 1
    assert receipt["from"] == ALICE
    assert before != 3 * USDC
    assert token.functions.allowance(ALICE, escrow.address).call() == 3 * USDC
