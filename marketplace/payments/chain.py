"""The one chain client: connection, accounts, nonces, recorded sends, receipts, typed errors.

Every transaction goes through `send`:
  1. an existing transaction with the same idempotency key is reused (rebroadcast, same hash);
  2. otherwise the sender's nonce row is locked (select_for_update), the transaction signed and
     recorded as a ChainTransaction, and the row committed — all BEFORE anything is broadcast;
  3. the recorded raw bytes are broadcast; node errors become typed exceptions.
A worker that dies anywhere in this sequence and runs again finds its transaction by key and
never signs a second one. `confirm` accepts a receipt only with a block number, status 1 and
settings.CHAIN_CONFIRMATIONS confirmations.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TransactionNotFound

from contracts.deploy import CONTRACT_ARTIFACTS, load_artifact
from marketplace.payments.models import ChainTransaction, ContractDeployment, NonceCursor

logger = logging.getLogger(__name__)

ANVIL_CHAIN_ID = 31337
GANACHE_CHAIN_ID = 1337
ETH_TESTER_CHAIN_ID = 131277322940537
LOCAL_CHAIN_IDS = frozenset({ANVIL_CHAIN_ID, GANACHE_CHAIN_ID, ETH_TESTER_CHAIN_ID})

# Anvil's (and Hardhat's) well-known dev keys from the public "test test ... junk" mnemonic.
# Anyone can sign with them, so they are used only on a local chain id.
DEV_KEYS = {
    "deployer": "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",  # acct 0
    "operator": "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",  # acct 7
}
DEV_TREASURY = "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f"  # account 8

GAS_HEADROOM_PERCENT = 20
# How long confirm() waits for the receipt of a transaction the node already holds.
RECEIPT_GRACE_SECONDS = 2.0


# ------------------------------------------------------------------------------ errors


class ChainError(Exception):
    """A permanent chain failure: retrying the same call will not help."""


class TransientChainError(ChainError):
    """Worth retrying later: the node is unreachable, a receipt is not confirmed yet, ..."""


class NonceTooLow(TransientChainError):
    pass


class ReplacementUnderpriced(TransientChainError):
    pass


class InsufficientFunds(TransientChainError):
    """The sender cannot pay for gas (or value). Transient: an operator tops the account up."""


class NotConfirmed(TransientChainError):
    pass


class TransactionReverted(ChainError):
    pass


class NotDeployed(ChainError):
    pass


# Substrings of node error messages, lower-cased: geth/Anvil, Ganache 7, eth-tester (py-evm).
_ERROR_PATTERNS: list[tuple[type[ChainError], tuple[str, ...]]] = [
    (
        NonceTooLow,
        (
            "nonce too low",
            "doesn't have the correct nonce",  # Ganache: "the tx doesn't have the correct nonce"
            "invalid transaction nonce",  # py-evm: "Invalid transaction nonce: Expected 3, ..."
            "nonce has already been used",
        ),
    ),
    (ReplacementUnderpriced, ("replacement transaction underpriced", "transaction underpriced")),
    (
        InsufficientFunds,
        (
            "insufficient funds",  # geth/Anvil: "insufficient funds for gas * price + value"
            "doesn't have enough funds",  # Ganache: "sender doesn't have enough funds to send tx"
            "cannot afford txn gas",  # py-evm: "Sender ... cannot afford txn gas ..."
        ),
    ),
]
_ALREADY_KNOWN = ("already known", "already imported", "known transaction")


def error_message(exc: BaseException) -> str:
    for arg in exc.args:
        if isinstance(arg, dict) and "message" in arg:
            return str(arg["message"])
    message = getattr(exc, "message", None)
    return str(message if message is not None else exc)


def map_node_error(exc: BaseException) -> ChainError | None:
    """The typed exception for a node's error, or None when it is not one we recognise."""
    text = error_message(exc).lower()
    gap = re.search(r"expected (\d+), but got (\d+)", text)
    if gap and int(gap.group(2)) > int(gap.group(1)):
        # py-evm has no pool for future nonces: an earlier nonce is still on its way.
        return TransientChainError(f"nonce gap: {error_message(exc)}")
    for error_type, patterns in _ERROR_PATTERNS:
        if any(p in text for p in patterns):
            return error_type(error_message(exc))
    return None


