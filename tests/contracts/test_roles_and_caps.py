"""No single key drains the system: separate roles, per-period caps on slashes and rewards, and
a timelock on every change of roles and parameters (contracts/src/Governed.sol)."""

import pytest
from eth_utils import keccak

from .conftest import (
    ADMIN,
    LIMITS,
    REWARDER,
    SETTLER,
    SLASHER,
    TIMELOCK_DELAY,
    USDC,
    events,
    lease_id,
)

REPORT = bytes.fromhex("ee" * 32)
RATE = 1_000
DURATION = 600
PERIOD = LIMITS.period_seconds


def roles(contract, account):
    return contract.functions.rolesOf(account).call()


def period_start(chain):
    """Start of the period the next transaction falls in."""
    return chain.pending_timestamp() // PERIOD * PERIOD


@pytest.fixture
def split_staking(chain, staking, actors):
    """Staking whose hot roles sit on three different keys: carol slashes, alice rewards, the
    operator keeps only SETTLER; bob and mallory have stake and the pool has funds."""
    chain.timelocked(staking, "grantRoles", [actors.carol, SLASHER], actors.owner)
    chain.timelocked(staking, "grantRoles", [actors.alice, REWARDER], actors.owner)
    chain.transact(staking.functions.revokeRoles(actors.operator, SLASHER | REWARDER), actors.owner)
    for provider in (actors.bob, actors.mallory):
        chain.transact(staking.functions.stake(5_000 * USDC), provider)
    chain.transact(staking.functions.fundRewards(5_000 * USDC), actors.carol)
    return staking


# ----------------------------------------------------------------------------- roles


def test_deployment_splits_admin_from_the_operational_roles(escrow, staking, actors):
    assert roles(escrow, actors.owner) == ADMIN
    assert roles(escrow, actors.operator) == SETTLER
    assert roles(staking, actors.owner) == ADMIN
    assert roles(staking, actors.operator) == SETTLER | SLASHER | REWARDER
    assert escrow.functions.delay().call() == TIMELOCK_DELAY
    assert staking.functions.delay().call() == TIMELOCK_DELAY
    assert staking.functions.hasRole(actors.operator, SLASHER | REWARDER).call()
    assert not staking.functions.hasRole(actors.owner, SLASHER).call()


def test_each_staking_role_does_only_its_own_job(chain, split_staking, actors):
    staking = split_staking
    slasher, rewarder, settler = actors.carol, actors.alice, actors.operator
    calls = {
        SLASHER: staking.functions.slash(actors.mallory, USDC, REPORT),
        REWARDER: staking.functions.reward(actors.bob, USDC, REPORT),
        SETTLER: staking.functions.lock(actors.bob, USDC, chain.now() + 3_600),
    }
    holders = {SLASHER: slasher, REWARDER: rewarder, SETTLER: settler}
    for role, fn in calls.items():
        for other_role, key in holders.items():
            if other_role == role:
                continue
            args = chain.expect_revert(fn, key, "MissingRole", staking)
            assert args == (key, role)
        # The admin holds no operational role either.
        chain.expect_revert(fn, actors.owner, "MissingRole", staking)
        chain.transact(fn, holders[role])


def test_administration_calls_need_the_admin_role(chain, escrow, staking, actors):
    data = escrow.encode_abi("setFeeBps", [0])
    for contract in (escrow, staking):
        for fn in (
            contract.functions.propose(bytes.fromhex(data[2:])),
            contract.functions.cancel(keccak(b"x")),
            contract.functions.execute(b""),
            contract.functions.revokeRoles(actors.owner, SETTLER),
        ):
            args = chain.expect_revert(fn, actors.operator, "MissingRole", contract)
            assert args == (actors.operator, ADMIN)


@pytest.mark.parametrize(
    "name, args",
    [
        ("grantRoles", ["0x" + "11" * 20, SETTLER]),
        ("setDelay", [0]),
        ("setTreasury", ["0x" + "11" * 20]),
    ],
)
def test_setters_run_only_through_the_timelock(chain, escrow, staking, actors, name, args):
    for contract in (escrow, staking):
        for sender in (actors.owner, actors.operator):
            fn = getattr(contract.functions, name)(*args)
            chain.expect_revert(fn, sender, "OnlyThroughTimelock", contract)
    chain.expect_revert(
        staking.functions.setLimits(tuple(LIMITS)), actors.owner, "OnlyThroughTimelock", staking
    )
    chain.expect_revert(escrow.functions.setFeeBps(0), actors.owner, "OnlyThroughTimelock", escrow)


