"""Reads behind GET /api/v1/credits/{address}: what the escrow owes an account (a provider's
earnings, a renter's refunds) as the indexer recorded it, and the calldata that account signs to
withdraw it. Settlement credits, it pays nobody (pull payments, see LeaseEscrow); the account
withdraws when it likes, one transaction for everything credited meanwhile."""

from __future__ import annotations

from typing import Any

from web3 import Web3

from contracts.deploy import load_artifact
from marketplace.core.errors import ApplicationError, ConflictError
from marketplace.payments import chain
from marketplace.payments.models import ContractDeployment, Credit
from marketplace.payments.staking import MAX_AMOUNT


def _address(value: Any, *, field: str) -> str:
    if not (isinstance(value, str) and Web3.is_address(value)):
        raise ApplicationError(
            f"{field} must be a 0x-prefixed 20-byte address.", code="payments_bad_address"
        )
    return Web3.to_checksum_address(value)


def _amount(value: Any) -> int | None:
    if value in (None, ""):
        return None
    if not (isinstance(value, str) and value.isascii() and value.isdigit()):
        raise ApplicationError(
            "amount must be a whole number of token units.", code="payments_bad_amount"
        )
    amount = int(value)
    if not 0 < amount <= MAX_AMOUNT:
        raise ApplicationError(
            f"amount must be between 1 and {MAX_AMOUNT} token units.", code="payments_bad_amount"
        )
    return amount


def _escrow_offline() -> tuple[int, Any]:
    """The escrow from our deployment rows, for encoding calldata only: the answer never waits
    on a chain node (the credit itself is what the indexer recorded)."""
    row = (
        ContractDeployment.objects.filter(name=ContractDeployment.Name.ESCROW)
        .order_by("-updated_at", "-pk")
        .first()
    )
    if row is None:
        raise ConflictError(
            "The payment contracts are not deployed on this chain yet.",
            code="payments_not_deployed",
        )
    escrow = Web3().eth.contract(
        address=Web3.to_checksum_address(row.address),
        abi=load_artifact(chain.CONTRACT_ARTIFACTS["escrow"])["abi"],
    )
    return row.chain_id, escrow


def account_credit(*, cid: int, address: str) -> int:
    row = Credit.objects.filter(chain_id=cid, address=Web3.to_checksum_address(address)).first()
    return int(row.amount) if row else 0


def credit_withdraw_instructions(*, address: Any, amount: Any = None, to: Any = None) -> dict:
    """`address`'s credit and the escrow.withdraw(to, amount) calldata it signs: `amount`
    defaults to all of the credit, `to` to `address` itself. Credits are public on chain, so
    this answers for any address; only the account's own key can send the withdrawal."""
    account = _address(address, field="address")
    payee = _address(to, field="to") if to not in (None, "") else account
    requested = _amount(amount)
    cid, escrow = _escrow_offline()
    credit = account_credit(cid=cid, address=account)
    withdraw = requested if requested is not None else credit
    if withdraw > credit:
        raise ApplicationError(
            f"amount {withdraw} is more than the credit of {credit} token units.",
            code="payments_amount_above_credit",
            extra={"credit": credit, "amount": withdraw},
        )
    return {
        "chain_id": cid,
        "escrow_address": escrow.address,
        "address": account,
        "credit": credit,
        "withdraw_amount": withdraw,
        "to": payee,
        "withdraw_calldata": (
            escrow.encode_abi("withdraw", [payee, withdraw]) if withdraw else None
        ),
    }
