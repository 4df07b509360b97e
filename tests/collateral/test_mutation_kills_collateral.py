"""Tests written to kill mutation-testing survivors in the collateral scope (issue 14).

The settings are pinned by tests/collateral/conftest.py (detection 950,000 ppm, margin 12,000
bps, one check per 3,600 s, 10,000 units of reward per accelerator-hour, a 50 + 25-per-GPU
USDC machine requirement). Every expected figure is worked out by hand in the comment above it.
"""

from __future__ import annotations

import pytest

from marketplace.payments import collateral
from marketplace.payments.collateral import ProviderCollateral
from tests.payments.helpers import USDC


@pytest.mark.parametrize(
    "seconds, checks",
    [(0, 1), (3_599, 1), (3_600, 1), (7_199, 1), (7_200, 2), (36_000, 10)],
)
def test_a_lease_gets_one_check_per_interval_and_at_least_one(seconds, checks):
    assert collateral.lease_checks(duration_seconds=seconds) == checks


@pytest.mark.parametrize(
    "checks, ppm",
    [
        (0, 0),  # no check catches nothing
        (1, 950_000),  # miss 1,000,000 x 0.05 = 50,000
        (2, 997_500),  # miss 50,000 x 0.05 = 2,500
        (3, 999_875),  # miss 2,500 x 0.05 = 125
        (4, 999_993),  # miss 125 x 0.05 = 6.25, rounded up to 7
        (5, 999_999),  # miss 7 x 0.05 = 0.35, rounded up to 1
        (12, 999_999),  # 1 x 0.05 rounds up to 1 again: the miss never reaches 0
    ],
)
def test_the_catch_probability_rounds_each_miss_up(checks, ppm):
    assert collateral.catch_probability_ppm(checks=checks) == ppm


def test_checks_beyond_eight_are_not_counted(settings):
    # At 50% detection the miss halves per check, rounded up: 500,000, 250,000, 125,000,
    # 62,500, 31,250, 15,625, 7,813 (7,812.5), 3,907 (3,906.5) after 8 checks; a 9th would
    # make it 1,954, but only 8 are counted.
    settings.COLLATERAL_DETECTION_PPM = 500_000
    assert collateral.catch_probability_ppm(checks=7) == 1_000_000 - 7_813
    assert collateral.catch_probability_ppm(checks=8) == 1_000_000 - 3_907
    assert collateral.catch_probability_ppm(checks=9) == 1_000_000 - 3_907
    assert collateral.catch_probability_ppm(checks=30) == 1_000_000 - 3_907


@pytest.mark.parametrize(
    "accelerators, seconds, reward",
    [
        (3, 1_234, 10_283),  # 3 x 1,234 x 10,000 / 3,600 = 10,283.3, rounded down
        (1, 3_600, 10_000),
        (2, 1, 5),  # 2 x 10,000 / 3,600 = 5.6, rounded down
        (0, 3_600, 0),
    ],
)
def test_a_lease_reward_is_per_accelerator_hour_rounded_down(accelerators, seconds, reward):
    assert collateral.lease_reward(accelerators=accelerators, seconds=seconds) == reward


@pytest.mark.parametrize(
    "escrow, accelerators, seconds, lock",
    [
        # gain 75,600 + 3 x 10,000 = 105,600; one check, caught 95%:
        # 105,600 x 1.2 / 0.95 = 133,389.47, rounded up.
        (75_600, 3, 3_600, 133_390),
        # gain 1,000,000 + 2 x 10,000 = 1,020,000; two checks, caught 99.75%:
        # 1,020,000 x 1.2 / 0.9975 = 1,227,067.67, rounded up.
        (1_000_000, 1, 7_200, 1_227_068),
        # gain 95 + 5 (2 x 1 s x 10,000 / 3,600 = 5.6, rounded down) = 100;
        # 100 x 1.2 / 0.95 = 126.3, rounded up.
        (95, 2, 1, 127),
    ],
)
def test_a_lease_locks_its_gain_times_the_margin_over_the_catch_probability(
    escrow, accelerators, seconds, lock
):
    assert (
        collateral.lease_lock(
            escrow_amount=escrow, accelerators=accelerators, duration_seconds=seconds
        )
        == lock
    )


@pytest.mark.parametrize(
    "accelerators, required", [(0, 75 * USDC), (1, 75 * USDC), (4, 150 * USDC)]
)
def test_a_machine_needs_the_base_plus_each_accelerator_and_at_least_one(accelerators, required):
    assert collateral.machine_base_requirement(accelerators=accelerators) == required


def _state(*, staked, locked, machines_required, adding_required):
    return ProviderCollateral(
        provider_id=1,
        wallet_address="0x" + "b0" * 20,
        chain_id=31337,
        staked=staked,
        pending=0,
        unlock_time=0,
        locked=locked,
        machines_required=machines_required,
        adding_required=adding_required,
        rejected_machines=0,
        multiplier=1,
    )


def test_free_stake_is_staked_less_locked_and_covers_what_is_required():
    state = _state(staked=100, locked=30, machines_required=50, adding_required=15)
    # free 100 - 30 = 70; required 50 + 15 = 65; 5 to spare; unstakable 70 - 50 = 20.
    assert (state.free, state.required, state.shortfall, state.covered) == (70, 65, 0, True)
    assert state.unstakable == 20


