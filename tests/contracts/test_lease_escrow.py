import pytest
from eth_tester.exceptions import TransactionFailed

from .conftest import (
    FEE_BPS,
    RECLAIM_DELAY,
    SETTLER,
    STARTING_BALANCE,
    TIMELOCK_DELAY,
    USDC,
    events,
    lease_id,
)

RATE = 1_234  # token units per second, deliberately not round
MAX_DURATION = 3_600
AMOUNT = RATE * MAX_DURATION
REPORT = bytes.fromhex("ab" * 32)

FUNDED, STARTED, SETTLED, FAILED, RECLAIMED = 1, 2, 3, 4, 5


def fund(chain, escrow, renter, provider, n=1, amount=AMOUNT, rate=RATE, duration=MAX_DURATION):
    return chain.transact(
        escrow.functions.fund(lease_id(n), provider, amount, rate, duration), renter
    )


def balances(token, *accounts):
    return [token.functions.balanceOf(a).call() for a in accounts]


def credits(escrow, *accounts):
    return [escrow.functions.credits(a).call() for a in accounts]


def fees(escrow):
    return escrow.functions.accruedFees().call()


def funded_at(escrow, n):
    return escrow.functions.getLease(lease_id(n)).call()[5]


def status(escrow, n):
    return escrow.functions.getLease(lease_id(n)).call()[-1]


def test_fund_pulls_the_prepayment_and_records_the_lease(chain, token, escrow, actors):
    receipt = fund(chain, escrow, actors.alice, actors.bob)

    assert token.functions.balanceOf(actors.alice).call() == STARTING_BALANCE - AMOUNT
    assert token.functions.balanceOf(escrow.address).call() == AMOUNT
    assert events(escrow, "LeaseFunded", receipt) == [
        {
            "leaseId": lease_id(1),
            "renter": actors.alice,
            "provider": actors.bob,
            "amount": AMOUNT,
            "ratePerSecond": RATE,
            "maxDuration": MAX_DURATION,
        }
    ]
    renter, provider, amount, rate, duration, _, fee_bps, state = escrow.functions.getLease(
        lease_id(1)
    ).call()
    assert (renter, provider, amount, rate, duration, fee_bps, state) == (
        actors.alice,
        actors.bob,
        AMOUNT,
        RATE,
        MAX_DURATION,
        FEE_BPS,
        FUNDED,
    )


def test_fund_refuses_an_amount_below_rate_times_max_duration(chain, escrow, actors):
    args = chain.expect_revert(
        escrow.functions.fund(lease_id(1), actors.bob, AMOUNT - 1, RATE, MAX_DURATION),
        actors.alice,
        "AmountBelowMaxCost",
        escrow,
    )
    assert args == (AMOUNT - 1, AMOUNT)


@pytest.mark.parametrize(
    "amount, rate, duration",
    [
        (2**64, 1, 1),  # amount beyond the stored 64 bits
        (2**64 - 1, 2**40, 1),  # rate beyond 40 bits
        (2**64 - 1, 1, 2**32),  # max duration beyond 32 bits
    ],
)
def test_fund_refuses_terms_beyond_the_packed_fields(chain, escrow, actors, amount, rate, duration):
    chain.expect_revert(
        escrow.functions.fund(lease_id(1), actors.bob, amount, rate, duration),
        actors.alice,
        "ValueTooLarge",
        escrow,
    )


def test_fund_at_the_field_limits_round_trips(chain, token, escrow, actors):
    rate, duration = 2**40 - 1, 2**23  # rate * duration just below 2**64
    amount = rate * duration
    chain.transact(token.functions.mint(actors.carol, amount), actors.owner)
    fund(chain, escrow, actors.carol, actors.bob, amount=amount, rate=rate, duration=duration)
    lease = escrow.functions.getLease(lease_id(1)).call()
    assert (lease[2], lease[3], lease[4]) == (amount, rate, duration)
    receipt = chain.transact(escrow.functions.settle(lease_id(1), duration), actors.operator)
    (settled,) = events(escrow, "LeaseSettled", receipt)
    assert settled["providerAmount"] + settled["feeAmount"] == amount


def test_fund_refuses_a_used_lease_id(chain, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob)
    chain.expect_revert(
        escrow.functions.fund(lease_id(1), actors.bob, AMOUNT, RATE, MAX_DURATION),
        actors.carol,
        "LeaseAlreadyExists",
        escrow,
    )


