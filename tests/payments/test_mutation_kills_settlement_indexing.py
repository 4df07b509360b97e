"""Tests written to kill mutation-testing survivors in the settlement scope (issue 14): the
indexer's reorg check and range splitting, reconciliation of escrow deposits, and the payments
selectors an API or a slash reads.

Most tests use plain database rows (IndexedBlock, Stake, ChainTransaction) and the in-process
chain only where the chain's answer is the point. Every expected figure is written by hand, with
its arithmetic in the comment above it.
"""

from __future__ import annotations

import logging

import pytest
from web3.exceptions import Web3RPCError

from marketplace.orders import services as order_services
from marketplace.payments import chain, indexer
from marketplace.payments.indexer import DeepReorg, index
from marketplace.payments.models import (
    ChainEvent,
    ChainTransaction,
    ContractDeployment,
    IndexedBlock,
    Stake,
)
from marketplace.payments.reconciliation import reconcile
from marketplace.payments.selectors import (
    order_chain_state,
    order_funding_instructions,
    provider_chain_state,
    provider_stake_available,
)
from tests.indexer.helpers import fund_lease
from tests.payments.helpers import ALICE_KEY, BOB, USDC, fund_with_instructions, make_order

pytestmark = pytest.mark.django_db

BOGUS_HASH = "0x" + "ee" * 32


# ------------------------------------------------------------------------------ indexer


def test_a_block_already_final_is_not_compared_with_the_node_again(chain_w3):
    """Only blocks not yet final are checked for a reorg: a final block whose stored hash the
    node no longer agrees with is left alone while the unfinal block above it agrees."""
    tester = chain_w3.provider.ethereum_tester
    tester.mine_blocks(3)
    cid = chain.chain_id(chain_w3)
    IndexedBlock.objects.create(chain_id=cid, number=1, hash=BOGUS_HASH, is_final=True)
    real_2 = chain_w3.eth.get_block(2)["hash"].to_0x_hex()
    IndexedBlock.objects.create(chain_id=cid, number=2, hash=real_2, is_final=False)

    result = index(chain_w3)

    assert result.rewound_to is None
    assert sorted(IndexedBlock.objects.values_list("number", "hash")) == [
        (1, BOGUS_HASH),
        (2, real_2),
    ]


def test_a_final_block_the_node_no_longer_has_is_a_deep_reorg(chain_w3):
    """The node's chain got shorter than a final block: no stored hash can agree with a block
    the node does not have, and effects already applied stay as they are."""
    cid = chain.chain_id(chain_w3)
    head = chain_w3.eth.block_number
    # Both blocks lie beyond the node's head: the unfinal one mismatches first (nothing below it
    # agrees), then the final one below it is looked up and is missing too.
    IndexedBlock.objects.create(chain_id=cid, number=head + 5, hash="0x" + "f1" * 32, is_final=True)
    IndexedBlock.objects.create(chain_id=cid, number=head + 6, hash=BOGUS_HASH, is_final=False)

    with pytest.raises(DeepReorg) as refused:
        index(chain_w3)

    assert str(refused.value) == f"chain {cid} reorganised below final block {head + 5}"
    assert IndexedBlock.objects.count() == 2  # nothing rewound


def test_a_refused_range_is_logged_with_the_blocks_asked_for_and_the_next_span(
    chain_w3, settings, monkeypatch, caplog
):
    """The operator reads which blocks the node refused and how many it asks for next."""
    settings.CHAIN_INDEXER_MAX_BLOCKS = 8
    tester = chain_w3.provider.ethereum_tester
    assert chain_w3.eth.block_number <= 108  # a handful of blocks fund the test accounts
    tester.mine_blocks(108 - chain_w3.eth.block_number)  # the head is block 108
    cid = chain.chain_id(chain_w3)
    # An escrow deployed at block 101: its cursor starts at block 100.
    ContractDeployment.objects.create(
        chain_id=cid,
        name="escrow",
        address="0x" + "12" * 20,
        block_number=101,
        tx_hash="0x" + "34" * 32,
    )
    real_get_logs = indexer._get_logs
    error = {"code": -32602, "message": "query exceeds max block range 4"}

    def capped(w3, watched, from_block, to_block):  # refuses more than 4 blocks, as reth does
        if to_block - from_block + 1 > 4:
            raise Web3RPCError(str(error), rpc_response={"error": error})
        return real_get_logs(w3, watched, from_block, to_block)

    monkeypatch.setattr(indexer, "_get_logs", capped)

    with caplog.at_level(logging.INFO, logger="marketplace.payments.indexer"):
        index(chain_w3)

    # First ask 101..108 (8 blocks from cursor 100), refused: next span (108 - 100) // 2 = 4.
    # 101..104 is answered; the span doubles back to 8, but the head caps it at 105..108.
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == [
        "eth_getLogs 101..108 refused "
        "({'code': -32602, 'message': 'query exceeds max block range 4'}); next 4"
    ]