def test_free_stake_exactly_the_requirement_covers_it():
    state = _state(staked=100, locked=35, machines_required=50, adding_required=15)
    assert (state.free, state.required, state.shortfall, state.covered) == (65, 65, 0, True)
    assert state.unstakable == 15


def test_a_shortfall_is_what_is_missing_and_free_stake_never_goes_negative():
    state = _state(staked=20, locked=30, machines_required=50, adding_required=15)
    # locked above staked: free is 0, not -10; short 65; nothing may be unstaked.
    assert (state.free, state.required, state.shortfall, state.covered) == (0, 65, 65, False)
    assert state.unstakable == 0
    one_short = _state(staked=100, locked=36, machines_required=50, adding_required=15)
    assert (one_short.free, one_short.shortfall, one_short.covered) == (64, 1, False)


def test_the_lock_target_sums_the_leases_until_the_last_window_ends(alice, listing, settings):
    # provider_lock_target with its clock given (the on-chain test calls it twice a second
    # apart and is left out of the mutation run). Leases pinned by hand: 75,600 units, 3
    # accelerators, one hour: 133,390 locked each (see the lease_lock case above).
    from datetime import UTC, datetime, timedelta

    from marketplace.orders import services as order_services
    from marketplace.orders.models import Order
    from marketplace.payments.collateral_services import provider_lock_target

    settings.COLLATERAL_ENFORCED = False  # no stake here: only the target is under test
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    provider_id = listing.machine.provider_id
    assert provider_lock_target(provider_id=provider_id, now=t0) == (0, 0)
    orders = [
        order_services.order_create(
            renter=alice,
            listing_id=listing.pk,
            pricing_mode="on_demand",
            accelerators=1,
            hours=1,
            idempotency_key=f"lock-target-{i}",
        )[0]
        for i in range(3)
    ]
    pinned = {"escrow_amount": 75_600, "accelerators": 3, "duration_seconds": 3_600}
    # Running since t0 + 10 min: locked until its start + 1 h + the 2-day window.
    Order.objects.filter(pk=orders[0].pk).update(
        state=Order.State.ACTIVE,
        funded_at=t0,
        started_at=t0 + timedelta(minutes=10),
        **pinned,
    )
    # Ended at t0 + 30 min after running: locked until its end + the window.
    Order.objects.filter(pk=orders[1].pk).update(
        state=Order.State.COMPLETED,
        funded_at=t0,
        started_at=t0 + timedelta(minutes=5),
        ended_at=t0 + timedelta(minutes=30),
        **pinned,
    )
    # Never funded: locks nothing.
    Order.objects.filter(pk=orders[2].pk).update(**pinned)
    now = t0 + timedelta(hours=1)
    window = timedelta(days=2)
    amount, until = provider_lock_target(provider_id=provider_id, now=now)
    assert amount == 2 * 133_390
    running_ends = int((t0 + timedelta(minutes=10) + timedelta(hours=1) + window).timestamp())
    assert until == running_ends
    # The target does not move with the clock (it did: a new lock transaction per call).
    assert provider_lock_target(provider_id=provider_id, now=now + timedelta(seconds=1)) == (
        amount,
        until,
    )
    # Funded, not started: counted from the latest start its order allows (funding + 600 s).
    Order.objects.filter(pk=orders[0].pk).update(started_at=None, state=Order.State.STARTING)
    waiting_ends = int((t0 + timedelta(seconds=600) + timedelta(hours=1) + window).timestamp())
    assert provider_lock_target(provider_id=provider_id, now=now)[1] == waiting_ends


def test_only_a_penalised_failure_inside_the_period_costs_a_machine_its_reward(
    alice, listing, settings, monkeypatch
):
    from datetime import UTC, datetime, timedelta

    from marketplace.benchmarks.models import Verdict
    from marketplace.orders import services as order_services
    from marketplace.orders.models import Order
    from marketplace.payments import rewards
    from tests.payments.helpers import record_verdict

    settings.COLLATERAL_ENFORCED = False
    # Stake is collateral's question, tested with the chain; here only the period's rules.
    monkeypatch.setattr(rewards, "_provider_has_stake", lambda provider_id: True)
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    start, end, now = t0 + timedelta(hours=1), t0 + timedelta(hours=2), t0 + timedelta(hours=3)
    order = order_services.order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=2,
        hours=4,
        idempotency_key="reward-period",
    )[0]
    Order.objects.filter(pk=order.pk).update(state=Order.State.ACTIVE, funded_at=t0, started_at=t0)
    machine_id = listing.machine_id

    def paid():
        found = rewards.rewards_for_period(start=start, end=end, pool=10**12, now=now)
        return [(r.provider_id, r.amount) for r in found]

    # 2 accelerators x 3,600 s of the period x 10,000 per accelerator-hour = 20,000.
    expected = [(listing.machine.provider_id, 20_000)]
    assert paid() == expected
    before = record_verdict(machine_id=machine_id, key="before", report_hash="0x" + "1" * 64)
    Verdict.objects.filter(pk=before.pk).update(created_at=t0 + timedelta(minutes=30))
    unpenalised = record_verdict(
        machine_id=machine_id, key="mild", report_hash="0x" + "2" * 64, penalised=False
    )
    Verdict.objects.filter(pk=unpenalised.pk).update(created_at=start + timedelta(minutes=5))
    assert paid() == expected
    after = record_verdict(machine_id=machine_id, key="after", report_hash="0x" + "4" * 64)
    Verdict.objects.filter(pk=after.pk).update(created_at=end + timedelta(minutes=10))
    assert paid() == expected  # the next period's failure costs the next period's reward
    inside = record_verdict(machine_id=machine_id, key="inside", report_hash="0x" + "3" * 64)
    Verdict.objects.filter(pk=inside.pk).update(created_at=start + timedelta(minutes=10))
    assert paid() == []


