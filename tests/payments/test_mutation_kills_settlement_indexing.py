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
from django.utils import timezone
from web3.exceptions import Web3RPCError

from marketplace.core.models import Alert
from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments import chain, indexer
from marketplace.payments.genesis import CHAIN_RESET_ALERT, ChainReset
from marketplace.payments.indexer import DeepReorg, _Decoder, _Log, _rows, _Watched, index
from marketplace.payments.models import (
    ChainEvent,
    ContractDeployment,
    Credit,
    IndexedBlock,
    IndexerCursor,
    Reward,
    Slash,
    Stake,
)
from marketplace.payments.reconciliation import (
    Difference,
    ReconcileResult,
    reconcile,
    reconcile_alert,
)
from marketplace.payments.selectors import (
    order_chain_state,
    order_failure_report_hash,
    order_funding_instructions,
    provider_chain_state,
    provider_stake_available,
)
from tests.conftest import client_for
from tests.factories import ChainEventFactory, ChainTransactionFactory
from tests.indexer.helpers import fund_lease
from tests.payments.helpers import (
    ALICE,
    ALICE_KEY,
    BOB,
    USDC,
    fund_with_instructions,
    make_order,
    record_verdict,
)

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


def _escrow_from_block_101_head_at_108(chain_w3, settings) -> int:
    """The head mined to block 108 and an escrow deployed at block 101 (its cursor starts at
    block 100), read up to 8 blocks a run: one run asks for 101..108. Returns the chain id."""
    settings.CHAIN_INDEXER_MAX_BLOCKS = 8
    assert chain_w3.eth.block_number <= 108  # a handful of blocks fund the test accounts
    chain_w3.provider.ethereum_tester.mine_blocks(108 - chain_w3.eth.block_number)
    cid = chain.chain_id(chain_w3)
    ContractDeployment.objects.create(
        chain_id=cid,
        name="escrow",
        address="0x" + "12" * 20,
        block_number=101,
        tx_hash="0x" + "34" * 32,
    )
    return cid


def test_a_refused_range_is_logged_with_the_blocks_asked_for_and_the_next_span(
    chain_w3, settings, monkeypatch, caplog
):
    """The operator reads which blocks the node refused and how many it asks for next."""
    _escrow_from_block_101_head_at_108(chain_w3, settings)
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


def test_an_orders_chain_state_shows_its_settlement_not_its_latest_transaction(alice, listing):
    order = make_order(renter=alice, listing=listing)
    settle = ChainTransactionFactory(order=order, idempotency_key=f"settle:{order.pk}")
    # sent after it, for the same order
    ChainTransactionFactory(order=order, idempotency_key=f"start:{order.pk}")

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
    # Another wallet's stake on this chain, written first: not this wallet's either.
    Stake.objects.create(chain_id=31337, address=ALICE, staked=80 * USDC, pending=0)

    assert provider_stake_available(cid=31337, address=wallet) == 0

    Stake.objects.create(chain_id=31337, address=wallet, staked=7 * USDC, pending=3 * USDC)
    # 7 USDC staked + 3 USDC pending = 10,000,000 units, this chain's row only.
    assert provider_stake_available(cid=31337, address=wallet) == 10_000_000


# --- third sample (seed 20261202) ---


@pytest.mark.parametrize(
    "path, code, message",
    [
        ("/api/v1/providers/999999/chain", "payments_provider_not_found", "No such provider."),
        ("/api/v1/orders/999999/funding", "payments_order_not_found", "No such order."),
    ],
    ids=["provider-chain-state", "order-funding"],
)
def test_an_unknown_provider_or_order_is_a_404_saying_so(alice, path, code, message):
    response = client_for(alice).get(path)

    assert response.status_code == 404
    assert response.json() == {"error": {"code": code, "message": message, "detail": {}}}


def test_a_failed_lease_cites_its_own_verdict_not_the_latest_failure(alice, listing):
    """Two leases failed by two verdicts: the first lease's settlement cites the first verdict's
    report, although a later verdict failed another lease."""
    first = make_order(renter=alice, listing=listing, key="failed-first")
    second = make_order(renter=alice, listing=listing, key="failed-second")
    Order.objects.filter(pk__in=[first.pk, second.pk]).update(state=Order.State.FAILED)
    record_verdict(
        machine_id=listing.machine_id, key="71", report_hash="0x" + "71" * 32, orders=[first]
    )
    record_verdict(
        machine_id=listing.machine_id, key="72", report_hash="0x" + "72" * 32, orders=[second]
    )

    assert order_failure_report_hash(order=first) == "0x" + "71" * 32
    assert order_failure_report_hash(order=second) == "0x" + "72" * 32


