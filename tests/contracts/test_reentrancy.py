"""The reentrancy guards hold against a token that calls back and a receiver that calls back.

Each attack has a control run with a harmless payload, so a broken hook cannot make the attack
tests pass vacuously.
"""

import pytest

from .conftest import LIMITS, MAX_UINT, USDC, lease_id

RATE = 1_000
DURATION = 600
AMOUNT = RATE * DURATION
DELAY = 3_600


@pytest.fixture
def evil_token(deploy_contract):
    return deploy_contract("ReentrantToken")


@pytest.fixture
def evil_escrow(chain, deploy_contract, evil_token, actors):
    escrow = deploy_contract(
        "LeaseEscrow", evil_token.address, actors.operator, actors.treasury, 250, DELAY, DELAY
    )
    for renter in (actors.alice, actors.carol):
        chain.transact(evil_token.functions.mint(renter, 1_000 * USDC), actors.owner)
        chain.transact(evil_token.functions.approve(escrow.address, MAX_UINT), renter)
    return escrow


@pytest.fixture
def evil_staking(chain, deploy_contract, evil_token, actors):
    staking = deploy_contract(
        "ProviderStaking",
        evil_token.address,
        actors.operator,
        actors.treasury,
        DELAY,
        DELAY,
        tuple(LIMITS),
    )
    for provider in (actors.bob, actors.mallory):
        chain.transact(evil_token.functions.mint(provider, 1_000 * USDC), actors.owner)
        chain.transact(evil_token.functions.approve(staking.address, MAX_UINT), provider)
    return staking


@pytest.fixture
def receiver(deploy_contract):
    return deploy_contract("MaliciousReceiver")


def fund(chain, escrow, renter, n):
    chain.transact(
        escrow.functions.fund(lease_id(n), renter_provider(n), AMOUNT, RATE, DURATION), renter
    )


def renter_provider(n):
    # Any non-zero address works as provider; a fixed one keeps lease setup short.
    return "0x" + f"{n:040x}"


ESCROW_ATTACKS = [
    ("settle", [lease_id(2), 10]),
    ("fail", [lease_id(2), 10, b"\x00" * 32]),
    ("settleBatch", [[lease_id(2)], [10]]),
    ("reclaim", [lease_id(2)]),
    ("fund", [lease_id(3), renter_provider(3), AMOUNT, RATE, DURATION]),
    ("withdraw", [renter_provider(9), 1]),
    ("withdrawFees", []),
]


@pytest.mark.parametrize("attack", ESCROW_ATTACKS)
def test_token_reentering_escrow_during_withdraw_is_refused(
    chain, evil_token, evil_escrow, actors, attack
):
    fund(chain, evil_escrow, actors.alice, 1)
    fund(chain, evil_escrow, actors.alice, 2)
    # 10 s of lease 1: alice is credited 600_000 - 10_000 = 590_000, the fee is 250.
    chain.transact(evil_escrow.functions.settle(lease_id(1), 10), actors.operator)
    name, args = attack
    chain.transact(
        evil_token.functions.arm(evil_escrow.address, evil_escrow.encode_abi(name, args)),
        actors.mallory,
    )

    chain.expect_revert(
        evil_escrow.functions.withdraw(actors.alice, 590_000),
        actors.alice,
        "ReentrantCall",
        evil_escrow,
    )
    assert evil_escrow.functions.credits(actors.alice).call() == 590_000
    assert evil_escrow.functions.getLease(lease_id(2)).call()[-1] == 1  # still Funded
    assert evil_token.functions.balanceOf(evil_escrow.address).call() == 2 * AMOUNT


@pytest.mark.parametrize("attack", ESCROW_ATTACKS)
def test_token_reentering_escrow_during_withdraw_fees_is_refused(
    chain, evil_token, evil_escrow, actors, attack
):
    fund(chain, evil_escrow, actors.alice, 1)
    fund(chain, evil_escrow, actors.alice, 2)
    chain.transact(evil_escrow.functions.settle(lease_id(1), 10), actors.operator)
    name, args = attack
    chain.transact(
        evil_token.functions.arm(evil_escrow.address, evil_escrow.encode_abi(name, args)),
        actors.mallory,
    )

    chain.expect_revert(
        evil_escrow.functions.withdrawFees(), actors.carol, "ReentrantCall", evil_escrow
    )
    assert evil_escrow.functions.accruedFees().call() == 250
    assert evil_token.functions.balanceOf(evil_escrow.address).call() == 2 * AMOUNT