# ------------------------------------------------------------------------------ reconciliation


def test_a_deposit_whose_indexed_row_was_lost_is_named_as_an_unknown_lease(
    chain_w3, deployed, rich_alice
):
    """A lease funded on chain that the database has neither an order nor an indexed deposit
    for: the operator reads the lease, the amount and what the database lacks."""
    lease = bytes.fromhex("ab" * 32)
    fund_lease(chain_w3, deployed, ALICE_KEY, lease, BOB, 36 * USDC)
    index()  # stored and final (flagged: no order has this lease id) ...
    ChainEvent.objects.filter(name="LeaseFunded").delete()  # ... and then lost

    diffs = reconcile().differences

    escrow = deployed["escrow"].address
    assert [d.line() for d in diffs] == [
        "escrow_unknown_lease: lease 0xabababab…: funded with 36000000 units on chain; "
        "no order and no indexed deposit in the database",
        # 36 USDC = 36,000,000 units in escrow; the database counts no deposit and no credit.
        f"escrow_balance: escrow {escrow}: holds 36000000 token units on chain; the database's "
        "funded, unsettled leases (0), credits and accrued fees (0) add up to 0 "
        "(off by +36000000)",
    ]
    assert diffs[0].detail == {"lease_id": "0x" + "ab" * 32, "amount": 36_000_000}


def test_a_deposit_not_final_yet_is_not_expected_in_escrow_at_the_final_block(
    chain_w3, deployed, rich_alice, alice, listing, settings, eager
):
    """A cancelled order funded late: the deposit is indexed but not final, so the database
    does not know of it yet, and at the final block (read before the deposit) the chain has
    none either: no difference."""
    settings.CHAIN_CONFIRMATIONS = 3
    order = make_order(renter=alice, listing=listing)
    funding = order_funding_instructions(user=alice, order_id=order.pk)
    order_services.order_cancel(order_id=order.pk, user=alice)
    fund_with_instructions(chain_w3, ALICE_KEY, funding)  # approve, then fund: the head block
    index()
    assert ChainEvent.objects.get(name="LeaseFunded").is_final is False

    result = reconcile()

    # The final block is the head - 3 + 1: before the approve (head - 1) and the deposit (head).
    assert result.block == chain_w3.eth.block_number - 2
    assert result.differences == []


# ------------------------------------------------------------------------------ selectors


def _tx(order, key: str, n: int) -> ChainTransaction:
    return ChainTransaction.objects.create(
        chain_id=31337,
        sender="0x" + "01" * 20,
        nonce=n,
        purpose=key.split(":")[0],
        idempotency_key=key,
        raw_tx="0x00",
        tx_hash="0x" + f"{n:02x}" * 32,
        order=order,
    )


def test_an_orders_chain_state_shows_its_settlement_not_its_latest_transaction(alice, listing):
    order = make_order(renter=alice, listing=listing)
    settle = _tx(order, f"settle:{order.pk}", 1)
    _tx(order, f"start:{order.pk}", 2)  # sent after it, for the same order

    state = order_chain_state(user=alice, order_id=order.pk)

    assert state["settlement_tx"] == settle


def test_a_providers_chain_state_shows_the_stake_of_its_wallet(bob_provider):
    wallet = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # bob_provider's, checksummed
    Stake.objects.create(
        chain_id=31337,
        address=wallet,
        staked=40 * USDC,
        pending=10 * USDC,
        unlock_time=1_700_000_000,
    )

    state = provider_chain_state(provider_id=bob_provider.pk)

    assert state["wallet_address"] == wallet
    assert (state["staked"], state["pending_unstake"], state["unlock_time"]) == (
        40_000_000,
        10_000_000,
        1_700_000_000,
    )


def test_a_stake_on_another_chain_is_not_available_on_this_one():
    wallet = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    Stake.objects.create(chain_id=1, address=wallet, staked=50 * USDC, pending=5 * USDC)

    assert provider_stake_available(cid=31337, address=wallet) == 0

    Stake.objects.create(chain_id=31337, address=wallet, staked=7 * USDC, pending=3 * USDC)
    # 7 USDC staked + 3 USDC pending = 10,000,000 units, this chain's row only.
    assert provider_stake_available(cid=31337, address=wallet) == 10_000_000
