"""A wallet that signs locally: how a renter or a provider sends a call the server handed them
(approve + fund, approve + stake). One place builds and signs the transaction for every such
sender: the renter CLI and the agent's `stake` (over plain JSON-RPC, workers/renter/cli.py), and
the demo script, the demo_stake command and the tests (through a web3 connection).

No Django and no web3 import here: the renter CLI runs with requests and eth-account only
(workers/renter/requirements.txt); the web3 path takes the caller's connection."""

from __future__ import annotations

from typing import Any

# Over the node's estimate, as the platform's own sender (marketplace/payments/chain.py) adds.
GAS_HEADROOM_PERCENT = 20


class TransactionFailed(Exception):
    """The transaction reverted (status 0) or was not mined in time."""


def account_from_key(key: str):
    """The eth-account signer of a private key (0x-prefixed hex)."""
    from eth_account import Account

    return Account.from_key(key)


def address_of(key: str) -> str:
    return account_from_key(key).address


def sign_call(
    account, *, to: str, data: str, chain_id: int, nonce: int, gas_estimate: int, gas_price: int
) -> str:
    """The signed raw transaction (0x hex) of a call with no value, legacy gas pricing (Anvil,
    Ganache, eth-tester and public nodes all take it) and the headroom over the estimate."""
    signed = account.sign_transaction(
        {
            "to": to,
            "data": data,
            "value": 0,
            "gas": gas_estimate * (100 + GAS_HEADROOM_PERCENT) // 100,
            "gasPrice": gas_price,
            "nonce": nonce,
            "chainId": chain_id,
        }
    )
    raw = getattr(signed, "raw_transaction", None) or signed.rawTransaction  # eth-account < 0.13
    return "0x" + bytes(raw).hex()


def sign_and_send(w3: Any, key: str, to: str, data: str, *, timeout: float = 30) -> dict:
    """Through a web3 connection: estimate, sign locally, send, wait for the receipt. Returns the
    receipt; raises TransactionFailed if it reverted."""
    account = account_from_key(key)
    to = w3.to_checksum_address(to)
    estimate = w3.eth.estimate_gas({"from": account.address, "to": to, "data": data, "value": 0})
    raw = sign_call(
        account,
        to=to,
        data=data,
        chain_id=w3.eth.chain_id,
        nonce=w3.eth.get_transaction_count(account.address, "pending"),
        gas_estimate=estimate,
        gas_price=w3.eth.gas_price,
    )
    tx_hash = w3.eth.send_raw_transaction(raw)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    if receipt["status"] != 1:
        raise TransactionFailed(f"transaction {receipt['transactionHash'].to_0x_hex()} reverted")
    return receipt