def test_settle_makes_no_call_a_token_could_reenter(chain, evil_token, evil_escrow, actors):
    # Pull payments: settle, fail and settleBatch never call the token, so an armed token's
    # attack never even runs (it would be refused by the lock, as above, if it did).
    for n in (1, 2, 3):
        fund(chain, evil_escrow, actors.alice, n)
    chain.transact(
        evil_token.functions.arm(
            evil_escrow.address, evil_escrow.encode_abi("settle", [lease_id(1), 0])
        ),
        actors.mallory,
    )
    chain.transact(evil_escrow.functions.settle(lease_id(1), 10), actors.operator)
    chain.transact(evil_escrow.functions.fail(lease_id(2), 10, b"\x01" * 32), actors.operator)
    chain.transact(evil_escrow.functions.settleBatch([lease_id(3)], [10]), actors.operator)
    assert evil_token.functions.armed().call()
    assert evil_token.functions.balanceOf(evil_escrow.address).call() == 3 * AMOUNT


def test_token_reentering_escrow_during_fund_is_refused(chain, evil_token, evil_escrow, actors):
    fund(chain, evil_escrow, actors.alice, 1)
    chain.transact(
        evil_token.functions.arm(
            evil_escrow.address, evil_escrow.encode_abi("settle", [lease_id(1), 0])
        ),
        actors.mallory,
    )
    chain.expect_revert(
        evil_escrow.functions.fund(lease_id(2), actors.bob, AMOUNT, RATE, DURATION),
        actors.carol,
        "ReentrantCall",
        evil_escrow,
    )


def test_control_harmless_token_callback_lets_withdraw_through(
    chain, evil_token, evil_escrow, actors
):
    fund(chain, evil_escrow, actors.alice, 1)
    chain.transact(evil_escrow.functions.settle(lease_id(1), 10), actors.operator)
    chain.transact(
        evil_token.functions.arm(
            evil_escrow.address, evil_escrow.encode_abi("quote", [lease_id(1), 1])
        ),
        actors.mallory,
    )
    chain.transact(evil_escrow.functions.withdraw(actors.alice, 590_000), actors.alice)
    assert not evil_token.functions.armed().call()
    assert evil_escrow.functions.credits(actors.alice).call() == 0


def test_a_receiver_that_reverts_does_not_block_a_batch(
    chain, evil_token, evil_escrow, receiver, actors
):
    # The receiver is lease 1's provider and reverts whenever it is sent tokens (its hook
    # re-enters the escrow, which the lock refuses). Under push payments it blocked the
    # whole batch; with credits the batch goes through and only its own withdrawal fails.
    chain.transact(
        evil_escrow.functions.fund(lease_id(1), receiver.address, AMOUNT, RATE, DURATION),
        actors.alice,
    )
    fund(chain, evil_escrow, actors.carol, 2)
    chain.transact(evil_token.functions.setHookReceiver(receiver.address, True), actors.mallory)
    chain.transact(
        receiver.functions.setAttack(
            evil_escrow.address, evil_escrow.encode_abi("reclaim", [lease_id(99)])
        ),
        actors.mallory,
    )

    chain.transact(
        evil_escrow.functions.settleBatch([lease_id(1), lease_id(2)], [DURATION, 300]),
        actors.operator,
    )

    # Lease 1: 600 s * 1_000 = 600_000; fee 15_000; provider 585_000. Lease 2: 300_000 billed,
    # fee 7_500, provider 292_500 to renter_provider(2), carol's refund 300_000.
    credits = evil_escrow.functions.credits
    assert credits(receiver.address).call() == 585_000
    assert credits(renter_provider(2)).call() == 292_500
    assert credits(actors.carol).call() == 300_000
    assert evil_escrow.functions.accruedFees().call() == 22_500
    withdraw = evil_escrow.encode_abi("withdraw", [receiver.address, 585_000])
    chain.expect_revert(
        receiver.functions.execute(evil_escrow.address, withdraw),
        actors.mallory,
        "ReentrantCall",
        evil_escrow,
    )
    assert credits(receiver.address).call() == 585_000
    # Its credit is not lost: it can take it to an address that does receive.
    withdraw = evil_escrow.encode_abi("withdraw", [actors.mallory, 585_000])
    chain.transact(receiver.functions.execute(evil_escrow.address, withdraw), actors.mallory)
    assert evil_token.functions.balanceOf(actors.mallory).call() == 585_000