def test_settle_credits_the_split_to_the_unit_and_moves_no_token(chain, token, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob)
    chain.transact(escrow.functions.start(lease_id(1)), actors.operator)
    before = balances(token, actors.alice, actors.bob, actors.treasury, escrow.address)

    receipt = chain.transact(escrow.functions.settle(lease_id(1), 777), actors.operator)

    # 777 s * 1_234 = 958_818 billed; fee floor(958_818 * 250 / 10_000) = 23_970 (23_970.45);
    # provider 958_818 - 23_970 = 934_848; refund 4_442_400 - 958_818 = 3_483_582.
    assert credits(escrow, actors.alice, actors.bob, actors.treasury) == [3_483_582, 934_848, 0]
    assert fees(escrow) == 23_970
    # Pull payments: the tokens stay in the escrow until each payee withdraws.
    assert balances(token, actors.alice, actors.bob, actors.treasury, escrow.address) == before
    assert events(token, "Transfer", receipt) == []
    assert events(escrow, "LeaseSettled", receipt) == [
        {
            "leaseId": lease_id(1),
            "secondsUsed": 777,
            "providerAmount": 934_848,
            "feeAmount": 23_970,
            "refundAmount": 3_483_582,
        }
    ]
    assert status(escrow, 1) == SETTLED


def test_credits_add_up_over_leases(chain, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob, n=1)
    fund(chain, escrow, actors.carol, actors.bob, n=2, rate=7, duration=13, amount=100)
    chain.transact(escrow.functions.settle(lease_id(1), 777), actors.operator)
    chain.transact(escrow.functions.settle(lease_id(2), 11), actors.operator)

    # Lease 2: 11 s * 7 = 77 billed; fee floor(77 * 250 / 10_000) = 1 (1.925); provider 76;
    # refund 100 - 77 = 23. Lease 1 as in the test above.
    assert credits(escrow, actors.alice, actors.bob, actors.carol) == [
        3_483_582,
        934_848 + 76,
        23,
    ]
    assert fees(escrow) == 23_970 + 1


def test_settle_bills_at_most_max_duration(chain, token, escrow, actors):
    # Funded above the cap: the surplus must come back even if the operator over-reports.
    fund(chain, escrow, actors.alice, actors.bob, amount=AMOUNT + 5 * USDC)

    receipt = chain.transact(
        escrow.functions.settle(lease_id(1), MAX_DURATION * 10), actors.operator
    )

    (event,) = events(escrow, "LeaseSettled", receipt)
    assert event["secondsUsed"] == MAX_DURATION
    assert event["providerAmount"] + event["feeAmount"] == AMOUNT
    assert event["refundAmount"] == 5 * USDC


def test_fail_credits_the_unused_part_and_carries_the_report_hash(chain, token, escrow, actors):
    fund(chain, escrow, actors.alice, actors.mallory)
    chain.transact(escrow.functions.start(lease_id(1)), actors.operator)
    alice_before = token.functions.balanceOf(actors.alice).call()

    receipt = chain.transact(escrow.functions.fail(lease_id(1), 100, REPORT), actors.operator)

    # 100 s * 1_234 = 123_400 billed; fee floor(123_400 * 0.025) = 3_085; provider 120_315;
    # refund 4_442_400 - 123_400 = 4_319_000.
    assert events(escrow, "LeaseFailed", receipt) == [
        {
            "leaseId": lease_id(1),
            "secondsUsed": 100,
            "providerAmount": 120_315,
            "feeAmount": 3_085,
            "refundAmount": 4_319_000,
            "reportHash": REPORT,
        }
    ]
    assert events(escrow, "LeaseSettled", receipt) == []
    assert credits(escrow, actors.alice, actors.mallory) == [4_319_000, 120_315]
    assert fees(escrow) == 3_085
    assert token.functions.balanceOf(actors.alice).call() == alice_before
    assert token.functions.balanceOf(escrow.address).call() == AMOUNT
    assert status(escrow, 1) == FAILED


def test_double_settlement_is_refused(chain, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob)
    chain.transact(escrow.functions.settle(lease_id(1), 10), actors.operator)
    after_first = credits(escrow, actors.alice, actors.bob) + [fees(escrow)]

    args = chain.expect_revert(
        escrow.functions.settle(lease_id(1), 10), actors.operator, "LeaseNotOpen", escrow
    )
    assert args == (lease_id(1), SETTLED)
    chain.expect_revert(
        escrow.functions.fail(lease_id(1), 10, REPORT), actors.operator, "LeaseNotOpen", escrow
    )
    assert credits(escrow, actors.alice, actors.bob) + [fees(escrow)] == after_first


def test_settle_of_an_unknown_lease_is_refused(chain, escrow, actors):
    args = chain.expect_revert(
        escrow.functions.settle(lease_id(99), 10), actors.operator, "LeaseNotOpen", escrow
    )
    assert args == (lease_id(99), 0)