def _is_already_known(exc: BaseException) -> bool:
    text = error_message(exc).lower()
    return any(p in text for p in _ALREADY_KNOWN)


# ------------------------------------------------------------------------------ connection

_local = threading.local()
_override: Web3 | None = None


def set_web3(w3: Web3 | None) -> None:
    """Use this connection (e.g. an in-process eth-tester chain) instead of CHAIN_RPC_URL."""
    global _override
    _override = w3


def get_web3() -> Web3:
    if _override is not None:
        return _override
    # One HTTP session per thread: web3's HTTPProvider shares a requests session otherwise.
    cached = getattr(_local, "w3", None)
    if cached is None or cached[0] != settings.CHAIN_RPC_URL:
        w3 = Web3(HTTPProvider(settings.CHAIN_RPC_URL, request_kwargs={"timeout": 10}))
        _local.w3 = cached = (settings.CHAIN_RPC_URL, w3)
    return cached[1]


def chain_id(w3: Web3 | None = None) -> int:
    return (w3 or get_web3()).eth.chain_id


def is_local_chain(cid: int) -> bool:
    return cid in LOCAL_CHAIN_IDS


def _key_for(role: str, cid: int) -> str:
    configured = getattr(settings, f"CHAIN_{role.upper()}_PRIVATE_KEY", "")
    if configured:
        return configured
    if not is_local_chain(cid):
        raise ImproperlyConfigured(
            f"CHAIN_{role.upper()}_PRIVATE_KEY is required on chain {cid}; the public dev keys "
            "are only used on local chains"
        )
    return DEV_KEYS[role]


def account(role: str, w3: Web3 | None = None) -> LocalAccount:
    """The signing account for `role` ("operator" or "deployer")."""
    try:
        return Account.from_key(_key_for(role, chain_id(w3)))
    except ValueError as exc:
        raise ImproperlyConfigured(f"CHAIN_{role.upper()}_PRIVATE_KEY is not a valid key") from exc


def treasury_address(w3: Web3 | None = None) -> str:
    if settings.CHAIN_TREASURY_ADDRESS:
        return Web3.to_checksum_address(settings.CHAIN_TREASURY_ADDRESS)
    cid = chain_id(w3)
    if not is_local_chain(cid):
        raise ImproperlyConfigured(f"CHAIN_TREASURY_ADDRESS is required on chain {cid}")
    return DEV_TREASURY


def contract(name: str, w3: Web3 | None = None) -> Contract:
    """Our deployed contract `name` (token, escrow, staking) on the connected chain."""
    w3 = w3 or get_web3()
    cid = chain_id(w3)
    row = ContractDeployment.objects.filter(chain_id=cid, name=name).first()
    if row is None:
        raise NotDeployed(f"no {name} contract recorded for chain {cid}; run deploy_contracts")
    return w3.eth.contract(address=row.address, abi=load_artifact(CONTRACT_ARTIFACTS[name])["abi"])


# ------------------------------------------------------------------------------ nonces


def _reserve_nonce(cid: int, address: str, node_pending: int) -> int:
    """Call inside transaction.atomic(): locks the sender's row until the caller commits."""
    cursor = NonceCursor.objects.select_for_update().get(chain_id=cid, address=address)
    # The node's pending count is ahead when something else sent from this key (or our
    # row was lost); ours is ahead when our own transactions are not in its pool yet.
    nonce = max(cursor.next_nonce, node_pending)
    cursor.next_nonce = nonce + 1
    cursor.save(update_fields=["next_nonce"])
    return nonce


def _ensure_cursor(cid: int, address: str) -> None:
    # IntegrityError: created concurrently; the row is there either way.
    with contextlib.suppress(IntegrityError):
        NonceCursor.objects.get_or_create(chain_id=cid, address=address)


