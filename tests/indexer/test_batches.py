"""Batched indexing on a real Anvil: the same rows and effects as one event at a time, nothing
twice on a re-scan, and a batch that fails applies nothing of itself."""

from __future__ import annotations

import pytest
from django.db import transaction
from eth_utils import event_abi_to_log_topic

from marketplace.orders.models import Order
from marketplace.payments import chain, indexer
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent, ContractDeployment, IndexerCursor, Reward, Stake
from marketplace.payments.services import chain_events
from tests.indexer.helpers import DAVE, outcome, workload
from tests.payments.helpers import BOB

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _stored(value):
    """An argument as web3 decodes it, in the JSON the indexer has always stored."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _indexed_with(monkeypatch, settings, *, batch: int, blocks: int) -> dict:
    """Indexes everything with these sizes and returns the outcome, leaving the database as it
    found it (a savepoint inside the test's transaction)."""
    monkeypatch.setattr(indexer, "FINALIZE_BATCH", batch)
    settings.CHAIN_INDEXER_MAX_BLOCKS = blocks
    savepoint = transaction.savepoint()
    try:
        index()
        return outcome()
    finally:
        transaction.savepoint_rollback(savepoint)


def test_batches_store_and_apply_exactly_what_one_event_at_a_time_does(
    live_chain, market, alice, listing, monkeypatch, settings
):
    workload(live_chain, market, alice, listing)
    one_by_one = _indexed_with(monkeypatch, settings, batch=1, blocks=1)
    batched = _indexed_with(monkeypatch, settings, batch=1_000, blocks=2_000)
    uneven = _indexed_with(monkeypatch, settings, batch=4, blocks=3)
    assert batched == one_by_one
    assert uneven == one_by_one

    # And what they agree on is right: every log of ours, decoded as web3 decodes it, once.
    index()
    expected = []
    for name, events in indexer.INDEXED_CONTRACTS.items():
        contract = chain.contract(name)
        by_topic = {
            event_abi_to_log_topic(item): item["name"]
            for item in contract.abi
            if item["type"] == "event" and item["name"] in events
        }
        for log in live_chain.eth.get_logs({"address": contract.address, "fromBlock": 0}):
            event = by_topic.get(bytes(log["topics"][0]))
            if event is not None:
                decoded = getattr(contract.events, event)().process_log(log)
                args = {k: _stored(v) for k, v in decoded["args"].items()}
                expected.append((log["transactionHash"].to_0x_hex(), log["logIndex"], args))
    stored = ChainEvent.objects.values_list("tx_hash", "log_index", "args")
    assert sorted(stored, key=str) == sorted(expected, key=str)
    assert not ChainEvent.objects.filter(is_final=False).exists()

    # The money: stakes as the contract holds them, orders and flags as the deposits deserve.
    staking = market["staking"]
    for wallet in (BOB, DAVE):
        staked, pending, unlock = staking.functions.stakeOf(wallet).call()
        assert Stake.objects.filter(
            address=wallet, staked=staked, pending=pending, unlock_time=unlock
        ).exists()
    assert Stake.objects.get(address=BOB).staked == (40 + 25 - 10 - 5) * 10**6
    flags = dict(ChainEvent.objects.filter(name="LeaseFunded").values_list("lease_id", "flagged"))
    assert sorted(flags.values()) == [False, True, True]
    good = Order.objects.get(idempotency_key="indexer-good")
    assert good.state == Order.State.ACTIVE and flags[good.lease_id] is False
    # Started and settled on chain before the database finished the lease: flagged, not applied.
    settled = ChainEvent.objects.get(name="LeaseSettled")
    assert settled.flagged and settled.order == good
    assert Reward.objects.get().amount == 3 * 10**6


def test_running_again_over_indexed_blocks_inserts_and_applies_nothing(
    live_chain, market, alice, listing
):
    workload(live_chain, market, alice, listing)
    first = index()
    assert first.stored == first.finalized == ChainEvent.objects.count() > 10
    before = outcome()
    touched = sorted(ChainEvent.objects.values_list("pk", "updated_at"))
    stakes = sorted(Stake.objects.values_list("pk", "updated_at"))

    assert index().stored == 0  # nothing new on chain
    # Re-read every block from the deployments on, as a rewound or overlapping run would.
    for deployment in ContractDeployment.objects.filter(name__in=indexer.INDEXED_CONTRACTS):
        IndexerCursor.objects.filter(address=deployment.address).update(
            last_block=deployment.block_number - 1
        )
    again = index()
    assert (again.stored, again.finalized) == (0, 0)
    # Finalizing the same events by hand applies nothing either.
    assert chain_events.chain_events_finalize(event_ids=[pk for pk, _ in touched]) == 0
    assert outcome() == before
    assert sorted(ChainEvent.objects.values_list("pk", "updated_at")) == touched
    assert sorted(Stake.objects.values_list("pk", "updated_at")) == stakes


class Boom(Exception):
    pass


def _explode_at(monkeypatch, name: str) -> None:
    def explode(event, batch):
        raise Boom(f"crash while applying {event}")

    monkeypatch.setitem(chain_events._HANDLERS, name, explode)


def test_a_crash_while_applying_a_batch_leaves_none_of_it_and_the_next_run_completes(
    live_chain, market, alice, listing, monkeypatch, settings
):
    workload(live_chain, market, alice, listing)
    reference = _indexed_with(monkeypatch, settings, batch=1_000, blocks=2_000)

    # One batch for everything: the reward (the last event) fails, so nothing at all applies,
    # not the order activation, the stakes or the slash that came before it in the batch.
    _explode_at(monkeypatch, "Rewarded")
    with pytest.raises(Boom):
        index()
    assert ChainEvent.objects.count() == len(reference["events"])  # stored, not final
    assert not ChainEvent.objects.filter(is_final=True).exists()
    assert not ChainEvent.objects.filter(flagged=True).exists()
    assert not Stake.objects.exists()
    assert not chain_events.Slash.objects.exists()
    assert Order.objects.get(idempotency_key="indexer-good").state == Order.State.CREATED

    monkeypatch.setitem(chain_events._HANDLERS, "Rewarded", chain_events._payout)
    index()
    assert outcome() == reference


def test_a_crash_in_a_later_batch_keeps_the_batches_before_it(
    live_chain, market, alice, listing, monkeypatch, settings
):
    workload(live_chain, market, alice, listing)
    reference = _indexed_with(monkeypatch, settings, batch=1_000, blocks=2_000)
    monkeypatch.setattr(indexer, "FINALIZE_BATCH", 3)
    _explode_at(monkeypatch, "Slashed")
    with pytest.raises(Boom):
        index()
    in_order = list(ChainEvent.objects.order_by("block_number", "log_index"))
    slash_at = next(i for i, e in enumerate(in_order) if e.name == "Slashed")
    done = slash_at - slash_at % 3  # the batches before the slash's batch
    assert [e.is_final for e in in_order] == [True] * done + [False] * (len(in_order) - done)
    assert not any(e.flagged for e in in_order[done:])

    monkeypatch.setitem(chain_events._HANDLERS, "Slashed", chain_events._payout)
    index()
    assert outcome() == reference


def test_a_run_out_of_time_stops_before_its_next_range_or_batch_and_the_next_run_goes_on(
    live_chain, market, alice, listing, monkeypatch, settings
):
    workload(live_chain, market, alice, listing)
    reference = _indexed_with(monkeypatch, settings, batch=1_000, blocks=2_000)
    assert index(seconds=0) == indexer.IndexResult(stored=0, finalized=0)
    assert not ChainEvent.objects.exists()
    # A budget that lasts for the scan but not for the first batch of effects.
    now = {"seconds": 0.0}
    monkeypatch.setattr(indexer, "_clock", lambda: now["seconds"])
    scan = indexer._scan

    def scan_then_run_out(*args):
        stored = scan(*args)
        now["seconds"] = 100.0
        return stored

    monkeypatch.setattr(indexer, "_scan", scan_then_run_out)
    partial = index(seconds=10)
    assert partial.stored == len(reference["events"]) and partial.finalized == 0
    assert not ChainEvent.objects.filter(is_final=True).exists()
    monkeypatch.undo()
    index()
    assert outcome() == reference