def test_a_credit_only_the_database_has_is_named_with_both_figures_and_the_balance(
    chain_w3, deployed
):
    """The database credits alice 5 units the escrow never credited: the credit and the escrow's
    token balance both disagree, each difference carrying the chain's and the database's
    figure."""
    index()
    cid = chain.chain_id(chain_w3)
    Credit.objects.create(chain_id=cid, address=ALICE, amount=5)

    diffs = reconcile().differences

    escrow = deployed["escrow"].address
    assert [d.line() for d in diffs] == [
        f"escrow_credit: account {ALICE}: credited 0 units on chain; the database has 5",
        # No lease is open; the escrow holds 0 units, the database expects its 5-unit credit.
        f"escrow_balance: escrow {escrow}: holds 0 token units on chain; the database's "
        "funded, unsettled leases (0), credits and accrued fees (5) add up to 5 (off by -5)",
    ]
    assert [d.detail for d in diffs] == [{"chain": 0, "db": 5}, {"chain": 0, "db": 5}]


def test_slashes_and_rewards_indexed_on_another_chain_are_not_compared_with_this_one(
    chain_w3, deployed
):
    index()
    cid = chain.chain_id(chain_w3)
    # A slash and a reward of another chain, indexed at block 1 (at or below this chain's final
    # block): this chain has neither, and must not report them as extra.
    for n, (name, model) in enumerate((("Slashed", Slash), ("Rewarded", Reward)), start=1):
        event = ChainEventFactory(
            chain_id=cid + 1,
            contract="staking",
            address="0x" + "5a" * 20,
            name=name,
            block_number=1,
            log_index=n,
            args={"provider": BOB, "amount": 10 * USDC, "reportHash": "0x" + "61" * 32},
        )
        model.objects.create(
            event=event,
            address=BOB,
            amount=10 * USDC,
            report_hash="0x" + "61" * 32,
            tx_hash=event.tx_hash,
        )

    assert reconcile().differences == []


def test_a_node_without_state_at_the_block_read_is_a_transient_error(
    chain_w3, deployed, monkeypatch
):
    """Anvil restarted from a state file answers a read at an older block with BlockOutOfRange:
    worth retrying once the indexer has made a block after the restart final."""
    block = chain_w3.eth.block_number
    error = {
        "code": -32000,
        "message": f"BlockOutOfRangeError: block height is 3 but requested was {block}",
    }

    def no_state(*args, **kwargs):
        raise Web3RPCError(str(error), rpc_response={"error": error})

    monkeypatch.setattr(chain_w3.eth, "call", no_state)

    with pytest.raises(chain.TransientChainError) as refused:
        reconcile(block=block)

    assert str(refused.value) == (
        f"the node has no state at block {block} (restarted from a state file?); it will once "
        "the indexer has made a block after the restart final: retry in a few seconds"
    )
    assert isinstance(refused.value.__cause__, Web3RPCError)


def test_reconciling_against_a_reset_chain_counts_no_alert_seen_and_leaves_them_open(db):
    open_alert = Alert.objects.create(
        kind="reconcile:stake",
        fingerprint=Difference("stake", f"wallet {BOB}", "").fingerprint,
        message="stake: wallet …",
        last_seen_at=timezone.now(),
    )
    reset = ChainReset(
        chain_id=31337, url="http://node", reason="another genesis", recorded_genesis="0x01"
    )

    counts = reconcile_alert(result=ReconcileResult(31337, None, [], reset=reset))

    assert counts == {"opened": 0, "seen": 0, "resolved": 0}
    open_alert.refresh_from_db()
    assert open_alert.resolved_at is None