def nonce_cursor_reset(*, w3: Web3, address: str) -> None:
    """Forget our nonce for `address` after the chain itself was reset (local chains)."""
    NonceCursor.objects.filter(chain_id=chain_id(w3), address=address).update(
        next_nonce=w3.eth.get_transaction_count(address, "pending")
    )


# ------------------------------------------------------------------------------ sending


def _call_data(fn: ContractFunction) -> tuple[str, str]:
    return fn.address, fn._encode_transaction_data()


def send_call(fn: ContractFunction, **kwargs: Any):
    to, data = _call_data(fn)
    return send(to=to, data=data, **kwargs)


def send(
    *,
    idempotency_key: str,
    purpose: str,
    to: str | None,
    data: str | bytes,
    role: str = "operator",
    value: int = 0,
    order_id: int | None = None,
    provider_id: int | None = None,
    w3: Web3 | None = None,
):
    """Sends (at most once per idempotency key) and returns the recorded ChainTransaction."""
    w3 = w3 or get_web3()
    existing = _live_tx(idempotency_key)
    if existing is not None:
        return broadcast(existing, w3=w3)

    signer = account(role, w3)
    cid = chain_id(w3)
    tx: dict[str, Any] = {
        "from": signer.address,
        "data": HexBytes(data).to_0x_hex(),
        "value": value,
        "chainId": cid,
    }
    if to is not None:
        tx["to"] = Web3.to_checksum_address(to)
    try:
        gas = w3.eth.estimate_gas(tx)
    except Exception as exc:
        if isinstance(exc, ContractLogicError) or "revert" in error_message(exc).lower():
            # Another worker may have recorded and sent this very call since we looked (its
            # effect, e.g. a lease already settled, is what makes ours revert): then its
            # transaction is ours too.
            existing = _live_tx(idempotency_key)
            if existing is not None:
                return broadcast(existing, w3=w3)
            # It would revert now (Anvil: "execution reverted", Ganache: "VM Exception ...
            # revert"): sending would only burn gas. Permanent for this call.
            raise TransactionReverted(f"{purpose}: {error_message(exc)[:500]}") from exc
        typed = map_node_error(exc)
        if typed is not None:
            raise typed from exc
        raise
    tx["gas"] = gas * (100 + GAS_HEADROOM_PERCENT) // 100
    # Legacy gas pricing works on Anvil, Ganache and eth-tester alike.
    tx["gasPrice"] = w3.eth.gas_price
    del tx["from"]
    node_pending = w3.eth.get_transaction_count(signer.address, "pending")
    _ensure_cursor(cid, signer.address)

    try:
        with transaction.atomic():
            nonce = _reserve_nonce(cid, signer.address, node_pending)
            signed = signer.sign_transaction({**tx, "nonce": nonce})
            row = ChainTransaction.objects.create(
                chain_id=cid,
                sender=signer.address,
                nonce=nonce,
                to_address=tx.get("to", ""),
                purpose=purpose,
                idempotency_key=idempotency_key,
                raw_tx=signed.raw_transaction.to_0x_hex(),
                tx_hash=signed.hash.to_0x_hex(),
                order_id=order_id,
                provider_id=provider_id,
            )
    except IntegrityError:
        # Another worker recorded this purpose first; the rollback also released our nonce.
        existing = _live_tx(idempotency_key)
        if existing is None:
            raise
        return broadcast(existing, w3=w3)
    return broadcast(row, w3=w3)


def _live_tx(idempotency_key: str):
    return (
        ChainTransaction.objects.filter(idempotency_key=idempotency_key)
        .exclude(status=ChainTransaction.Status.FAILED)
        .first()
    )


def _node_has(w3: Web3, tx_hash: str) -> bool:
    try:
        w3.eth.get_transaction(tx_hash)
    except TransactionNotFound:
        return False
    return True