def test_admin_revokes_a_hot_key_at_once(chain, escrow, actors):
    receipt = chain.transact(escrow.functions.revokeRoles(actors.operator, SETTLER), actors.owner)
    assert events(escrow, "RolesRevoked", receipt) == [
        {"account": actors.operator, "roles": SETTLER}
    ]
    chain.transact(
        escrow.functions.fund(lease_id(1), actors.bob, RATE * DURATION, RATE, DURATION),
        actors.alice,
    )
    chain.expect_revert(
        escrow.functions.settle(lease_id(1), 1), actors.operator, "MissingRole", escrow
    )


def test_removing_an_admin_waits_for_the_timelock(chain, escrow, actors):
    chain.expect_revert(
        escrow.functions.revokeRoles(actors.owner, ADMIN),
        actors.owner,
        "OnlyThroughTimelock",
        escrow,
    )
    chain.timelocked(escrow, "grantRoles", [actors.carol, ADMIN], actors.owner)
    chain.timelocked(escrow, "revokeRoles", [actors.owner, ADMIN], actors.carol)
    assert roles(escrow, actors.owner) == 0
    assert roles(escrow, actors.carol) == ADMIN


def test_unknown_role_bits_are_refused(chain, escrow, actors):
    data = chain.propose(escrow, "grantRoles", [actors.carol, 16], actors.owner)
    chain.next_block_at(chain.now() + TIMELOCK_DELAY + 1)
    args = chain.expect_revert(escrow.functions.execute(data), actors.owner, "UnknownRoles", escrow)
    assert args == (16,)
    chain.expect_revert(
        escrow.functions.revokeRoles(actors.operator, 0), actors.owner, "UnknownRoles", escrow
    )


def test_settler_key_rotation_without_a_gap(chain, escrow, actors):
    """The runbook: grant the new key through the timelock while the old one keeps settling,
    switch the configuration, then revoke the old key at once."""
    new_key = actors.carol
    for n in (1, 2):
        chain.transact(
            escrow.functions.fund(lease_id(n), actors.bob, RATE * DURATION, RATE, DURATION),
            actors.alice,
        )
    data = chain.propose(escrow, "grantRoles", [new_key, SETTLER], actors.owner)
    chain.transact(escrow.functions.settle(lease_id(1), 10), actors.operator)  # old key works
    chain.next_block_at(escrow.functions.readyAt(keccak(data)).call())
    chain.transact(escrow.functions.execute(data), actors.owner)
    chain.transact(escrow.functions.revokeRoles(actors.operator, SETTLER), actors.owner)

    chain.expect_revert(
        escrow.functions.settle(lease_id(2), 10), actors.operator, "MissingRole", escrow
    )
    chain.transact(escrow.functions.settle(lease_id(2), 10), new_key)


# ----------------------------------------------------------------------------- timelock


def test_a_change_runs_only_after_its_delay(chain, escrow, actors):
    data = bytes.fromhex(escrow.encode_abi("setFeeBps", [500])[2:])
    receipt = chain.transact(escrow.functions.propose(data), actors.owner)
    (proposed,) = events(escrow, "ChangeProposed", receipt)
    ready = chain.now() + TIMELOCK_DELAY
    assert proposed == {"id": keccak(data), "data": data, "readyAt": ready}
    assert escrow.functions.readyAt(keccak(data)).call() == ready

    chain.next_block_at(ready - 1)
    args = chain.expect_revert(
        escrow.functions.execute(data), actors.owner, "ChangeNotReady", escrow
    )
    assert args == (keccak(data), ready)
    assert escrow.functions.feeBps().call() != 500

    chain.next_block_at(ready)
    receipt = chain.transact(escrow.functions.execute(data), actors.owner)
    assert events(escrow, "ChangeExecuted", receipt) == [{"id": keccak(data)}]
    assert events(escrow, "FeeChanged", receipt)[0]["newFeeBps"] == 500
    assert escrow.functions.feeBps().call() == 500
    # Executed once: the same call data needs a new proposal.
    chain.expect_revert(escrow.functions.execute(data), actors.owner, "UnknownChange", escrow)


def test_a_cancelled_change_never_runs(chain, staking, actors):
    data = chain.propose(staking, "grantRoles", [actors.mallory, SLASHER], actors.owner)
    chain.expect_revert(
        staking.functions.propose(data), actors.owner, "ChangeAlreadyProposed", staking
    )
    receipt = chain.transact(staking.functions.cancel(keccak(data)), actors.owner)
    assert events(staking, "ChangeCancelled", receipt) == [{"id": keccak(data)}]
    assert staking.functions.readyAt(keccak(data)).call() == 0

    chain.next_block_at(chain.now() + TIMELOCK_DELAY + 1)
    chain.expect_revert(staking.functions.execute(data), actors.owner, "UnknownChange", staking)
    chain.expect_revert(
        staking.functions.cancel(keccak(data)), actors.owner, "UnknownChange", staking
    )
    assert roles(staking, actors.mallory) == 0


