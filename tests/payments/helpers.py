"""Shared by the payments unit tests (eth-tester) and the integration tests (Anvil, Ganache):
wallets of the named actors and a renter who signs her own transactions."""

from __future__ import annotations

from web3 import Web3

from marketplace.orders.models import Order
from marketplace.orders.services import (
    order_activate,
    order_create,
    order_mark_funded,
    order_mark_starting,
)
from workers.renter.wallet import address_of, sign_and_send

__all__ = ["sign_and_send"]  # the one wallet helper (workers/renter/wallet.py), for the tests

# Anvil's public dev keys (accounts 4 and 1). bob's wallet is the one tests.conftest gives
# bob_provider; alice is a renter with her own wallet.
ALICE_KEY = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"
BOB_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ALICE = address_of(ALICE_KEY)
BOB = address_of(BOB_KEY)
USDC = 10**6


def fund_with_instructions(w3: Web3, key: str, funding: dict) -> None:
    """The renter signs the two calls the funding endpoint handed her."""
    sign_and_send(w3, key, funding["token_address"], funding["approve_calldata"])
    sign_and_send(w3, key, funding["escrow_address"], funding["fund_calldata"])


def make_order(*, renter, listing, key: str = "order-0001", hours: int = 1) -> Order:
    order, _ = order_create(
        renter=renter,
        listing_id=listing.pk,
        pricing_mode=Order.PricingMode.ON_DEMAND,
        accelerators=1,
        idempotency_key=key,
        hours=hours,
    )
    return order


def make_active_order(*, renter, listing, key: str = "order-0001", hours: int = 1) -> Order:
    """An on-demand lease whose escrow was funded and which is running."""
    order = make_order(renter=renter, listing=listing, key=key, hours=hours)
    order_mark_funded(order_id=order.pk)
    order_mark_starting(order_id=order.pk)
    return order_activate(order_id=order.pk)


def token_balance(token, address: str) -> int:
    return token.functions.balanceOf(address).call()


def credit_of(*, address: str) -> int:
    """The account's escrow credit as the database recorded it (final events only)."""
    from marketplace.payments.credits import account_credit
    from marketplace.payments.models import ContractDeployment

    cid = ContractDeployment.objects.get(name="escrow").chain_id
    return account_credit(cid=cid, address=address)


def accrued_fees() -> int:
    from marketplace.payments.models import AccruedFees

    row = AccruedFees.objects.first()
    return int(row.amount) if row else 0


def withdraw_credit(w3: Web3, key: str, **params) -> dict:
    """The account signs the withdrawal the credits endpoint hands it; returns the instructions."""
    from marketplace.payments.credits import credit_withdraw_instructions

    plan = credit_withdraw_instructions(address=address_of(key), **params)
    sign_and_send(w3, key, plan["escrow_address"], plan["withdraw_calldata"])
    return plan


def withdraw_fees(w3: Web3, key: str, escrow) -> None:
    """Anyone may pay the accrued fees to the treasury; `key` pays the gas."""
    sign_and_send(w3, key, escrow.address, escrow.encode_abi("withdrawFees", []))


def record_verdict(
    *,
    machine_id: int,
    key: str,
    report_hash: str,
    passed: bool = False,
    penalised: bool | None = None,
    orders=(),
    kind: str | None = None,
):
    """A verdict as the benchmarks app writes it with its decision (for payments tests that
    are about what follows one, not about how it was reached)."""
    from marketplace.benchmarks.models import Verdict

    verdict = Verdict.objects.create(
        key=key,
        kind=kind or (Verdict.Kind.PASS if passed else Verdict.Kind.FAIL),
        passed=passed,
        penalised=(not passed) if penalised is None else penalised,
        machine_id=machine_id,
        report_hash=report_hash,
        effects_enqueued_at=None,
    )
    verdict.orders.set([o.pk for o in orders])
    return verdict


def announce_verdict(verdict) -> None:
    """What the benchmarks app sends once the verdict's transaction commits."""
    from marketplace.benchmarks.signals import machine_verification_failed

    machine_verification_failed.send(
        sender=type(verdict),
        machine_id=verdict.machine_id,
        job_id=verdict.key,
        report_hash=verdict.report_hash,
        reason=verdict.reason,
        order_id=None,
        verdict_id=verdict.pk,
    )
