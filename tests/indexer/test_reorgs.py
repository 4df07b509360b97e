"""Reorganisations scripted on a real Anvil (anvil_reorg replaces the last blocks with others):
what the replaced blocks said is dropped, what the new ones say is applied, and the money in
the database equals the chain's afterwards."""

from __future__ import annotations

import pytest

from marketplace.orders.models import Order
from marketplace.payments.indexer import DeepReorg, index
from marketplace.payments.models import ChainEvent, IndexedBlock, Stake
from marketplace.payments.reconciliation import reconcile
from marketplace.payments.selectors import order_funding_instructions
from tests.indexer.helpers import stake
from tests.payments.helpers import ALICE_KEY, BOB, BOB_KEY, USDC, fund_with_instructions, make_order

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _reorg(w3, depth: int, txs: list[tuple[dict, int]] = ()) -> None:
    """Replaces the last `depth` blocks; each (transaction, offset) goes into the new block at
    that offset from the first replaced one."""
    response = w3.provider.make_request("anvil_reorg", [depth, [[tx, at] for tx, at in txs]])
    assert "error" not in response, response


def _mine(w3, blocks: int) -> None:
    w3.provider.make_request("anvil_mine", [blocks])


def _stake_call(market, amount: int) -> dict:
    staking = market["staking"]
    return {"from": BOB, "to": staking.address, "data": staking.encode_abi("stake", [amount])}


def test_a_reorg_replacing_indexed_blocks_drops_their_events_and_applies_the_new_ones(
    live_chain, market, alice, listing, settings
):
    settings.CHAIN_CONFIRMATIONS = 3
    stake(live_chain, market, BOB_KEY, 40 * USDC)
    live_chain.eth.send_transaction(  # bob allows the stake the new chain will hold
        {
            "from": BOB,
            "to": market["token"].address,
            "data": market["token"].encode_abi("approve", [market["staking"].address, 7 * USDC]),
        }
    )
    _mine(live_chain, 3)
    index()
    assert Stake.objects.get(address=BOB).staked == 40 * USDC  # final

    # alice funds her order: approve in one block, the deposit in the next, indexed unfinal.
    order = make_order(renter=alice, listing=listing)
    fund_with_instructions(
        live_chain, ALICE_KEY, order_funding_instructions(user=alice, order_id=order.pk)
    )
    index()
    funded = ChainEvent.objects.get(name="LeaseFunded")
    assert not funded.is_final
    assert funded.block_number == live_chain.eth.block_number

    # A fork of the same height wins: its first block holds a stake of bob's instead, in a
    # block the indexer had seen empty (never stored); the deposit is gone.
    _reorg(live_chain, 2, [(_stake_call(market, 7 * USDC), 0)])
    assert not live_chain.eth.get_logs(
        {"address": market["escrow"].address, "fromBlock": funded.block_number - 1}
    )
    result = index()
    assert result.rewound_to is not None and result.rewound_to < funded.block_number - 1
    assert not ChainEvent.objects.filter(name="LeaseFunded").exists()
    new_stake = ChainEvent.objects.get(name="Staked", args__amount=str(7 * USDC))
    assert new_stake.block_number == funded.block_number - 1
    assert (
        new_stake.block_hash == live_chain.eth.get_block(new_stake.block_number)["hash"].to_0x_hex()
    )
    assert set(IndexedBlock.objects.values_list("hash", flat=True)) <= {
        live_chain.eth.get_block(n)["hash"].to_0x_hex()
        for n in IndexedBlock.objects.values_list("number", flat=True)
    }

    _mine(live_chain, 3)
    index()
    order.refresh_from_db()
    assert order.state == Order.State.CREATED  # its deposit never happened on this chain
    assert Stake.objects.get(address=BOB).staked == 47 * USDC
    assert market["staking"].functions.stakeOf(BOB).call()[0] == 47 * USDC
    assert reconcile().differences == []


def test_a_reorg_that_moves_a_deposit_to_another_block_applies_it_once(
    live_chain, market, alice, listing, settings
):
    settings.CHAIN_CONFIRMATIONS = 3
    order = make_order(renter=alice, listing=listing)
    funding = order_funding_instructions(user=alice, order_id=order.pk)
    fund_with_instructions(live_chain, ALICE_KEY, funding)
    index()
    funded = ChainEvent.objects.get(name="LeaseFunded")

    # The same deposit, re-sent into the new fork two blocks later (a new hash and position).
    _reorg(live_chain, 2, [])
    _mine(live_chain, 1)
    escrow, token = market["escrow"], market["token"]
    alice = live_chain.eth.account.from_key(ALICE_KEY).address
    live_chain.eth.send_transaction(
        {"from": alice, "to": token.address, "data": funding["approve_calldata"]}
    )
    live_chain.eth.send_transaction(
        {"from": alice, "to": escrow.address, "data": funding["fund_calldata"]}
    )
    result = index()
    assert result.rewound_to is not None
    moved = ChainEvent.objects.get(name="LeaseFunded")
    assert (moved.block_number, moved.block_hash) != (funded.block_number, funded.block_hash)

    _mine(live_chain, 3)
    index()
    order.refresh_from_db()
    assert order.state == Order.State.STARTING  # the deposit, once; active when `start` is final
    assert ChainEvent.objects.filter(name="LeaseFunded", is_final=True).count() == 1
    assert reconcile().differences == []


def test_a_reorg_below_final_blocks_is_refused_not_followed(live_chain, market, settings):
    settings.CHAIN_CONFIRMATIONS = 3
    stake(live_chain, market, BOB_KEY, 40 * USDC)
    _mine(live_chain, 3)
    index()
    staked = ChainEvent.objects.get(name="Staked")
    assert staked.is_final
    stake(live_chain, market, BOB_KEY, 5 * USDC)
    index()
    assert ChainEvent.objects.filter(name="Staked", is_final=False).count() == 1
    # The winning fork starts below the final stake: its effect cannot be taken back.
    _reorg(live_chain, live_chain.eth.block_number - staked.block_number + 1, [])
    with pytest.raises(DeepReorg):
        index()
    assert ChainEvent.objects.filter(name="Staked").count() == 2  # nothing rewound
    assert Stake.objects.get(address=BOB).staked == 40 * USDC