# --- stakes replayed from events (marketplace/payments/services/stakes.py) ---------------------

CID = 31337
CAROL = "0x" + "c0" * 20
DAVE = "0x" + "d0" * 20


def test_a_withdrawal_empties_what_was_pending_and_its_unlock_time():
    from marketplace.payments.services.stakes import _stake_replay

    events = [
        ("Staked", "100", None),
        ("UnstakeRequested", "40", "1767225600"),
        ("Withdrawn", "40", None),
        ("Staked", "5", None),
    ]
    # 100 staked, 40 moved to pending until 1767225600, withdrawn (pending and unlock back to
    # 0), then 5 more: 60 + 5 staked, nothing pending.
    assert _stake_replay(events) == (65, 0, 0)


def _staking_event(account, name, block, *, log_index=0, contract="staking", **args):
    """A final event of `account`'s from `contract` (the staking contract unless told)."""
    from tests.factories import ChainEventFactory

    ChainEventFactory(
        contract=contract,
        account=account,
        name=name,
        block_number=block,
        log_index=log_index,
        args=args,
    )


@pytest.mark.django_db
def test_a_stake_is_replayed_from_its_own_wallets_events_only():
    """carol's and dave's events sit side by side; recomputing carol's stake reads hers only,
    returns hers only, and what it returns is what the database now holds."""
    from marketplace.payments.models import Stake
    from marketplace.payments.services.stakes import stake_recompute, stakes_recompute

    _staking_event(CAROL, "Staked", 1, amount=70)
    _staking_event(DAVE, "Staked", 2, amount=900)
    _staking_event(CAROL, "UnstakeRequested", 3, amount=20, unlockTime=1_767_225_600)
    Stake.objects.create(chain_id=CID, address=DAVE, staked=1)  # stale, and not carol's business
    # carol's stake on another chain (the same key staked on a testnet, say) is another row.
    Stake.objects.create(chain_id=CID + 1, address=CAROL, staked=3)

    carol = stake_recompute(cid=CID, address=CAROL)
    assert (carol.chain_id, carol.staked, carol.pending, carol.unlock_time) == (
        CID,
        50,
        20,
        1_767_225_600,
    )
    assert Stake.objects.get(chain_id=CID + 1, address=CAROL).staked == 3

    _staking_event(CAROL, "Staked", 4, amount=5)
    returned = stakes_recompute(cid=CID, addresses=[CAROL])
    assert list(returned) == [CAROL]
    stored = Stake.objects.get(chain_id=CID, address=CAROL)
    assert (stored.staked, stored.pending) == (55, 20)
    assert returned[CAROL].updated_at == stored.updated_at  # the row as written, not stale
    assert Stake.objects.get(chain_id=CID, address=DAVE).staked == 1  # untouched


# --- what a provider must cover, and the beat that re-derives it --------------------------------


@pytest.mark.django_db
def test_an_offline_machine_counts_toward_collateral_only_if_it_was_listed(bob_provider):
    """A listed machine that drops offline still needs its cover (it comes back listed); one
    that was only verified when it dropped does not."""
    from marketplace.payments.collateral import provider_collateral
    from marketplace.providers.models import Machine
    from tests.factories import MachineFactory

    State = Machine.State
    listed = MachineFactory(provider=bob_provider, state=State.LISTED, accelerator_count=1)
    was_listed = MachineFactory(
        provider=bob_provider, state=State.OFFLINE, resume_state=State.LISTED, accelerator_count=2
    )
    MachineFactory(
        provider=bob_provider, state=State.OFFLINE, resume_state=State.VERIFIED, accelerator_count=4
    )
    MachineFactory(provider=bob_provider, state=State.VERIFIED, accelerator_count=8)

    state = provider_collateral(provider_id=bob_provider.pk)
    assert [m.machine_id for m in state.machines] == [listed.pk, was_listed.pk]
    # 50 + 25 per accelerator: 75 + 100 USDC.
    assert state.machines_required == 175 * USDC


@pytest.mark.django_db
def test_a_machine_is_covered_for_its_verified_devices_or_its_declared_ones_before_any_are(
    bob_provider,
):
    """Measured devices decide the requirement (one measured of eight declared is one); a
    machine with none measured yet counts what it declared, never fewer than one."""
    from marketplace.payments.collateral import provider_collateral
    from marketplace.providers.models import Machine
    from tests.factories import MachineFactory

    Listed = Machine.State.LISTED
    MachineFactory(
        provider=bob_provider, state=Listed, accelerator_count=8, verified_device_count=2
    )
    MachineFactory(
        provider=bob_provider, state=Listed, accelerator_count=4, verified_device_count=0
    )
    MachineFactory(
        provider=bob_provider, state=Listed, accelerator_count=0, verified_device_count=0
    )

    state = provider_collateral(provider_id=bob_provider.pk)
    assert [m.accelerators for m in state.machines] == [2, 4, 1]
    # 50 + 25 per accelerator: 100 + 150 + 75 USDC.
    assert state.machines_required == 325 * USDC


