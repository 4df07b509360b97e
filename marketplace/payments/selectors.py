"""Reads of the payments app."""

from __future__ import annotations

from django.db.models import QuerySet
from hexbytes import HexBytes
from web3 import Web3

from marketplace.accounts.models import User
from marketplace.benchmarks.models import Verdict
from marketplace.core.errors import ConflictError, NotFoundError
from marketplace.orders.models import Order
from marketplace.orders.selectors import order_get_for
from marketplace.payments import chain
from marketplace.payments.models import (
    ChainEvent,
    ChainTransaction,
    Reward,
    Slash,
    Stake,
    VerificationOutcome,
)
from marketplace.providers.models import Provider


def _deployed(name: str):
    try:
        return chain.contract(name)
    except chain.NotDeployed as exc:
        raise ConflictError(
            "The payment contracts are not deployed on this chain yet.",
            code="payments_not_deployed",
        ) from exc


def order_funding_instructions(*, user: User, order_id: int) -> dict:
    """What the renter signs to fund a lease: token.approve(escrow, amount), then escrow.fund."""
    order = Order.objects.select_related("provider").filter(pk=order_id, renter=user).first()
    if order is None:
        # Not the renter's order: the same answer as a missing one, so ids do not leak.
        raise NotFoundError("No such order.", code="payments_order_not_found")
    if order.state != Order.State.CREATED:
        raise ConflictError(
            f"The order is {order.state}; only a created order is funded.",
            code="payments_order_not_fundable",
            extra={"state": order.state},
        )
    token, escrow = _deployed("token"), _deployed("escrow")
    provider_wallet = Web3.to_checksum_address(order.provider.wallet_address)
    lease = bytes(HexBytes(order.lease_id))
    return {
        "order_id": order.pk,
        "chain_id": chain.chain_id(),
        "token_address": token.address,
        "escrow_address": escrow.address,
        "amount": order.escrow_amount,
        "lease_id": order.lease_id,
        "provider_wallet": provider_wallet,
        "rate_per_second": order.rate_per_second,
        "max_duration_seconds": order.duration_seconds,
        "funding_deadline": order.hold_expires_at,
        "approve_calldata": token.encode_abi("approve", [escrow.address, order.escrow_amount]),
        "fund_calldata": escrow.encode_abi(
            "fund",
            [
                lease,
                provider_wallet,
                order.escrow_amount,
                order.rate_per_second,
                order.duration_seconds,
            ],
        ),
    }


def order_chain_state(*, user: User, order_id: int) -> dict:
    order = order_get_for(user=user, order_id=order_id)
    events = list(ChainEvent.objects.filter(lease_id=order.lease_id))
    settlement = (
        ChainTransaction.objects.filter(order=order, idempotency_key=f"settle:{order.pk}")
        .order_by("-pk")
        .first()
    )
    report_hashes = sorted({e.args["reportHash"] for e in events if e.name == "LeaseFailed"})
    return {
        "order_id": order.pk,
        "state": order.state,
        "lease_id": order.lease_id,
        "events": events,
        "settlement_tx": settlement,
        "report_hashes": report_hashes,
    }


def provider_chain_state(*, provider_id: int) -> dict:
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        raise NotFoundError("No such provider.", code="payments_provider_not_found")
    address = Web3.to_checksum_address(provider.wallet_address)
    stake = Stake.objects.filter(address=address).order_by("-updated_at").first()
    return {
        "provider_id": provider.pk,
        "wallet_address": address,
        "staked": int(stake.staked) if stake else 0,
        "pending_unstake": int(stake.pending) if stake else 0,
        "unlock_time": stake.unlock_time if stake else 0,
        "slashes": list(_by_address(Slash, address)),
        "rewards": list(_by_address(Reward, address)),
    }


def _by_address(model, address: str) -> QuerySet:
    return model.objects.filter(address=address).select_related("event").order_by("-pk")


def order_is_funded_on_chain(*, order: Order) -> bool:
    # Flagged deposits count: whatever their terms, the money is in escrow and settle(0) on a
    # cancelled order returns all of it.
    return ChainEvent.objects.filter(
        name="LeaseFunded", lease_id=order.lease_id, is_final=True
    ).exists()


def order_failure_report_hash(*, order: Order) -> str | None:
    """The report of the verdict that failed this lease: written in the same transaction as
    the failure, so it is there for any settlement that can see the failed state. A lease
    failed before verdicts existed falls back to the outcome the payments app recorded then."""
    verdict = Verdict.objects.filter(orders=order, passed=False).order_by("-pk").first()
    if verdict is not None:
        return verdict.report_hash
    legacy = VerificationOutcome.objects.filter(passed=False, order=order).order_by("-pk").first()
    if legacy is None and order.started_at is not None:
        legacy = (
            VerificationOutcome.objects.filter(
                passed=False,
                machine_id=order.machine_id,
                order__isnull=True,
                created_at__gte=order.started_at,
            )
            .order_by("-pk")
            .first()
        )
    return legacy.report_hash if legacy is not None else None


def provider_stake_available(*, cid: int, address: str) -> int:
    stake = Stake.objects.filter(chain_id=cid, address=address).first()
    return int(stake.staked + stake.pending) if stake is not None else 0


def provider_for_wallet(*, address: str) -> Provider | None:
    """The provider a wallet belongs to; the oldest one when several registered it."""
    return Provider.objects.filter(wallet_address__iexact=address).order_by("pk").first()