def test_a_clean_reconciliation_resolves_its_own_alerts_and_no_others(db):
    """A run that finds no difference resolves the reconciliation alert it had opened; an open
    alert of another check (the chain-reset alert) is not reconciliation's to close."""
    now = timezone.now()
    ours = Alert.objects.create(
        kind="reconcile:stake",
        fingerprint=Difference("stake", f"wallet {BOB}", "").fingerprint,
        message="stake: wallet …",
        last_seen_at=now,
    )
    theirs = Alert.objects.create(
        kind=CHAIN_RESET_ALERT, fingerprint="f" * 64, message="chain reset", last_seen_at=now
    )

    counts = reconcile_alert(result=ReconcileResult(31337, 12, []))

    assert counts == {"opened": 0, "seen": 0, "resolved": 1}
    ours.refresh_from_db()
    theirs.refresh_from_db()
    assert ours.resolved_at is not None
    assert theirs.resolved_at is None


def test_a_difference_seen_again_updates_its_open_alert(db):
    """Reconciled twice, the same credit difference (its figure moved from 5 to 7) is one
    alert, carrying what the second run saw."""
    subject = f"account {ALICE}"
    before = Difference(
        "escrow_credit",
        subject,
        "credited 0 units on chain; the database has 5",
        {"chain": 0, "db": 5},
    )
    after = Difference(
        "escrow_credit",
        subject,
        "credited 0 units on chain; the database has 7",
        {"chain": 0, "db": 7},
    )

    first = reconcile_alert(result=ReconcileResult(31337, 10, [before]))
    opened = Alert.objects.get()
    second = reconcile_alert(result=ReconcileResult(31337, 11, [after]))

    assert (first, second) == (
        {"opened": 1, "seen": 0, "resolved": 0},
        {"opened": 0, "seen": 1, "resolved": 0},
    )
    alert = Alert.objects.get()
    assert alert.pk == opened.pk and alert.resolved_at is None
    assert alert.message == (
        f"escrow_credit: account {ALICE}: credited 0 units on chain; the database has 7"
    )
    assert alert.detail == {
        "chain": 0,
        "db": 7,
        "subject": subject,
        "chain_id": 31337,
        "block": 11,
    }
    assert alert.last_seen_at > opened.last_seen_at


# --- third sample (seed 20261202), continued ---


def test_a_reorg_on_one_chain_keeps_the_blocks_indexed_on_another(chain_w3):
    tester = chain_w3.provider.ethereum_tester
    tester.mine_blocks(3)
    cid = chain.chain_id(chain_w3)
    # This chain's block 2 no longer has the stored hash: it rewinds to block 1.
    IndexedBlock.objects.create(chain_id=cid, number=2, hash=BOGUS_HASH, is_final=False)
    # Another chain's block 5, above that fork: nothing to do with this chain's reorg.
    IndexedBlock.objects.create(chain_id=cid + 1, number=5, hash="0x" + "c5" * 32, is_final=False)

    result = index(chain_w3)

    assert result.rewound_to == 1
    assert list(IndexedBlock.objects.values_list("chain_id", "number", "hash")) == [
        (cid + 1, 5, "0x" + "c5" * 32)
    ]


_LEASE_STARTED_ABI = {
    "type": "event",
    "name": "LeaseStarted",
    "inputs": [{"name": "leaseId", "type": "bytes32", "indexed": True}],
}


def test_a_log_at_the_block_a_contract_is_indexed_up_to_is_not_taken_again():
    """The escrow's cursor stands at block 10: its log in block 10 is already stored; only the
    one in block 11 is new."""
    topic = b"\x5a" * 32  # the event's topic0, as the watcher knows it
    watched = [_Watched("escrow", "0x" + "e5" * 20, 1, 10, {topic: _LEASE_STARTED_ABI})]
    logs = [
        _Log(
            "0x" + "e5" * 20,
            (topic, bytes([n]) * 32),
            b"",
            n,
            "0x" + f"{n:02x}" * 32,
            "0x" + f"{n + 0x30:02x}" * 32,
            0,
        )
        for n in (10, 11)
    ]

    rows, blocks = _rows(_Decoder(), 31337, watched, logs)

    assert [(r.block_number, r.name, r.lease_id) for r in rows] == [
        (11, "LeaseStarted", "0x" + "0b" * 32)
    ]
    assert blocks == {11: "0x" + "0b" * 32}