@pytest.mark.django_db
def test_the_collateral_beat_looks_at_listed_machines_and_searchable_listings_of_every_provider(
    settings,
):
    """carol stakes enough and has a listed machine whose listing is out of search (stale):
    the beat puts it back. dave's machine is no longer listed but its listing still shows: the
    beat takes it out. erin's verified machine and hidden listing are not looked at. Ids are
    set far apart (machines from 9,000,001, listings from 9,100,001), so a provider id is never
    also a machine's or a listing's."""
    from web3 import Web3

    from marketplace.listings.models import Listing
    from marketplace.payments.collateral_services import collateral_sync
    from marketplace.payments.models import ContractDeployment, Stake
    from marketplace.providers.models import Machine
    from tests.factories import ListingFactory, MachineFactory, ProviderFactory

    ContractDeployment.objects.create(
        chain_id=CID, name="staking", address="0x" + "5a" * 20, block_number=1, tx_hash="0x01"
    )
    carol, dave, erin = (ProviderFactory(wallet_address=w) for w in (CAROL, DAVE, "0x" + "e0" * 20))
    Stake.objects.create(
        chain_id=CID, address=Web3.to_checksum_address(CAROL), staked=10_000 * USDC
    )
    machines = [
        MachineFactory(pk=9_000_001 + i, provider=p, state=state)
        for i, (p, state) in enumerate(
            [
                (carol, Machine.State.LISTED),
                (dave, Machine.State.OFFLINE),
                (erin, Machine.State.VERIFIED),
            ]
        )
    ]
    hidden, shown, untouched = (
        ListingFactory(pk=9_100_001 + i, machine=m, provider=m.provider, is_searchable=searchable)
        for i, (m, searchable) in enumerate(zip(machines, (False, True, False), strict=True))
    )

    # carol's machine and dave's: two looked at.
    assert collateral_sync() == 2
    searchable = dict(Listing.objects.values_list("pk", "is_searchable"))
    assert searchable == {hidden.pk: True, shown.pk: False, untouched.pk: False}


@pytest.mark.django_db
def test_the_collateral_beat_takes_an_uncovered_provider_out_of_search_and_counts_its_machines(
    bob_provider,
):
    """bob has a listed machine on no stake (his stake was slashed away, say) whose listing is
    still searchable, and a verified one with no listing; another provider has nothing listed.
    The beat looks at bob's one listed machine and takes its listing out of search."""
    from marketplace.listings.models import Listing
    from marketplace.payments.collateral_services import collateral_sync
    from tests.factories import ListingFactory, MachineFactory, ProviderFactory

    shown = ListingFactory(machine__provider=bob_provider, is_searchable=True)
    MachineFactory(provider=bob_provider)
    MachineFactory(provider=ProviderFactory())

    assert collateral_sync() == 1
    assert Listing.objects.get(pk=shown.pk).is_searchable is False


# --- rewards (marketplace/payments/services/rewarding.py) ---------------------------------------


@pytest.mark.django_db
def test_a_reward_that_reverts_is_logged_by_provider_and_the_others_are_still_paid(
    chain_w3, deployed, monkeypatch, caplog
):
    """The pool drained between its read and the first send: that reward reverts, the warning
    names the provider and the reason for an operator, and the second provider is still paid."""
    import logging
    from datetime import UTC, datetime

    from marketplace.payments import chain, rewards
    from marketplace.payments.rewards import ProviderReward
    from marketplace.payments.services import rewarding

    owed = [
        ProviderReward(provider_id=7, wallet_address=CAROL, amount=10),
        ProviderReward(provider_id=8, wallet_address=DAVE, amount=20),
    ]
    monkeypatch.setattr(rewards, "rewards_for_period", lambda **kwargs: owed)
    paid = []

    def send_call(fn, *, idempotency_key, **kwargs):
        if idempotency_key.startswith("reward:7:"):
            raise chain.TransactionReverted("RewardPoolEmpty()")
        paid.append(idempotency_key)
        return idempotency_key

    monkeypatch.setattr(chain, "send_call", send_call)
    with caplog.at_level(logging.WARNING, logger=rewarding.__name__):
        sent = rewarding.providers_reward(now=datetime(2026, 1, 5, 12, 0, 1, tzinfo=UTC))

    assert sent == paid and [key.split(":")[1] for key in paid] == ["8"]
    assert [r.getMessage() for r in caplog.records] == [
        "reward for provider 7 not sent: RewardPoolEmpty()"
    ]


@pytest.mark.django_db
def test_a_provider_paid_rewards_but_never_locked_has_no_lock_to_release(bob_provider, monkeypatch):
    """bob's only transactions are rewards paid to him: with no lease to lock for, there is
    no earlier lock to replace, so nothing is sent (a lock of (0, 0) would be a wasted
    transaction per beat)."""
    from marketplace.payments.models import ChainTransaction
    from tests.factories import ChainTransactionFactory

    ChainTransactionFactory(
        purpose="provider_reward",
        idempotency_key=f"reward:{bob_provider.pk}:1767225600",
        status=ChainTransaction.Status.CONFIRMED,
        provider=bob_provider,
    )

    _assert_no_lock_sent(bob_provider, monkeypatch)