@pytest.mark.parametrize("caller", ["alice", "bob", "owner"])
def test_settle_without_the_settler_role_is_refused(chain, escrow, actors, caller):
    # "owner" holds ADMIN: administration does not include settling.
    fund(chain, escrow, actors.alice, actors.bob)
    sender = getattr(actors, caller)
    args = chain.expect_revert(
        escrow.functions.settle(lease_id(1), 10), sender, "MissingRole", escrow
    )
    assert args == (sender, SETTLER)
    chain.expect_revert(
        escrow.functions.fail(lease_id(1), 0, REPORT), sender, "MissingRole", escrow
    )
    chain.expect_revert(escrow.functions.start(lease_id(1)), sender, "MissingRole", escrow)
    assert status(escrow, 1) == FUNDED


def test_reclaim_before_the_delay_is_refused(chain, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob)
    chain.next_block_at(funded_at(escrow, 1) + RECLAIM_DELAY - 1)

    args = chain.expect_revert(
        escrow.functions.reclaim(lease_id(1)), actors.alice, "ReclaimTooEarly", escrow
    )
    assert args == (lease_id(1), funded_at(escrow, 1) + RECLAIM_DELAY)


def test_reclaim_after_the_delay_refunds_everything(chain, token, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob)
    chain.next_block_at(funded_at(escrow, 1) + RECLAIM_DELAY)

    receipt = chain.transact(escrow.functions.reclaim(lease_id(1)), actors.alice)

    assert token.functions.balanceOf(actors.alice).call() == STARTING_BALANCE
    assert events(escrow, "LeaseReclaimed", receipt) == [
        {"leaseId": lease_id(1), "renter": actors.alice, "amount": AMOUNT}
    ]
    assert status(escrow, 1) == RECLAIMED
    chain.expect_revert(
        escrow.functions.settle(lease_id(1), 1), actors.operator, "LeaseNotOpen", escrow
    )


def test_reclaim_by_someone_else_is_refused(chain, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob)
    chain.next_block_at(funded_at(escrow, 1) + RECLAIM_DELAY)
    chain.expect_revert(escrow.functions.reclaim(lease_id(1)), actors.mallory, "NotRenter", escrow)


def test_reclaim_of_a_started_lease_is_refused(chain, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob)
    chain.transact(escrow.functions.start(lease_id(1)), actors.operator)
    chain.next_block_at(funded_at(escrow, 1) + RECLAIM_DELAY * 2)

    args = chain.expect_revert(
        escrow.functions.reclaim(lease_id(1)), actors.alice, "LeaseNotFunded", escrow
    )
    assert args == (lease_id(1), STARTED)


def test_batch_settle_matches_single_settles(chain, token, escrow, actors):
    plan = [  # (renter, provider, secondsUsed), sorted by provider as the backend would send them
        (actors.alice, actors.bob, 0),
        (actors.carol, actors.bob, 1_001),
        (actors.alice, actors.bob, MAX_DURATION),
        (actors.alice, actors.mallory, 59),
        (actors.carol, actors.mallory, 10 * MAX_DURATION),
        (actors.carol, actors.bob, 3),
    ]
    watched = (actors.alice, actors.carol, actors.bob, actors.mallory, actors.treasury)
    ids = [lease_id(n) for n in range(1, len(plan) + 1)]
    for n, (renter, provider, _) in enumerate(plan, start=1):
        fund(chain, escrow, renter, provider, n=n)
    snapshot = chain.tester.take_snapshot()

    single_events = []
    for lid, (_, _, seconds) in zip(ids, plan, strict=True):
        receipt = chain.transact(escrow.functions.settle(lid, seconds), actors.operator)
        single_events += events(escrow, "LeaseSettled", receipt)
    single = (credits(escrow, *watched), fees(escrow), balances(token, *watched, escrow.address))

    chain.tester.revert_to_snapshot(snapshot)
    receipt = chain.transact(
        escrow.functions.settleBatch(ids, [seconds for _, _, seconds in plan]), actors.operator
    )

    assert events(escrow, "LeaseSettled", receipt) == single_events
    assert (credits(escrow, *watched), fees(escrow), balances(token, *watched, escrow.address)) == (
        single
    )
    assert all(status(escrow, n) == SETTLED for n in range(1, len(plan) + 1))
    assert events(token, "Transfer", receipt) == []
    # By hand, rate 1_234, fee 2.5 %: billed seconds 0, 1_001, 3_600, 59, 3_600 (capped), 3;
    # costs 0, 1_235_234, 4_442_400, 72_806, 4_442_400, 3_702;
    # fees 0, 30_880, 111_060, 1_820, 111_060, 92 (each floored);
    # bob gets (1_235_234 - 30_880) + (4_442_400 - 111_060) + (3_702 - 92) = 5_539_304;
    # mallory (72_806 - 1_820) + (4_442_400 - 111_060) = 4_402_326;
    # alice refunds 4_442_400 + 0 + 4_369_594 = 8_811_994; carol 3_207_166 + 0 + 4_438_698.
    assert single[0] == [8_811_994, 7_645_864, 5_539_304, 4_402_326, 0]
    assert single[1] == 254_912