@pytest.mark.parametrize(
    ("action", "attack"),
    [
        ("stake", ("withdraw", [])),
        ("stake", ("stake", [USDC])),
        ("fundRewards", ("requestUnstake", [USDC])),
    ],
)
def test_token_reentering_staking_is_refused(
    chain, evil_token, evil_staking, actors, action, attack
):
    chain.transact(evil_staking.functions.stake(10 * USDC), actors.bob)
    name, args = attack
    chain.transact(
        evil_token.functions.arm(evil_staking.address, evil_staking.encode_abi(name, args)),
        actors.mallory,
    )
    chain.expect_revert(
        getattr(evil_staking.functions, action)(USDC), actors.bob, "ReentrantCall", evil_staking
    )
    assert evil_staking.functions.totalStaked().call() == 10 * USDC


def test_token_reentering_staking_during_slash_is_refused(chain, evil_token, evil_staking, actors):
    chain.transact(evil_staking.functions.stake(10 * USDC), actors.mallory)
    chain.transact(
        evil_token.functions.arm(
            evil_staking.address,
            evil_staking.encode_abi("slash", [actors.mallory, USDC, b"\x00" * 32]),
        ),
        actors.mallory,
    )
    chain.expect_revert(
        evil_staking.functions.slash(actors.mallory, 5 * USDC, b"\x01" * 32),
        actors.operator,
        "ReentrantCall",
        evil_staking,
    )
    assert evil_staking.functions.stakeOf(actors.mallory).call()[0] == 10 * USDC


def _receiver_funds_a_lease(chain, evil_token, evil_escrow, receiver, actors):
    chain.transact(evil_token.functions.mint(receiver.address, 10 * AMOUNT), actors.owner)
    for target, data in (
        (evil_token, evil_token.encode_abi("approve", [evil_escrow.address, MAX_UINT])),
        (
            evil_escrow,
            evil_escrow.encode_abi("fund", [lease_id(1), actors.bob, AMOUNT, RATE, DURATION]),
        ),
    ):
        chain.transact(receiver.functions.execute(target.address, data), actors.mallory)
    chain.transact(evil_token.functions.setHookReceiver(receiver.address, True), actors.mallory)
    funded_at = evil_escrow.functions.getLease(lease_id(1)).call()[5]
    chain.next_block_at(funded_at + DELAY)


def test_receiver_reentering_reclaim_is_refused(chain, evil_token, evil_escrow, receiver, actors):
    _receiver_funds_a_lease(chain, evil_token, evil_escrow, receiver, actors)
    reclaim = evil_escrow.encode_abi("reclaim", [lease_id(1)])
    chain.transact(receiver.functions.setAttack(evil_escrow.address, reclaim), actors.mallory)

    chain.expect_revert(
        receiver.functions.execute(evil_escrow.address, reclaim),
        actors.mallory,
        "ReentrantCall",
        evil_escrow,
    )
    assert evil_token.functions.balanceOf(evil_escrow.address).call() == AMOUNT


def test_control_receiver_without_attack_reclaims_once(
    chain, evil_token, evil_escrow, receiver, actors
):
    _receiver_funds_a_lease(chain, evil_token, evil_escrow, receiver, actors)
    reclaim = evil_escrow.encode_abi("reclaim", [lease_id(1)])

    chain.transact(receiver.functions.execute(evil_escrow.address, reclaim), actors.mallory)

    assert receiver.functions.hooksSeen().call() == 1
    assert evil_token.functions.balanceOf(evil_escrow.address).call() == 0


def test_receiver_reentering_withdraw_is_refused(chain, evil_token, evil_staking, receiver, actors):
    chain.transact(evil_token.functions.mint(receiver.address, 100 * USDC), actors.owner)
    for target, data in (
        (evil_token, evil_token.encode_abi("approve", [evil_staking.address, MAX_UINT])),
        (evil_staking, evil_staking.encode_abi("stake", [100 * USDC])),
        (evil_staking, evil_staking.encode_abi("requestUnstake", [100 * USDC])),
    ):
        chain.transact(receiver.functions.execute(target.address, data), actors.mallory)
    chain.transact(evil_token.functions.setHookReceiver(receiver.address, True), actors.mallory)
    unlock = evil_staking.functions.stakeOf(receiver.address).call()[2]
    chain.next_block_at(unlock)
    withdraw = evil_staking.encode_abi("withdraw", [])
    chain.transact(receiver.functions.setAttack(evil_staking.address, withdraw), actors.mallory)

    chain.expect_revert(
        receiver.functions.execute(evil_staking.address, withdraw),
        actors.mallory,
        "ReentrantCall",
        evil_staking,
    )
    assert evil_token.functions.balanceOf(evil_staking.address).call() == 100 * USDC