def _assert_no_lock_sent(provider, monkeypatch) -> None:
    """provider_lock_send sends nothing for `provider`: it never reaches the chain."""
    from marketplace.payments import chain
    from marketplace.payments.collateral_services import provider_lock_send

    def no_chain(*args, **kwargs):
        raise AssertionError("provider_lock_send reached the chain")

    monkeypatch.setattr(chain, "send_call", no_chain)
    monkeypatch.setattr(chain, "contract", no_chain)
    assert provider_lock_send(provider_id=provider.pk) is None


def _lease_served(
    listing, alice, *, key: str, started, accelerators=2, ended=None, billable=None, state=None
):
    """alice's lease of `accelerators` on `listing` for 4 h, started (and funded) at `started`:
    active, or settled when it `ended`, unless `state` says otherwise."""
    from marketplace.orders import services as order_services
    from marketplace.orders.models import Order

    order = order_services.order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=accelerators,
        hours=4,
        idempotency_key=key,
    )[0]
    Order.objects.filter(pk=order.pk).update(
        state=state or (Order.State.ACTIVE if ended is None else Order.State.SETTLED),
        funded_at=started,
        started_at=started,
        ended_at=ended,
        billable_seconds=billable,
    )
    return Order.objects.get(pk=order.pk)


def test_a_lease_that_served_nothing_in_the_period_is_not_in_the_report(
    alice, listing, settings, monkeypatch
):
    """One lease was stopped the second it started; another, taken after it, served the whole
    period. The reward's report lists only the second: a lease of 0 s is no service to report,
    and it does not end the list of those after it."""
    from datetime import UTC, datetime, timedelta

    from marketplace.payments import rewards

    settings.COLLATERAL_ENFORCED = False
    monkeypatch.setattr(rewards, "_provider_has_stake", lambda provider_id: True)
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    start, end, now = t0 + timedelta(hours=1), t0 + timedelta(hours=2), t0 + timedelta(hours=3)
    stopped_at = start + timedelta(minutes=30)
    _lease_served(listing, alice, key="stopped", started=stopped_at, ended=stopped_at)
    served = _lease_served(listing, alice, key="served", started=t0)

    (reward,) = rewards.rewards_for_period(start=start, end=end, pool=10**12, now=now)
    assert reward.leases == [(served.lease_id, 2, 3_600)]
    assert reward.amount == 20_000  # 2 x 3,600 s x 10,000 per accelerator-hour


def test_with_the_requirement_off_any_stake_earns_and_none_does_not(alice, listing, settings):
    """COLLATERAL_ENFORCED off waives the cover, never the stake: bob, who served the whole
    period, earns nothing on 0 staked and his full reward on 1 unit."""
    from datetime import UTC, datetime, timedelta

    from web3 import Web3

    from marketplace.payments import rewards
    from marketplace.payments.models import ContractDeployment, Stake

    settings.COLLATERAL_ENFORCED = False
    ContractDeployment.objects.create(
        chain_id=CID, name="staking", address="0x" + "5a" * 20, block_number=1, tx_hash="0x01"
    )
    wallet = Web3.to_checksum_address(listing.machine.provider.wallet_address)
    stake = Stake.objects.create(chain_id=CID, address=wallet, staked=0)
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    start, end, now = t0 + timedelta(hours=1), t0 + timedelta(hours=2), t0 + timedelta(hours=3)
    _lease_served(listing, alice, key="served", started=t0)

    def paid():
        found = rewards.rewards_for_period(start=start, end=end, pool=10**12, now=now)
        return [r.amount for r in found]

    assert paid() == []
    Stake.objects.filter(pk=stake.pk).update(staked=1)
    assert paid() == [20_000]


# --- third sample (seed 20261202) ---------------------------------------------------------------


def test_an_ended_lease_stays_locked_until_the_dispute_window_after_its_end(
    alice, listing, settings
):
    """bob's lease ran an hour and ended an hour ago: it locks his stake until two days (the
    dispute window) after it ended, not after its full term from its start."""
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.payments.collateral import provider_lease_locks
    from marketplace.payments.collateral_services import provider_lock_target

    settings.COLLATERAL_ENFORCED = False  # the order is taken without a stake; locks still count
    now = timezone.now().replace(microsecond=0)
    ended = now - timedelta(hours=1)
    order = _lease_served(
        listing, alice, key="ended", started=ended - timedelta(hours=1), ended=ended, billable=3_600
    )
    provider_id = listing.machine.provider_id

    (lock,) = provider_lease_locks(provider_id=provider_id, now=now)
    assert (lock.order_id, lock.locked_until) == (order.pk, ended + timedelta(days=2))
    assert provider_lock_target(provider_id=provider_id, now=now)[1] == int(
        (ended + timedelta(days=2)).timestamp()
    )


@pytest.mark.django_db
def test_another_providers_rejected_machine_does_not_raise_this_ones_requirement(bob_provider):
    from marketplace.payments.collateral import provider_collateral, provider_rejected_machines
    from marketplace.providers.models import Machine
    from tests.factories import MachineFactory
    from tests.payments.helpers import record_verdict

    MachineFactory(provider=bob_provider, state=Machine.State.LISTED, verified_device_count=1)
    cheat = MachineFactory(state=Machine.State.LISTED)  # another provider's
    record_verdict(machine_id=cheat.pk, key="cheat", report_hash="0x" + "c" * 64)

    assert provider_rejected_machines(provider_id=bob_provider.pk) == 0
    assert provider_rejected_machines(provider_id=cheat.provider_id) == 1
    # 50 + 25 x 1 accelerator, times (1 + 0 rejections): 75 USDC.
    assert provider_collateral(provider_id=bob_provider.pk).machines_required == 75 * USDC