def test_batch_with_a_settled_lease_reverts_entirely(chain, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob, n=1)
    fund(chain, escrow, actors.alice, actors.bob, n=2)
    chain.transact(escrow.functions.settle(lease_id(2), 5), actors.operator)

    chain.expect_revert(
        escrow.functions.settleBatch([lease_id(1), lease_id(2)], [5, 5]),
        actors.operator,
        "LeaseNotOpen",
        escrow,
    )
    assert status(escrow, 1) == FUNDED


def test_batch_rejects_mismatched_lengths_and_empty_input(chain, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob)
    chain.expect_revert(
        escrow.functions.settleBatch([lease_id(1)], [1, 2]),
        actors.operator,
        "LengthMismatch",
        escrow,
    )
    chain.expect_revert(escrow.functions.settleBatch([], []), actors.operator, "EmptyBatch", escrow)
    chain.expect_revert(
        escrow.functions.settleBatch([lease_id(1)], [1]), actors.bob, "MissingRole", escrow
    )


def test_fee_is_snapshotted_at_funding(chain, token, escrow, actors):
    fund(chain, escrow, actors.alice, actors.bob)
    chain.timelocked(escrow, "setFeeBps", [1_000], actors.owner)
    assert escrow.functions.feeBps().call() == 1_000

    receipt = chain.transact(escrow.functions.settle(lease_id(1), MAX_DURATION), actors.operator)

    assert events(escrow, "LeaseSettled", receipt)[0]["feeAmount"] == AMOUNT * FEE_BPS // 10_000


def test_fee_above_the_hard_cap_is_refused(chain, escrow, actors):
    data = chain.propose(escrow, "setFeeBps", [1_001], actors.owner)
    chain.next_block_at(chain.now() + TIMELOCK_DELAY + 1)
    args = chain.expect_revert(escrow.functions.execute(data), actors.owner, "FeeAboveCap", escrow)
    assert args == (1_001, 1_000)


def test_fee_and_treasury_change_only_through_the_timelock(chain, escrow, actors):
    for sender in (actors.owner, actors.operator):
        chain.expect_revert(escrow.functions.setFeeBps(10), sender, "OnlyThroughTimelock", escrow)
        chain.expect_revert(
            escrow.functions.setTreasury(actors.mallory), sender, "OnlyThroughTimelock", escrow
        )


def test_admin_rotates_settler_and_treasury(chain, token, escrow, actors):
    chain.timelocked(escrow, "grantRoles", [actors.carol, SETTLER], actors.owner)
    chain.timelocked(escrow, "setTreasury", [actors.carol], actors.owner)
    chain.transact(escrow.functions.revokeRoles(actors.operator, SETTLER), actors.owner)
    fund(chain, escrow, actors.alice, actors.bob)

    chain.expect_revert(
        escrow.functions.settle(lease_id(1), 1), actors.operator, "MissingRole", escrow
    )
    receipt = chain.transact(escrow.functions.settle(lease_id(1), MAX_DURATION), actors.carol)
    fee = events(escrow, "LeaseSettled", receipt)[0]["feeAmount"]
    assert fee == 111_060  # floor(4_442_400 * 0.025)
    receipt = chain.transact(escrow.functions.withdrawFees(), actors.alice)
    assert events(token, "Transfer", receipt) == [
        {"from": escrow.address, "to": actors.carol, "value": 111_060}
    ]


def test_escrow_rejects_ether(chain, escrow, actors):
    # Depending on the node, a reverting plain transfer fails at submission or is mined with
    # status 0; either way no ether may stick.
    try:
        tx_hash = chain.w3.eth.send_transaction(
            {"from": actors.alice, "to": escrow.address, "value": 1, "gas": 100_000}
        )
    except TransactionFailed:
        pass
    else:
        assert chain.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 0
    assert chain.w3.eth.get_balance(escrow.address) == 0