def test_a_node_answering_a_log_below_the_range_asked_for_stops_the_run(
    chain_w3, settings, monkeypatch
):
    """Asked for blocks 101..108, the node also answers a log of block 100: it cannot be trusted
    with the range, and nothing of it is stored."""
    cid = _escrow_from_block_101_head_at_108(chain_w3, settings)
    real_get_logs = indexer._get_logs

    def answering_block_100(w3, watched, from_block, to_block):
        stray = _Log(
            "0x" + "12" * 20,
            (b"\x5a" * 32,),
            b"",
            100,
            "0x" + "64" * 32,
            "0x" + "65" * 32,
            0,
        )
        return [*real_get_logs(w3, watched, from_block, to_block), stray]

    monkeypatch.setattr(indexer, "_get_logs", answering_block_100)

    with pytest.raises(chain.ChainError) as refused:
        index(chain_w3)

    assert str(refused.value) == "eth_getLogs 101..108 answered other blocks"
    assert IndexerCursor.objects.get(chain_id=cid).last_block == 100
    assert IndexedBlock.objects.count() == 0


def test_an_event_with_a_bool_argument_is_decoded():
    """Every argument of one word is read: an address topic and a bool data word."""
    abi = {
        "type": "event",
        "name": "Paused",
        "inputs": [
            {"name": "account", "type": "address", "indexed": True},
            {"name": "paused", "type": "bool", "indexed": False},
        ],
    }
    account = bytes(12) + bytes.fromhex(ALICE[2:])
    log = _Log(
        "0x" + "e5" * 20,
        (b"\x5a" * 32, account),
        (1).to_bytes(32, "big"),
        12,
        "0x" + "0c" * 32,
        "0x" + "3c" * 32,
        0,
    )

    assert _Decoder().args(abi, log) == {"account": ALICE, "paused": True}


@pytest.mark.parametrize("type_", ["string", "bytes", "uint256[]", "int256"])
def test_an_event_with_an_argument_of_more_or_other_than_one_word_is_refused_by_name(type_):
    """The word-by-word decoder reads one static word per argument: a dynamic or signed type
    (none of our money events has one) is refused, naming the event, argument and type, rather
    than read wrong."""
    abi = {
        "type": "event",
        "name": "Noted",
        "inputs": [
            {"name": "account", "type": "address", "indexed": True},
            {"name": "note", "type": type_, "indexed": False},
        ],
    }
    log = _Log("0x" + "e5" * 20, (b"\x5a" * 32, bytes(32)), bytes(64), 12, "0x", "0x", 0)

    with pytest.raises(ValueError) as refused:
        _Decoder().args(abi, log)
    assert str(refused.value) == f"Noted.note: {type_} is not one word"


def test_a_cancelled_order_s_funding_is_a_409_naming_its_state(alice, listing):
    order = make_order(renter=alice, listing=listing, key="funding-cancelled")
    Order.objects.filter(pk=order.pk).update(state=Order.State.CANCELLED)

    response = client_for(alice).get(f"/api/v1/orders/{order.pk}/funding")

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "payments_order_not_fundable",
            "message": "The order is cancelled; only a created order is funded.",
            "detail": {"state": "cancelled"},
        }
    }


# --- fourth sample (seed 20261204) ---


def test_a_lease_failed_before_verdicts_cites_the_outcome_recorded_then(alice, listing):
    """Leases failed before verdicts existed have no Verdict; the payments app had recorded a
    VerificationOutcome. Such a lease cites its own outcome; without one, the machine's latest
    failure with no lease of its own since the lease started. Not another lease's failure, not
    one from before the start, not a pass, not another machine's."""
    from datetime import timedelta

    from marketplace.payments.models import VerificationOutcome
    from tests.factories import MachineFactory

    started = timezone.now() - timedelta(hours=2)
    lease = make_order(renter=alice, listing=listing, key="legacy")
    other_lease = make_order(renter=alice, listing=listing, key="legacy-other")
    Order.objects.filter(pk__in=[lease.pk, other_lease.pk]).update(
        state=Order.State.FAILED, started_at=started
    )
    lease.refresh_from_db()
    machine_id, elsewhere = listing.machine_id, MachineFactory().pk

    def outcome(job_id, *, minutes_after_start, passed=False, order=None, machine=machine_id):
        row = VerificationOutcome.objects.create(
            machine_id=machine,
            job_id=job_id,
            passed=passed,
            report_hash="0x" + job_id * 32,
            order=order,
        )
        at = started + timedelta(minutes=minutes_after_start)
        VerificationOutcome.objects.filter(pk=row.pk).update(created_at=at)

    outcome("a1", minutes_after_start=-5)  # before the start
    outcome("b2", minutes_after_start=10)  # the machine's failures during the lease:
    outcome("c9", minutes_after_start=15)  # the latest of them counts
    outcome("c3", minutes_after_start=20, passed=True)
    outcome("d4", minutes_after_start=30, order=other_lease)  # another lease's
    outcome("e5", minutes_after_start=40, machine=elsewhere)

    assert order_failure_report_hash(order=lease) == "0x" + "c9" * 32

    outcome("d1", minutes_after_start=-1)  # the latest row, but from before the start
    assert order_failure_report_hash(order=lease) == "0x" + "c9" * 32

    outcome("f6", minutes_after_start=50, order=lease)  # its own, recorded with the lease
    outcome("a7", minutes_after_start=60)  # a later failure of the machine
    assert order_failure_report_hash(order=lease) == "0x" + "f6" * 32
    outcome("b8", minutes_after_start=70, order=lease)  # of its own, the latest counts
    outcome("e9", minutes_after_start=80, order=lease, passed=True)  # ...that failed
    assert order_failure_report_hash(order=lease) == "0x" + "b8" * 32


