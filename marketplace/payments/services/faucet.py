"""The demo faucet: test stablecoin and gas money for a wallet, on local chains only."""

from __future__ import annotations

from django.utils import timezone
from web3 import Web3

from marketplace.core.errors import ApplicationError
from marketplace.payments import chain
from marketplace.payments.services.transactions import transaction_confirm_blocking


def demo_renter_fund(*, address: str, amount: int, eth_wei: int = 10**19) -> dict:
    """Mints test stablecoin to `address` and gives it gas money; local chains only."""
    w3 = chain.get_web3()
    cid = chain.chain_id(w3)
    if not chain.is_local_chain(cid):
        raise ApplicationError(
            f"Chain {cid} is not a local chain; test tokens are minted only locally.",
            code="payments_not_local_chain",
        )
    if not Web3.is_address(address):
        raise ApplicationError("Not an address.", code="payments_bad_address")
    address = Web3.to_checksum_address(address)
    token = chain.contract("token", w3)
    # A fresh key each call: minting twice is what the caller asked for.
    tx = chain.send_call(
        token.functions.mint(address, amount),
        idempotency_key=f"demo_mint:{cid}:{address}:{timezone.now().isoformat()}",
        purpose="demo_mint",
        role="deployer",
        w3=w3,
    )
    transaction_confirm_blocking(tx=tx, w3=w3)
    gave_eth = False
    if w3.eth.get_balance(address) < eth_wei // 10:
        if cid == chain.ETH_TESTER_CHAIN_ID:
            raw = w3.eth.account.sign_transaction(
                {
                    "to": address,
                    "value": eth_wei,
                    "gas": 21_000,
                    "gasPrice": w3.eth.gas_price,
                    "nonce": w3.eth.get_transaction_count(w3.eth.accounts[0]),
                    "chainId": cid,
                },
                "0x" + "00" * 31 + "01",  # eth-tester's first funded account
            )
            w3.eth.send_raw_transaction(raw.raw_transaction)
        else:
            # Anvil names it anvil_setBalance; Ganache evm_setAccountBalance.
            method = (
                "evm_setAccountBalance" if cid == chain.GANACHE_CHAIN_ID else "anvil_setBalance"
            )
            w3.provider.make_request(method, [address, hex(eth_wei)])
        gave_eth = True
    return {"address": address, "minted": amount, "tx_hash": tx.tx_hash, "gave_eth": gave_eth}
