"""Rewards for service and slashes that scale with the lease broken: amounts computed by hand,
on the in-process chain, indexed back."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from eth_utils import keccak

from marketplace.orders.models import Order
from marketplace.payments import collateral, rewards
from marketplace.payments.indexer import index
from marketplace.payments.models import Reward, Slash
from marketplace.payments.services import rewarding, slashing
from tests.collateral.conftest import bob_stakes
from tests.factories import ListingFactory, ProviderFactory
from tests.payments.helpers import BOB, USDC, record_verdict

HOUR = 3_600


@pytest.fixture
def period(settings):
    """A complete one-hour reward period two hours ago, and the `now` that pays it."""
    settings.REWARD_PERIOD_SECONDS = HOUR
    start_ts = int(timezone.now().timestamp()) // HOUR * HOUR - 2 * HOUR
    start = datetime.fromtimestamp(start_ts, tz=UTC)
    return start, start + timedelta(seconds=HOUR)


def _lease(listing, renter, *, accelerators, state, started, ended=None, billable=None, escrow=0):
    return Order.objects.create(
        renter=renter,
        listing=listing,
        machine=listing.machine,
        provider=listing.provider,
        pricing_mode=Order.PricingMode.ON_DEMAND,
        accelerators=accelerators,
        price_per_hour=3_600,
        rate_per_second=accelerators,
        duration_seconds=2 * HOUR,
        escrow_amount=escrow or accelerators * 2 * HOUR,
        lease_id="0x" + secrets.token_hex(32),
        idempotency_key=secrets.token_hex(8),
        request_fingerprint="x",
        state=state,
        funded_at=started,
        started_at=started,
        ended_at=ended,
        billable_seconds=billable,
    )


def _plan(w3, provider_id, amount):
    from marketplace.payments.staking import provider_staking_state

    return provider_staking_state(
        user=ProviderFactory._meta.model.objects.get(pk=provider_id).owner,
        provider_id=provider_id,
        amount=str(amount),
    )


def test_rewards_are_per_served_accelerator_second_by_hand(
    chain_w3, deployed, bob_provider, alice, period
):
    start, end = period
    listing = ListingFactory(machine__provider=bob_provider)  # 8 GPUs: 250 USDC required
    bob_stakes(chain_w3, _plan(chain_w3, bob_provider.pk, 400 * USDC))
    # 3 GPUs from 100 s before the period to 1,234 s into it: 3 x 1,234 = 3,702.
    _lease(
        listing,
        alice,
        accelerators=3,
        state=Order.State.COMPLETED,
        started=start - timedelta(seconds=100),
        ended=start + timedelta(seconds=1_234),
        billable=1_334,
    )
    # 1 GPU from 3,000 s in, still running now (long after the period): 600.
    _lease(
        listing,
        alice,
        accelerators=1,
        state=Order.State.ACTIVE,
        started=start + timedelta(seconds=3_000),
    )
    # A reserved lease stopped after 60 s is billed its term but served 60 s: 1 x 60.
    _lease(
        listing,
        alice,
        accelerators=1,
        state=Order.State.SETTLED,
        started=start + timedelta(seconds=10),
        ended=start + timedelta(seconds=70),
        billable=HOUR,
    )
    # A broken lease earns nothing: failed, and another one named by a failed verdict.
    _lease(
        listing,
        alice,
        accelerators=2,
        state=Order.State.FAILED,
        started=start + timedelta(seconds=5),
        ended=start + timedelta(seconds=900),
        billable=895,
    )
    named = _lease(
        listing,
        alice,
        accelerators=4,
        state=Order.State.SETTLED,
        started=start + timedelta(seconds=5),
        ended=start + timedelta(seconds=900),
        billable=895,
    )
    verdict = record_verdict(
        machine_id=listing.machine_id,
        key="liveness-x",
        report_hash="0x" + "ab" * 32,
        penalised=False,
        orders=[named],
    )
    assert not verdict.penalised

    # (3,702 + 600 + 60) accelerator-seconds x 10,000 units per accelerator-hour / 3,600
    # = 43,620,000 / 3,600 = 12,116.67, rounded down.
    sent = rewarding.providers_reward(now=end + timedelta(seconds=1))
    assert rewarding.providers_reward(now=end + timedelta(seconds=1))  # resent: same transaction
    assert len(sent) == 1
    # The row names what it pays and whom, for the admin and for reconciliation.
    assert (sent[0].purpose, sent[0].provider_id) == ("provider_reward", bob_provider.pk)
    index()
    reward = Reward.objects.get()
    assert reward.amount == 12_116 and reward.address == BOB
    leases = sorted(
        [
            [o.lease_id, o.accelerators, seconds]
            for o, seconds in zip(
                Order.objects.filter(state__in=["completed", "active", "settled"])
                .exclude(pk=named.pk)
                .order_by("pk"),
                (1_234, 600, 60),
                strict=True,
            )
        ]
    )
    document = {
        "amount": 12_116,
        "kind": "reward",
        "leases": leases,
        "period": [int(start.timestamp()), int(end.timestamp())],
        "provider": BOB.lower(),
        "rate_per_accelerator_hour": 10_000,
    }
    expected = keccak(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
    assert reward.report_hash == "0x" + expected.hex()


def test_zero_stake_earns_nothing_and_a_penalised_machine_earns_nothing(
    chain_w3, deployed, bob_provider, alice, period
):
    start, end = period
    listing = ListingFactory(machine__provider=bob_provider)
    _lease(listing, alice, accelerators=8, state=Order.State.ACTIVE, started=start)
    # Served the whole period, but bob never staked.
    assert rewarding.providers_reward(now=end) == []

    bob_stakes(chain_w3, _plan(chain_w3, bob_provider.pk, 400 * USDC))
    assert [r.amount for r in rewards.rewards_for_period(start=start, end=end, pool=10**12)] == [
        80_000  # 8 GPUs x 1 hour x 10,000
    ]
    # A rejection of the machine within the period forfeits its period.
    record_verdict(machine_id=listing.machine_id, key="77", report_hash="0x" + "77" * 32)
    from marketplace.benchmarks.models import Verdict

    Verdict.objects.filter(key="77").update(created_at=start + timedelta(seconds=10))
    assert rewards.rewards_for_period(start=start, end=end, pool=10**12) == []


def test_the_pool_caps_the_period_pro_rata(chain_w3, deployed, bob_provider, alice, period):
    start, end = period
    listing = ListingFactory(machine__provider=bob_provider)
    bob_stakes(chain_w3, _plan(chain_w3, bob_provider.pk, 400 * USDC))
    _lease(listing, alice, accelerators=8, state=Order.State.ACTIVE, started=start)
    # 80,000 earned, 30,001 in the pool: all of it that divides down, never more.
    assert [r.amount for r in rewards.rewards_for_period(start=start, end=end, pool=30_001)] == [
        30_001
    ]
    assert [r.amount for r in rewards.rewards_for_period(start=start, end=end, pool=0)] == []


def test_a_slash_is_the_base_plus_the_lock_of_each_lease_broken_capped_by_stake(
    chain_w3, deployed, bob_provider, alice, eager
):
    listing = ListingFactory(machine__provider=bob_provider)
    bob_stakes(chain_w3, _plan(chain_w3, bob_provider.pk, 400 * USDC))
    now = timezone.now()
    broken = [
        _lease(listing, alice, accelerators=2, state=Order.State.FAILED, started=now, escrow=e)
        for e in (7_200_000, 1_234_567)
    ]
    # 2-hour leases: two checks, P(caught) = 1 - 0.05^2 = 0.9975. Gains: escrow + 2 GPUs x 2 h
    # x 10,000 = 40,000. Locks: ceil(7,240,000 x 1.2 / 0.9975) = ceil(8,709,774.4) = 8,709,775
    # and ceil(1,274,567 x 1.2 / 0.9975) = ceil(1,533,313.6) = 1,533,314.
    assert [
        collateral.lease_lock(
            escrow_amount=o.escrow_amount, accelerators=2, duration_seconds=2 * HOUR
        )
        for o in broken
    ] == [
        8_709_775,
        1_533_314,
    ]
    verdict = record_verdict(
        machine_id=listing.machine_id, key="501", report_hash="0x" + "51" * 32, orders=broken
    )
    slashing.provider_slash(key=verdict.key)
    index()
    assert Slash.objects.get().amount == 50 * USDC + 8_709_775 + 1_533_314

    # Capped by what is left: 400 - 60.243089 USDC staked; a verdict breaking a huge lease.
    huge = _lease(
        listing, alice, accelerators=8, state=Order.State.FAILED, started=now, escrow=10**12
    )
    record_verdict(
        machine_id=listing.machine_id, key="502", report_hash="0x" + "52" * 32, orders=[huge]
    )
    slashing.provider_slash(key="502")
    index()
    assert Slash.objects.order_by("-pk").first().amount == 400 * USDC - (
        50 * USDC + 8_709_775 + 1_533_314
    )


def test_detection_makes_cheating_lose_for_every_lease_shape(settings):
    assert collateral.catch_probability_ppm(checks=1) == 950_000
    assert collateral.catch_probability_ppm(checks=2) == 997_500
    assert collateral.catch_probability_ppm(checks=40) == collateral.catch_probability_ppm(checks=8)
    for escrow in (1, 3_599, 2_498_400, 10**12):
        for hours in (1, 2, 7, 24 * 30):
            for accelerators in (1, 3, 8):
                seconds = hours * HOUR
                lock = collateral.lease_lock(
                    escrow_amount=escrow, accelerators=accelerators, duration_seconds=seconds
                )
                gain = escrow + collateral.lease_reward(accelerators=accelerators, seconds=seconds)
                catch = collateral.catch_probability_ppm(
                    checks=collateral.lease_checks(duration_seconds=seconds)
                )
                # Expected slash beats the whole gain, by the margin.
                assert catch * lock * 10_000 >= gain * 1_000_000 * 12_000
                assert catch * lock > gain * 1_000_000