def test_the_delay_itself_is_timelocked_and_bounded(chain, escrow, actors):
    receipt = chain.timelocked(escrow, "setDelay", [3_600], actors.owner)
    assert events(escrow, "DelayChanged", receipt) == [
        {"previousDelay": TIMELOCK_DELAY, "newDelay": 3_600}
    ]
    data = chain.propose(escrow, "setDelay", [30 * 86_400 + 1], actors.owner)
    assert escrow.functions.readyAt(keccak(data)).call() == chain.now() + 3_600
    chain.next_block_at(chain.now() + 3_600)
    args = chain.expect_revert(escrow.functions.execute(data), actors.owner, "DelayTooLong", escrow)
    assert args == (30 * 86_400 + 1, 30 * 86_400)


# ----------------------------------------------------------------------------- caps


def test_slashes_are_capped_per_period_and_the_cap_resets(chain, split_staking, actors):
    staking, slasher = split_staking, actors.carol
    start = period_start(chain)
    chain.transact(staking.functions.slash(actors.mallory, 2_000 * USDC, REPORT), slasher)
    chain.transact(staking.functions.slash(actors.bob, 1_000 * USDC, REPORT), slasher)
    assert staking.functions.periodUsage().call() == [start, LIMITS.slash_cap, 0]

    args = chain.expect_revert(
        staking.functions.slash(actors.mallory, 1, REPORT), slasher, "SlashCapExceeded", staking
    )
    assert args == (LIMITS.slash_cap, 1, LIMITS.slash_cap)

    chain.next_block_at(start + PERIOD - 1)
    chain.expect_revert(
        staking.functions.slash(actors.mallory, 1, REPORT), slasher, "SlashCapExceeded", staking
    )
    chain.next_block_at(start + PERIOD)
    chain.transact(staking.functions.slash(actors.mallory, 3_000 * USDC, REPORT), slasher)
    assert staking.functions.periodUsage().call() == [start + PERIOD, LIMITS.slash_cap, 0]


def test_rewards_are_capped_per_period_and_the_cap_resets(chain, split_staking, actors):
    staking, rewarder = split_staking, actors.alice
    start = period_start(chain)
    chain.transact(staking.functions.reward(actors.bob, 500 * USDC, REPORT), rewarder)
    args = chain.expect_revert(
        staking.functions.reward(actors.mallory, 300 * USDC + 1, REPORT),
        rewarder,
        "RewardCapExceeded",
        staking,
    )
    assert args == (500 * USDC, 300 * USDC + 1, LIMITS.reward_cap)
    chain.transact(staking.functions.reward(actors.mallory, 300 * USDC, REPORT), rewarder)
    assert staking.functions.periodUsage().call() == [start, 0, LIMITS.reward_cap]

    chain.next_block_at(start + PERIOD)
    chain.transact(staking.functions.reward(actors.mallory, LIMITS.reward_cap, REPORT), rewarder)


def test_slash_and_reward_caps_count_separately(chain, split_staking, actors):
    chain.transact(
        split_staking.functions.slash(actors.mallory, LIMITS.slash_cap, REPORT), actors.carol
    )
    chain.transact(
        split_staking.functions.reward(actors.bob, LIMITS.reward_cap, REPORT), actors.alice
    )


def test_limits_change_through_the_timelock(chain, staking, actors):
    new = (3_600, 86_400, 10 * USDC, 20 * USDC)
    receipt = chain.timelocked(staking, "setLimits", [new], actors.owner)
    assert events(staking, "LimitsChanged", receipt) == [
        {
            "periodSeconds": 3_600,
            "slashCap": 10 * USDC,
            "rewardCap": 20 * USDC,
            "maxLockSeconds": 86_400,
        }
    ]
    assert tuple(staking.functions.limits().call()) == new
    chain.transact(staking.functions.stake(100 * USDC), actors.mallory)
    chain.expect_revert(
        staking.functions.slash(actors.mallory, 10 * USDC + 1, REPORT),
        actors.operator,
        "SlashCapExceeded",
        staking,
    )
    data = chain.propose(staking, "setLimits", [(0, 1, 1, 1)], actors.owner)
    chain.next_block_at(chain.now() + TIMELOCK_DELAY)
    chain.expect_revert(staking.functions.execute(data), actors.owner, "InvalidLimits", staking)


def test_a_lock_cannot_run_past_the_longest_lock(chain, staking, actors):
    latest = chain.pending_timestamp() + LIMITS.max_lock_seconds
    chain.next_block_at(chain.pending_timestamp())
    args = chain.expect_revert(
        staking.functions.lock(actors.bob, USDC, latest + 1),
        actors.operator,
        "LockTooLong",
        staking,
    )
    assert args == (latest + 1, latest)
    chain.next_block_at(latest - LIMITS.max_lock_seconds)
    chain.transact(staking.functions.lock(actors.bob, USDC, latest), actors.operator)
    assert tuple(staking.functions.lockOf(actors.bob).call()) == (USDC, latest)