def broadcast(row, *, w3: Web3 | None = None):
    """(Re)broadcasts the recorded bytes of a pending transaction; the hash never changes."""
    w3 = w3 or get_web3()
    if row.status != ChainTransaction.Status.PENDING:
        return row
    try:
        w3.eth.send_raw_transaction(row.raw_tx)
    except Exception as exc:
        if _is_already_known(exc) or _node_has(w3, row.tx_hash):
            return row
        typed = map_node_error(exc)
        if isinstance(typed, NonceTooLow):
            # Our nonce went to another transaction (the key was used elsewhere): this one can
            # never be mined. Retire it so that a retry signs a replacement with a fresh nonce.
            _retire(row, f"nonce {row.nonce} already used: {typed}")
            _resync_cursor(w3, row)
            raise typed from exc
        if typed is not None:
            raise typed from exc
        raise TransientChainError(f"broadcast of {row.tx_hash} failed: {exc}") from exc
    return row


def _retire(row, error: str) -> None:
    ChainTransaction.objects.filter(pk=row.pk, status=ChainTransaction.Status.PENDING).update(
        status=ChainTransaction.Status.FAILED, error=error[:2000]
    )
    row.refresh_from_db()


def _resync_cursor(w3: Web3, row) -> None:
    node_pending = w3.eth.get_transaction_count(row.sender, "pending")
    with transaction.atomic():
        cursor = NonceCursor.objects.select_for_update().get(
            chain_id=row.chain_id, address=row.sender
        )
        if cursor.next_nonce < node_pending:
            cursor.next_nonce = node_pending
            cursor.save(update_fields=["next_nonce"])


# ------------------------------------------------------------------------------ receipts


def _receipt(w3: Web3, tx_hash: str):
    try:
        return w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        return None


def confirm(row, *, w3: Web3 | None = None):
    """Moves a transaction to confirmed, or raises: NotConfirmed (retry later),
    TransactionReverted (status 0: permanent). Rebroadcasts one the node has lost."""
    w3 = w3 or get_web3()
    if row.status in (ChainTransaction.Status.CONFIRMED, ChainTransaction.Status.FAILED):
        if row.status == ChainTransaction.Status.FAILED:
            raise TransactionReverted(f"{row.tx_hash}: {row.error}")
        return row
    receipt = _receipt(w3, row.tx_hash)
    if receipt is None and _node_has(w3, row.tx_hash):
        # The node holds it but has not mined it yet. A node that mines on arrival (Anvil's and
        # Ganache's automine) answers the send before the block is sealed, and on a loaded
        # machine that gap is tens of milliseconds: wait that long rather than a task retry.
        deadline = time.monotonic() + RECEIPT_GRACE_SECONDS
        while receipt is None and time.monotonic() < deadline:
            time.sleep(0.05)
            receipt = _receipt(w3, row.tx_hash)
    if receipt is None or receipt.get("blockNumber") is None:
        if receipt is None and not _node_has(w3, row.tx_hash):
            broadcast(row, w3=w3)  # the node lost it (restart, pool eviction): same bytes again
        raise NotConfirmed(f"{row.tx_hash} is not in a block yet")
    fields = {
        "block_number": receipt["blockNumber"],
        "block_hash": HexBytes(receipt["blockHash"]).to_0x_hex(),
        "gas_used": receipt["gasUsed"],
    }
    if receipt["status"] != 1:
        ChainTransaction.objects.filter(pk=row.pk).update(
            status=ChainTransaction.Status.FAILED, error="reverted", **fields
        )
        row.refresh_from_db()
        raise TransactionReverted(f"{row.purpose} {row.tx_hash} reverted")
    confirmations = w3.eth.block_number - receipt["blockNumber"] + 1
    done = confirmations >= settings.CHAIN_CONFIRMATIONS
    status = ChainTransaction.Status.CONFIRMED if done else ChainTransaction.Status.MINED
    ChainTransaction.objects.filter(pk=row.pk).exclude(
        status=ChainTransaction.Status.CONFIRMED
    ).update(status=status, **fields)
    row.refresh_from_db()
    if not done:
        raise NotConfirmed(
            f"{row.tx_hash} has {confirmations} of {settings.CHAIN_CONFIRMATIONS} confirmations"
        )
    return row