def test_a_lease_of_one_second_in_the_period_is_reported_and_rewarded(
    alice, listing, settings, monkeypatch
):
    from datetime import UTC, datetime, timedelta

    from marketplace.payments import rewards

    settings.COLLATERAL_ENFORCED = False
    monkeypatch.setattr(rewards, "_provider_has_stake", lambda provider_id: True)
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    start, end, now = t0 + timedelta(hours=1), t0 + timedelta(hours=2), t0 + timedelta(hours=3)
    # Started the second before the period ends: 1 s of it served.
    order = _lease_served(listing, alice, key="one-second", started=end - timedelta(seconds=1))

    (reward,) = rewards.rewards_for_period(start=start, end=end, pool=10**12, now=now)
    assert reward.leases == [(order.lease_id, 2, 1)]
    assert reward.amount == 5  # 2 x 1 s x 10,000 / 3,600 = 5.56, rounded down


def test_a_pool_that_covers_one_unit_still_pays_it(alice, listing, settings, monkeypatch):
    from datetime import UTC, datetime, timedelta

    from marketplace.payments import rewards

    settings.COLLATERAL_ENFORCED = False
    monkeypatch.setattr(rewards, "_provider_has_stake", lambda provider_id: True)
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    start, end, now = t0 + timedelta(hours=1), t0 + timedelta(hours=2), t0 + timedelta(hours=3)
    _lease_served(listing, alice, key="served", started=t0)

    # 20,000 earned, a pool of 1: 20,000 x 1 // 20,000 = 1 unit, paid.
    found = rewards.rewards_for_period(start=start, end=end, pool=1, now=now)
    assert [r.amount for r in found] == [1]


@pytest.mark.django_db
def test_the_effects_sweep_never_looks_at_passed_verdicts(bob_provider, monkeypatch):
    """Passed verdicts never have effects (one per benchmark job: most of them), and a failed
    one whose effects were enqueued is done. The sweep asks only about the failed one still
    waiting, or each of the others would cost a claim every minute forever."""
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.benchmarks.models import Verdict
    from marketplace.payments.services import slashing
    from tests.factories import MachineFactory
    from tests.payments.helpers import record_verdict

    machine = MachineFactory(provider=bob_provider)
    for key in ("ok-1", "ok-2"):
        record_verdict(machine_id=machine.pk, key=key, report_hash="0x" + "a" * 64, passed=True)
    failed = record_verdict(machine_id=machine.pk, key="bad", report_hash="0x" + "b" * 64)
    done = record_verdict(machine_id=machine.pk, key="done", report_hash="0x" + "d" * 64)
    Verdict.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    Verdict.objects.filter(pk=done.pk).update(effects_enqueued_at=timezone.now())
    asked = []

    def claim(*, verdict_id):
        asked.append(verdict_id)
        return True

    monkeypatch.setattr(slashing, "verdict_enqueue_effects", claim)
    assert slashing.verdicts_enqueue_effects_due() == [failed.pk]
    assert asked == [failed.pk]


@pytest.mark.django_db
def test_a_stake_is_replayed_in_block_order_and_from_the_staking_contract_only():
    """carol's events were indexed out of order (the indexer writes a range's logs as they come)
    and their log indices run backwards: the replay follows the blocks. Events of the same
    names from another of our contracts are not stake events (none has such names today: the
    escrow's pull payment is CreditWithdrawn; the replay must not depend on that staying so)."""
    from marketplace.payments.services.stakes import stake_recompute

    _staking_event(CAROL, "Withdrawn", 3, log_index=0, amount=40)
    _staking_event(CAROL, "Staked", 1, log_index=5, amount=100)
    _staking_event(CAROL, "UnstakeRequested", 2, log_index=3, amount=40, unlockTime=1_767_225_600)
    _staking_event(CAROL, "Withdrawn", 4, log_index=1, contract="escrow", amount=7)
    _staking_event(CAROL, "Staked", 5, log_index=1, contract="escrow", amount=1_000)

    # 100 staked, 40 of it requested until 1767225600, then withdrawn: 60 staked, none pending.
    stake = stake_recompute(cid=CID, address=CAROL)
    assert (stake.staked, stake.pending, stake.unlock_time) == (60, 0, 0)


# --- fourth sample (seed 20261203) --------------------------------------------------------------


def test_a_pool_short_of_the_rewards_is_shared_pro_rata_in_whole_units(
    alice, listing, settings, monkeypatch
):
    """bob earned 20,000 and another provider 10,000 in the period; the pool holds 10,000. Each
    gets his share rounded down to a whole unit (the amount goes on chain as an integer), so
    the pool is never overdrawn: 6,666 and 3,333."""
    from datetime import UTC, datetime, timedelta

    from marketplace.payments import rewards
    from tests.factories import ListingFactory

    settings.COLLATERAL_ENFORCED = False
    monkeypatch.setattr(rewards, "_provider_has_stake", lambda provider_id: True)
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    start, end, now = t0 + timedelta(hours=1), t0 + timedelta(hours=2), t0 + timedelta(hours=3)
    other = ListingFactory()
    _lease_served(listing, alice, key="bob", started=t0)  # 2 x 3,600 s: 20,000
    _lease_served(other, alice, key="other", started=start + timedelta(minutes=30))

    found = rewards.rewards_for_period(start=start, end=end, pool=10_000, now=now)
    assert [(r.provider_id, r.amount) for r in found] == [
        (listing.machine.provider_id, 6_666),  # 20,000 x 10,000 // 30,000
        (other.machine.provider_id, 3_333),  # 10,000 x 10,000 // 30,000
    ]
    assert all(type(r.amount) is int for r in found)


