"""Money events on a real node, and everything the indexer wrote, as one comparable value."""

from __future__ import annotations

from eth_utils import keccak

from marketplace.orders.models import Order
from marketplace.payments import chain
from marketplace.payments.models import (
    ChainEvent,
    ChainTransaction,
    IndexerCursor,
    Reward,
    Slash,
    Stake,
)
from marketplace.payments.selectors import order_funding_instructions
from tests.payments.helpers import (
    ALICE_KEY,
    BOB,
    BOB_KEY,
    USDC,
    fund_with_instructions,
    make_order,
    sign_and_send,
)
from workers.renter.wallet import address_of

OPERATOR_KEY = chain.DEV_KEYS["operator"]
# Anvil's dev account 5: a second staker nobody registered as a provider.
DAVE_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"
DAVE = address_of(DAVE_KEY)


def call(w3, key: str, contract, fn: str, *args) -> dict:
    return sign_and_send(w3, key, contract.address, contract.encode_abi(fn, list(args)))


def stake(w3, market, key: str, amount: int) -> None:
    call(w3, key, market["token"], "approve", market["staking"].address, amount)
    call(w3, key, market["staking"], "stake", amount)


def fund_lease(w3, market, key: str, lease_id: bytes, provider: str, amount: int) -> None:
    """A deposit on terms of the depositor's choosing (no order needs to exist)."""
    call(w3, key, market["token"], "approve", market["escrow"].address, amount)
    call(w3, key, market["escrow"], "fund", lease_id, provider, amount, amount // 3_600, 3_600)


def workload(w3, market, alice, listing) -> dict:
    """Every kind of money event the indexer applies, with the awkward cases: a deposit that
    activates its order, one on the wrong terms, one nobody ordered, the same lease started and
    settled on chain before the database could have asked for it, stakes, an unstake request,
    a slash, a reward, and a second staker."""
    good = make_order(renter=alice, listing=listing, key="indexer-good")
    fund_with_instructions(w3, ALICE_KEY, order_funding_instructions(user=alice, order_id=good.pk))
    wrong = make_order(renter=alice, listing=listing, key="indexer-wrong")
    funding = order_funding_instructions(user=alice, order_id=wrong.pk)
    fund_lease(
        w3,
        market,
        ALICE_KEY,
        bytes.fromhex(wrong.lease_id[2:]),
        funding["provider_wallet"],
        wrong.escrow_amount + 3_600,
    )
    fund_lease(w3, market, ALICE_KEY, keccak(b"nobody ordered"), BOB, 36 * USDC)
    escrow = market["escrow"]
    call(w3, OPERATOR_KEY, escrow, "start", bytes.fromhex(good.lease_id[2:]))
    call(w3, OPERATOR_KEY, escrow, "settle", bytes.fromhex(good.lease_id[2:]), 60)
    stake(w3, market, BOB_KEY, 40 * USDC)
    stake(w3, market, DAVE_KEY, 7 * USDC)
    stake(w3, market, BOB_KEY, 25 * USDC)
    call(w3, BOB_KEY, market["staking"], "requestUnstake", 10 * USDC)
    report = keccak(b"failed matmul")
    call(w3, OPERATOR_KEY, market["staking"], "slash", BOB, 5 * USDC, report)
    call(w3, OPERATOR_KEY, market["staking"], "reward", BOB, 3 * USDC, report)
    return {"good": good, "wrong": wrong}


def outcome() -> dict:
    """Everything the indexer decides, in a form two runs can be compared by."""
    return {
        "events": list(
            ChainEvent.objects.order_by("block_number", "log_index").values_list(
                "contract",
                "address",
                "name",
                "tx_hash",
                "log_index",
                "block_number",
                "block_hash",
                "args",
                "lease_id",
                "account",
                "is_final",
                "flagged",
                "flag_reason",
                "order_id",
            )
        ),
        "stakes": sorted(
            Stake.objects.values_list(
                "chain_id", "address", "staked", "pending", "unlock_time", "provider_id"
            )
        ),
        "slashes": sorted(
            Slash.objects.values_list(
                "event__tx_hash", "address", "provider_id", "amount", "report_hash", "tx_hash"
            )
        ),
        "rewards": sorted(
            Reward.objects.values_list(
                "event__tx_hash", "address", "provider_id", "amount", "report_hash", "tx_hash"
            )
        ),
        "orders": sorted(Order.objects.values_list("pk", "state")),
        "transactions": sorted(
            ChainTransaction.objects.values_list("tx_hash", "status", "block_number")
        ),
        "cursors": sorted(IndexerCursor.objects.values_list("address", "last_block")),
    }
