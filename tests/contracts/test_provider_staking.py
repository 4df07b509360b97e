from .conftest import SETTLER, STARTING_BALANCE, UNSTAKE_DELAY, USDC, events

REPORT = bytes.fromhex("cd" * 32)


def stake_of(staking, provider):
    return tuple(staking.functions.stakeOf(provider).call())


def test_stake_locks_tokens_and_emits_event(chain, token, staking, actors):
    receipt = chain.transact(staking.functions.stake(100 * USDC), actors.bob)

    assert stake_of(staking, actors.bob) == (100 * USDC, 0, 0)
    assert token.functions.balanceOf(staking.address).call() == 100 * USDC
    assert events(staking, "Staked", receipt) == [
        {"provider": actors.bob, "amount": 100 * USDC, "newStake": 100 * USDC}
    ]


def test_unstake_waits_for_the_delay(chain, token, staking, actors):
    chain.transact(staking.functions.stake(100 * USDC), actors.bob)
    receipt = chain.transact(staking.functions.requestUnstake(40 * USDC), actors.bob)
    (requested,) = events(staking, "UnstakeRequested", receipt)
    unlock = requested["unlockTime"]
    assert unlock == chain.now() + UNSTAKE_DELAY
    assert stake_of(staking, actors.bob) == (60 * USDC, 40 * USDC, unlock)

    chain.next_block_at(unlock - 1)
    args = chain.expect_revert(staking.functions.withdraw(), actors.bob, "StillLocked", staking)
    assert args == (unlock,)

    chain.next_block_at(unlock)
    receipt = chain.transact(staking.functions.withdraw(), actors.bob)
    assert events(staking, "Withdrawn", receipt) == [{"provider": actors.bob, "amount": 40 * USDC}]
    assert token.functions.balanceOf(actors.bob).call() == STARTING_BALANCE - 60 * USDC
    assert stake_of(staking, actors.bob) == (60 * USDC, 0, 0)
    chain.expect_revert(staking.functions.withdraw(), actors.bob, "NothingPending", staking)


def test_unstake_beyond_the_stake_is_refused(chain, staking, actors):
    chain.transact(staking.functions.stake(10 * USDC), actors.bob)
    args = chain.expect_revert(
        staking.functions.requestUnstake(10 * USDC + 1), actors.bob, "InsufficientStake", staking
    )
    assert args == (10 * USDC, 10 * USDC + 1)


def test_slash_sends_the_stake_to_the_treasury_with_the_report_hash(chain, token, staking, actors):
    chain.transact(staking.functions.stake(100 * USDC), actors.mallory)
    treasury_before = token.functions.balanceOf(actors.treasury).call()

    receipt = chain.transact(
        staking.functions.slash(actors.mallory, 30 * USDC, REPORT), actors.operator
    )

    assert events(staking, "Slashed", receipt) == [
        {"provider": actors.mallory, "amount": 30 * USDC, "reportHash": REPORT}
    ]
    assert stake_of(staking, actors.mallory)[0] == 70 * USDC
    assert token.functions.balanceOf(actors.treasury).call() == treasury_before + 30 * USDC


def test_slash_beyond_stake_and_pending_is_refused(chain, staking, actors):
    chain.transact(staking.functions.stake(100 * USDC), actors.mallory)
    chain.transact(staking.functions.requestUnstake(40 * USDC), actors.mallory)

    args = chain.expect_revert(
        staking.functions.slash(actors.mallory, 100 * USDC + 1, REPORT),
        actors.operator,
        "SlashExceedsStake",
        staking,
    )
    assert args == (100 * USDC, 100 * USDC + 1)


def test_slash_reaches_pending_unstake(chain, token, staking, actors):
    # mallory sees the report coming and tries to leave with everything.
    chain.transact(staking.functions.stake(100 * USDC), actors.mallory)
    chain.transact(staking.functions.requestUnstake(100 * USDC), actors.mallory)

    chain.transact(staking.functions.slash(actors.mallory, 80 * USDC, REPORT), actors.operator)

    pending, unlock = stake_of(staking, actors.mallory)[1:]
    assert stake_of(staking, actors.mallory)[0] == 0
    assert pending == 20 * USDC
    chain.next_block_at(unlock)
    chain.transact(staking.functions.withdraw(), actors.mallory)
    assert token.functions.balanceOf(actors.mallory).call() == STARTING_BALANCE - 80 * USDC


def test_slash_takes_active_stake_before_pending(chain, staking, actors):
    chain.transact(staking.functions.stake(100 * USDC), actors.mallory)
    chain.transact(staking.functions.requestUnstake(30 * USDC), actors.mallory)

    chain.transact(staking.functions.slash(actors.mallory, 80 * USDC, REPORT), actors.operator)

    assert stake_of(staking, actors.mallory)[:2] == (0, 20 * USDC)