# --- rewards.py run whole (after the fourth sample) ---------------------------------------------

PERIOD_T0 = (2026, 1, 5, 12, 0)


def _reward_period():
    """(start, end, now) of a one-hour period: it starts an hour after PERIOD_T0 and is judged
    an hour after it ends."""
    from datetime import UTC, datetime, timedelta

    t0 = datetime(*PERIOD_T0, tzinfo=UTC)
    return t0 + timedelta(hours=1), t0 + timedelta(hours=2), t0 + timedelta(hours=3)


def test_the_reward_report_reads_each_lease_with_its_provider_in_one_query(
    alice, listing, settings, monkeypatch
):
    """The leases are read with their providers (the wallet goes in the report): three leases
    cost the same queries as one, not one more each."""
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from marketplace.payments import rewards

    settings.COLLATERAL_ENFORCED = False
    monkeypatch.setattr(rewards, "_provider_has_stake", lambda provider_id: True)
    start, end, now = _reward_period()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            rewards.rewards_for_period(start=start, end=end, pool=10**12, now=now)
        return len(captured)

    _lease_served(listing, alice, key="first", started=start - timedelta(hours=1))
    one = queries()
    for key in ("second", "third"):
        _lease_served(listing, alice, key=key, started=start)
    assert queries() == one


def test_a_machine_with_one_verified_device_earns_its_reward(alice, settings, monkeypatch):
    from marketplace.payments import rewards
    from tests.factories import ListingFactory

    settings.COLLATERAL_ENFORCED = False
    monkeypatch.setattr(rewards, "_provider_has_stake", lambda provider_id: True)
    start, end, now = _reward_period()
    single = ListingFactory(machine__accelerator_count=1)
    assert single.machine.verified_device_count == 1
    order = _lease_served(single, alice, key="single", started=start, accelerators=1)

    (reward,) = rewards.rewards_for_period(start=start, end=end, pool=10**12, now=now)
    assert reward.leases == [(order.lease_id, 1, 3_600)]
    assert reward.amount == 10_000  # 1 x 3,600 s x 10,000 per accelerator-hour


def test_a_broken_lease_earns_nothing_and_the_leases_after_it_still_earn(
    alice, listing, settings, monkeypatch
):
    """bob's lease was failed by a verdict and has since settled; another provider's lease,
    taken after it, served the whole period and is paid."""
    from marketplace.orders.models import Order
    from marketplace.payments import rewards
    from tests.factories import ListingFactory
    from tests.payments.helpers import record_verdict

    settings.COLLATERAL_ENFORCED = False
    monkeypatch.setattr(rewards, "_provider_has_stake", lambda provider_id: True)
    start, end, now = _reward_period()
    broken = _lease_served(
        listing, alice, key="broken", started=start, state=Order.State.SETTLED, accelerators=1
    )
    record_verdict(
        machine_id=broken.machine_id,
        key="broke-it",
        report_hash="0x" + "b" * 64,
        penalised=False,  # excused: only the lease it broke goes unpaid, not the machine
        orders=[broken],
    )
    other = ListingFactory()
    served = _lease_served(other, alice, key="served", started=start, accelerators=1)

    found = rewards.rewards_for_period(start=start, end=end, pool=10**12, now=now)
    assert [(r.provider_id, r.leases, r.amount) for r in found] == [
        (other.machine.provider_id, [(served.lease_id, 1, 3_600)], 10_000)
    ]


def test_a_provider_without_stake_earns_nothing_and_the_providers_after_him_still_earn(
    alice, listing, settings, monkeypatch
):
    from marketplace.payments import rewards
    from tests.factories import ListingFactory

    settings.COLLATERAL_ENFORCED = False
    bob_id = listing.machine.provider_id
    other = ListingFactory()
    assert bob_id < other.machine.provider_id  # bob is looked at first
    monkeypatch.setattr(rewards, "_provider_has_stake", lambda provider_id: provider_id != bob_id)
    start, end, now = _reward_period()
    _lease_served(listing, alice, key="bob", started=start, accelerators=1)
    _lease_served(other, alice, key="other", started=start, accelerators=1)

    found = rewards.rewards_for_period(start=start, end=end, pool=10**12, now=now)
    assert [(r.provider_id, r.amount) for r in found] == [(other.machine.provider_id, 10_000)]


def test_a_reward_of_one_unit_is_paid_and_one_that_rounds_to_nothing_is_not_listed(
    alice, listing, settings, monkeypatch
):
    """At 1,800 units per accelerator-hour, one second of one accelerator earns 1,800 / 3,600 =
    0.5, rounded down to 0: that provider is not in the report. One second of two earns 1."""
    from datetime import timedelta

    from marketplace.payments import rewards
    from tests.factories import ListingFactory

    settings.COLLATERAL_ENFORCED = False
    settings.REWARD_PER_ACCELERATOR_HOUR = 1_800
    monkeypatch.setattr(rewards, "_provider_has_stake", lambda provider_id: True)
    start, end, now = _reward_period()
    last_second = end - timedelta(seconds=1)
    _lease_served(listing, alice, key="two", started=last_second)
    _lease_served(ListingFactory(), alice, key="one", started=last_second, accelerators=1)

    found = rewards.rewards_for_period(start=start, end=end, pool=10**12, now=now)
    assert [(r.provider_id, r.amount) for r in found] == [(listing.machine.provider_id, 1)]