def test_gas_stays_within_budget(chain, escrow, actors):
    # Issue 10's budgets, in steady state: another lease stays open (the escrow's balance never
    # drops to zero) and the payees already hold credits.
    fund(chain, escrow, actors.carol, actors.mallory, n=1)
    fund(chain, escrow, actors.alice, actors.bob, n=2)
    fund(chain, escrow, actors.alice, actors.bob, n=3)
    chain.transact(escrow.functions.settle(lease_id(2), 10), actors.operator)
    single = chain.transact(escrow.functions.settle(lease_id(3), 1_000), actors.operator)
    assert single["gasUsed"] <= 55_000

    providers = (actors.bob, actors.mallory, actors.carol)
    renters = (actors.alice, actors.carol)
    ids = []
    for i in range(50):
        n = 100 + i
        fund(chain, escrow, renters[i % 2], providers[i * 3 // 50], n=n)
        ids.append(lease_id(n))
    batch = chain.transact(
        escrow.functions.settleBatch(ids, [500 + i for i in range(50)]), actors.operator
    )
    assert batch["gasUsed"] / 50 <= 15_000


# ----------------------------------------------------------------------------- withdrawals


def _bob_earns(chain, escrow, actors):
    """bob is credited 934_848 (lease 1, 777 s) and alice 3_483_582."""
    fund(chain, escrow, actors.alice, actors.bob)
    chain.transact(escrow.functions.settle(lease_id(1), 777), actors.operator)


def test_withdraw_in_parts_then_in_full(chain, token, escrow, actors):
    _bob_earns(chain, escrow, actors)
    bob_before = token.functions.balanceOf(actors.bob).call()

    receipt = chain.transact(escrow.functions.withdraw(actors.bob, 300_001), actors.bob)
    assert events(escrow, "CreditWithdrawn", receipt) == [
        {"account": actors.bob, "to": actors.bob, "amount": 300_001}
    ]
    assert credits(escrow, actors.bob) == [634_847]
    chain.transact(escrow.functions.withdraw(actors.bob, 634_847), actors.bob)

    assert credits(escrow, actors.bob) == [0]
    assert token.functions.balanceOf(actors.bob).call() == bob_before + 934_848
    # alice's refund and the fee are still held.
    assert token.functions.balanceOf(escrow.address).call() == 3_483_582 + 23_970


def test_withdraw_to_another_address(chain, token, escrow, actors):
    _bob_earns(chain, escrow, actors)
    carol_before, bob_before = balances(token, actors.carol, actors.bob)

    chain.transact(escrow.functions.withdraw(actors.carol, 934_848), actors.bob)

    assert balances(token, actors.carol, actors.bob) == [carol_before + 934_848, bob_before]
    assert credits(escrow, actors.bob, actors.carol) == [0, 0]


def test_withdraw_over_the_credit_or_of_nothing_is_refused(chain, escrow, actors):
    _bob_earns(chain, escrow, actors)

    args = chain.expect_revert(
        escrow.functions.withdraw(actors.bob, 934_849), actors.bob, "InsufficientCredit", escrow
    )
    assert args == (934_848, 934_849)
    chain.expect_revert(
        escrow.functions.withdraw(actors.bob, 0), actors.bob, "NothingToWithdraw", escrow
    )
    chain.expect_revert(
        escrow.functions.withdraw("0x" + "00" * 20, 1), actors.bob, "ZeroAddress", escrow
    )
    assert credits(escrow, actors.bob) == [934_848]


def test_nobody_withdraws_someone_elses_credit(chain, token, escrow, actors):
    # mallory (and the settler, whose key might be stolen) hold no credit: withdraw only ever
    # takes the caller's own, whatever `to` says.
    _bob_earns(chain, escrow, actors)
    for thief in (actors.mallory, actors.operator, actors.owner, actors.treasury):
        args = chain.expect_revert(
            escrow.functions.withdraw(thief, 1), thief, "InsufficientCredit", escrow
        )
        assert args == (0, 1)
    assert credits(escrow, actors.bob, actors.alice) == [934_848, 3_483_582]
    assert token.functions.balanceOf(escrow.address).call() == AMOUNT


def test_withdraw_fees_pays_the_treasury_whoever_calls(chain, token, escrow, actors):
    _bob_earns(chain, escrow, actors)
    treasury_before = token.functions.balanceOf(actors.treasury).call()

    receipt = chain.transact(escrow.functions.withdrawFees(), actors.mallory)

    assert events(escrow, "FeesWithdrawn", receipt) == [
        {"treasury": actors.treasury, "amount": 23_970}
    ]
    assert token.functions.balanceOf(actors.treasury).call() == treasury_before + 23_970
    assert fees(escrow) == 0
    chain.expect_revert(
        escrow.functions.withdrawFees(), actors.mallory, "NothingToWithdraw", escrow
    )