def test_a_lease_never_started_without_a_verdict_cites_nothing(alice, listing):
    from marketplace.payments.models import VerificationOutcome

    lease = make_order(renter=alice, listing=listing, key="never-started")
    VerificationOutcome.objects.create(
        machine_id=listing.machine_id, job_id="9", passed=False, report_hash="0x" + "99" * 32
    )

    assert order_failure_report_hash(order=lease) is None


# --- selectors.py and leases.py run whole ---


def _money_row(model, address: str, block: int, amount: int):
    """A Slash or Reward row as the indexer writes it from its final event."""
    event = ChainEventFactory(
        contract="staking",
        name="Slashed" if model is Slash else "RewardPaid",
        block_number=block,
        is_final=True,
        args={"account": address, "amount": str(amount)},
    )
    return model.objects.create(
        event=event,
        address=address,
        amount=amount,
        report_hash="0x" + f"{block:064x}",
        tx_hash=event.tx_hash,
    )


def test_a_providers_chain_state_lists_its_wallets_slashes_and_rewards_newest_first(
    bob_provider,
):
    wallet = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # bob_provider's, checksummed
    first_slash = _money_row(Slash, wallet, 10, 5)
    _money_row(Slash, ALICE, 11, 7)  # another wallet's
    second_slash = _money_row(Slash, wallet, 12, 9)
    reward = _money_row(Reward, wallet, 13, 3)
    _money_row(Reward, ALICE, 14, 4)

    state = provider_chain_state(provider_id=bob_provider.pk)

    assert [(s.pk, int(s.amount)) for s in state["slashes"]] == [
        (second_slash.pk, 9),
        (first_slash.pk, 5),
    ]
    assert [(r.pk, int(r.amount)) for r in state["rewards"]] == [(reward.pk, 3)]


def test_a_providers_chain_page_reads_each_slash_with_its_event_in_one_query(bob_provider):
    """The page shows each slash's block (from its event): three slashes cost the queries of
    one, not one more each."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    wallet = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    client = client_for(bob_provider.owner)
    path = f"/api/v1/providers/{bob_provider.pk}/chain"

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path).status_code == 200
        return len(captured)

    _money_row(Slash, wallet, 20, 1)
    _money_row(Reward, wallet, 21, 1)
    queries()  # the first request of a client also reads what later ones have cached
    one = queries()
    for block in (22, 23):
        _money_row(Slash, wallet, block, 1)
        _money_row(Reward, wallet, block + 10, 1)
    assert queries() == one


def test_an_orders_chain_state_names_the_report_its_failure_cited(alice, listing):
    order = make_order(renter=alice, listing=listing, key="chain-state-failed")
    report = "0x" + "4f" * 32
    ChainEventFactory(name="LeaseFunded", lease_id=order.lease_id, block_number=30, args={})
    ChainEventFactory(
        name="LeaseFailed",
        lease_id=order.lease_id,
        block_number=31,
        args={"secondsUsed": "0", "reportHash": report},
    )

    state = order_chain_state(user=alice, order_id=order.pk)

    assert state["report_hashes"] == [report]
    assert sorted(e.name for e in state["events"]) == ["LeaseFailed", "LeaseFunded"]