# --- the collateral scope's other modules run whole ---------------------------------------------


@pytest.mark.django_db
def test_the_effects_sweep_leaves_a_failure_to_its_receiver_for_a_minute(bob_provider, monkeypatch):
    """The sweep takes a failed verdict only once it is more than 60 s old (the receiver enqueues
    its effects on commit; the sweep is for those it never did). The clock is pinned, so the
    ages below are exact."""
    from datetime import UTC, datetime, timedelta

    from django.utils import timezone

    from marketplace.benchmarks.models import Verdict
    from marketplace.payments.services import slashing
    from tests.factories import MachineFactory
    from tests.payments.helpers import record_verdict

    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    machine = MachineFactory(provider=bob_provider)
    ages = {"old": 61, "just-over": 60.5, "exactly": 60, "young": 59}
    by_key = {}
    for key, seconds in ages.items():
        verdict = record_verdict(machine_id=machine.pk, key=key, report_hash="0x" + "f" * 64)
        Verdict.objects.filter(pk=verdict.pk).update(created_at=now - timedelta(seconds=seconds))
        by_key[key] = verdict.pk
    monkeypatch.setattr(timezone, "now", lambda: now)
    asked = []
    monkeypatch.setattr(
        slashing, "verdict_enqueue_effects", lambda *, verdict_id: asked.append(verdict_id) or True
    )

    assert slashing.verdicts_enqueue_effects_due() == [by_key["old"], by_key["just-over"]]
    assert asked == [by_key["old"], by_key["just-over"]]


@pytest.mark.django_db
def test_the_collateral_is_worked_out_as_of_the_time_asked(bob_provider):
    """bob's cheat was caught today: for the 30-day rejection window his requirement is doubled.
    Asked as of 31 days from now, the window has passed and it is the base again."""
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.payments.collateral import provider_collateral
    from marketplace.providers.models import Machine
    from tests.factories import MachineFactory
    from tests.payments.helpers import record_verdict

    MachineFactory(provider=bob_provider, state=Machine.State.LISTED, verified_device_count=1)
    cheat = MachineFactory(provider=bob_provider, state=Machine.State.SUSPENDED)
    record_verdict(machine_id=cheat.pk, key="caught", report_hash="0x" + "c" * 64)
    now = timezone.now()

    # 50 + 25 x 1 accelerator = 75 USDC, times (1 + 1 rejection) while the window lasts.
    assert provider_collateral(provider_id=bob_provider.pk, now=now).machines_required == (
        150 * USDC
    )
    later = now + timedelta(days=31)
    assert provider_collateral(provider_id=bob_provider.pk, now=later).machines_required == (
        75 * USDC
    )


@pytest.mark.django_db
def test_another_providers_lock_is_not_this_ones_to_release(bob_provider, monkeypatch):
    """Another provider has a lock on chain; bob never had one and has no lease: nothing is
    sent for bob (his (0, 0) "release" would be a wasted transaction per beat)."""
    from marketplace.payments.models import ChainTransaction
    from tests.factories import ChainTransactionFactory, ProviderFactory

    other = ProviderFactory()
    ChainTransactionFactory(
        purpose="stake_lock",
        idempotency_key=f"lock:{other.pk}:75000000:1767225600:0",
        status=ChainTransaction.Status.CONFIRMED,
        provider=other,
    )

    _assert_no_lock_sent(bob_provider, monkeypatch)


def test_a_slash_beyond_the_stake_takes_the_rest_from_what_is_pending():
    """100 staked, 80 of it asked back (20 staked, 80 pending), then a slash of 50: 20 from the
    stake, the other 30 from the pending 80, which leaves 50 pending until the same time."""
    from marketplace.payments.services.stakes import _stake_replay

    events = [
        ("Staked", "100", None),
        ("UnstakeRequested", "80", "1767225600"),
        ("Slashed", "50", None),
    ]

    assert _stake_replay(events) == (0, 50, 1_767_225_600)


@pytest.mark.django_db
def test_only_a_providers_open_listings_are_synced(bob_provider, monkeypatch):
    """bob's closed and paused listings stay as they are: only the active one's machine is
    looked at."""
    from marketplace.listings.models import Listing
    from marketplace.payments import collateral_services
    from tests.factories import ListingFactory

    active = ListingFactory(machine__provider=bob_provider, provider=bob_provider)
    for status in (Listing.Status.CLOSED, Listing.Status.PAUSED):
        ListingFactory(machine__provider=bob_provider, provider=bob_provider, status=status)
    looked_at = []
    real = collateral_services.listing_sync_searchable

    def sync(*, machine_id):
        looked_at.append(machine_id)
        return real(machine_id=machine_id)

    monkeypatch.setattr(collateral_services, "listing_sync_searchable", sync)
    assert collateral_services.providers_sync_searchable(provider_ids=[bob_provider.pk]) == 1
    assert looked_at == [active.machine_id]