def test_slash_and_reward_by_non_operator_are_refused(chain, staking, actors):
    chain.transact(staking.functions.stake(100 * USDC), actors.mallory)
    chain.transact(staking.functions.fundRewards(10 * USDC), actors.carol)
    chain.expect_revert(
        staking.functions.slash(actors.mallory, USDC, REPORT), actors.bob, "MissingRole", staking
    )
    chain.expect_revert(
        staking.functions.reward(actors.bob, USDC, REPORT), actors.bob, "MissingRole", staking
    )


def test_reward_is_paid_from_the_pool(chain, token, staking, actors):
    receipt = chain.transact(staking.functions.fundRewards(50 * USDC), actors.carol)
    assert events(staking, "RewardsFunded", receipt) == [
        {"funder": actors.carol, "amount": 50 * USDC}
    ]

    receipt = chain.transact(
        staking.functions.reward(actors.bob, 20 * USDC, REPORT), actors.operator
    )

    assert events(staking, "Rewarded", receipt) == [
        {"provider": actors.bob, "amount": 20 * USDC, "reportHash": REPORT}
    ]
    assert staking.functions.rewardPool().call() == 30 * USDC
    assert token.functions.balanceOf(actors.bob).call() == STARTING_BALANCE + 20 * USDC


def test_reward_beyond_the_pool_is_refused(chain, staking, actors):
    chain.transact(staking.functions.fundRewards(5 * USDC), actors.carol)
    # Stakes sit in the same contract but must never be paid out as rewards.
    chain.transact(staking.functions.stake(100 * USDC), actors.bob)

    args = chain.expect_revert(
        staking.functions.reward(actors.bob, 5 * USDC + 1, REPORT),
        actors.operator,
        "RewardExceedsPool",
        staking,
    )
    assert args == (5 * USDC, 5 * USDC + 1)


# ----------------------------------------------------------------------------- lease locks


def lock_of(staking, provider):
    return tuple(staking.functions.lockOf(provider).call())


def test_lock_is_recorded_and_announced(chain, staking, actors):
    until = chain.now() + 3_600
    receipt = chain.transact(staking.functions.lock(actors.bob, 70 * USDC, until), actors.operator)

    assert lock_of(staking, actors.bob) == (70 * USDC, until)
    assert events(staking, "StakeLocked", receipt) == [
        {"provider": actors.bob, "amount": 70 * USDC, "until": until}
    ]


def test_unstake_below_the_lock_is_refused_until_it_ends(chain, staking, actors):
    chain.transact(staking.functions.stake(100 * USDC), actors.bob)
    until = chain.now() + 3_600
    chain.transact(staking.functions.lock(actors.bob, 70 * USDC, until), actors.operator)

    args = chain.expect_revert(
        staking.functions.requestUnstake(30 * USDC + 1), actors.bob, "StakeLocked", staking
    )
    assert args == (70 * USDC, until)
    # Down to the locked amount exactly is allowed.
    chain.transact(staking.functions.requestUnstake(30 * USDC), actors.bob)
    assert stake_of(staking, actors.bob)[:2] == (70 * USDC, 30 * USDC)

    chain.next_block_at(until - 1)
    chain.expect_revert(staking.functions.requestUnstake(1), actors.bob, "StakeLocked", staking)
    chain.next_block_at(until)
    chain.transact(staking.functions.requestUnstake(70 * USDC), actors.bob)
    assert stake_of(staking, actors.bob)[:2] == (0, 100 * USDC)


def test_a_new_lock_replaces_the_old_one(chain, staking, actors):
    chain.transact(staking.functions.stake(100 * USDC), actors.bob)
    far = chain.now() + 86_400
    chain.transact(staking.functions.lock(actors.bob, 90 * USDC, far), actors.operator)
    chain.expect_revert(
        staking.functions.requestUnstake(20 * USDC), actors.bob, "StakeLocked", staking
    )

    chain.transact(staking.functions.lock(actors.bob, 50 * USDC, far), actors.operator)
    chain.transact(staking.functions.requestUnstake(20 * USDC), actors.bob)
    chain.transact(staking.functions.lock(actors.bob, 0, 0), actors.operator)
    assert lock_of(staking, actors.bob) == (0, 0)
    chain.transact(staking.functions.requestUnstake(80 * USDC), actors.bob)
    assert stake_of(staking, actors.bob)[:2] == (0, 100 * USDC)


def test_locked_stake_can_still_be_slashed(chain, staking, actors):
    chain.transact(staking.functions.stake(100 * USDC), actors.mallory)
    chain.transact(
        staking.functions.lock(actors.mallory, 100 * USDC, chain.now() + 3_600), actors.operator
    )
    chain.transact(staking.functions.slash(actors.mallory, 100 * USDC, REPORT), actors.operator)
    assert stake_of(staking, actors.mallory)[0] == 0


def test_only_a_settler_locks(chain, staking, actors):
    args = chain.expect_revert(
        staking.functions.lock(actors.bob, 0, 0), actors.bob, "MissingRole", staking
    )
    assert args == (actors.bob, SETTLER)
