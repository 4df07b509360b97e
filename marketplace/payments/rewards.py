"""Rewards for service, not for existing: what each provider earned in a reward period, as
verified, staked, leased accelerator-hours. Reads only; services.providers_reward sends them.

A lease counts for the seconds of the period in which it was served (from its start to the
earlier of its end and its start plus its billable seconds; a running lease to now) times its
accelerators, when:
- it was not broken: no failed verdict names it and it did not end failed;
- its machine passed its checks: verified devices on record, no penalising verdict in the period;
- its provider has stake: a wallet with nothing staked earns nothing, and with collateral
  enforced its free stake must cover its requirement (payments/collateral.py).
A provider's reward is floor(sum of accelerator-seconds * REWARD_PER_ACCELERATOR_HOUR / 3600)
token units; if the period's rewards exceed the pool, each is scaled down pro rata (floor), so
they never sum above it. The report hash is keccak of the canonical JSON of the leases counted,
so anyone holding the orders can recompute it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from eth_utils import keccak

from marketplace.benchmarks.models import Verdict
from marketplace.orders.models import Order
from marketplace.payments import collateral

SECONDS_PER_HOUR = 3_600


@dataclass
class ProviderReward:
    provider_id: int
    wallet_address: str
    # (lease id, accelerators, seconds served in the period), sorted by lease id.
    leases: list[tuple[str, int, int]] = field(default_factory=list)
    amount: int = 0

    @property
    def accelerator_seconds(self) -> int:
        return sum(accelerators * seconds for _, accelerators, seconds in self.leases)

    def report_hash(self, *, start: datetime, end: datetime) -> bytes:
        document = {
            "kind": "reward",
            "period": [int(start.timestamp()), int(end.timestamp())],
            "provider": self.wallet_address.lower(),
            "rate_per_accelerator_hour": settings.REWARD_PER_ACCELERATOR_HOUR,
            "leases": [list(lease) for lease in self.leases],
            "amount": self.amount,
        }
        return keccak(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())


def _served_seconds(order: Order, *, start: datetime, end: datetime, now: datetime) -> int:
    served_from = order.started_at
    if order.ended_at is not None:
        served_to = order.ended_at
        if order.billable_seconds is not None:
            # A reserved lease stopped early is billed its term but served only until it ended;
            # a broken one is billed (and served) only to its last proof.
            served_to = min(served_to, served_from + timedelta(seconds=order.billable_seconds))
    else:
        served_to = now
    overlap = min(served_to, end) - max(served_from, start)
    return max(0, int(overlap.total_seconds()))


def _provider_has_stake(provider_id: int) -> bool:
    state = collateral.provider_collateral(provider_id=provider_id)
    if state.staked <= 0:
        return False
    return state.covered or not settings.COLLATERAL_ENFORCED


def rewards_for_period(
    *, start: datetime, end: datetime, pool: int, now: datetime | None = None
) -> list[ProviderReward]:
    """The rewards of [start, end), capped by `pool`, for providers earning more than zero."""
    now = now or timezone.now()
    penalised_machines = set(
        Verdict.objects.filter(
            passed=False, penalised=True, created_at__gte=start, created_at__lt=end
        ).values_list("machine_id", flat=True)
    )
    orders = (
        Order.objects.filter(started_at__isnull=False, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .exclude(state=Order.State.FAILED)
        .filter(machine__verified_device_count__gt=0)
        .select_related("provider")
        .order_by("pk")
    )
    orders = list(orders)
    broken = set(
        Verdict.objects.filter(passed=False, orders__in=[o.pk for o in orders]).values_list(
            "orders", flat=True
        )
    )
    by_provider: dict[int, ProviderReward] = {}
    for order in orders:
        if order.pk in broken or order.machine_id in penalised_machines:
            continue
        seconds = _served_seconds(order, start=start, end=end, now=now)
        if seconds <= 0:
            continue
        reward = by_provider.setdefault(
            order.provider_id,
            ProviderReward(order.provider_id, order.provider.wallet_address),
        )
        reward.leases.append((order.lease_id, order.accelerators, seconds))
    rewards = []
    for provider_id in sorted(by_provider):
        reward = by_provider[provider_id]
        if not _provider_has_stake(provider_id):
            continue
        reward.leases.sort()
        reward.amount = (
            reward.accelerator_seconds * settings.REWARD_PER_ACCELERATOR_HOUR // SECONDS_PER_HOUR
        )
        if reward.amount > 0:
            rewards.append(reward)
    total = sum(r.amount for r in rewards)
    if total > pool:
        for reward in rewards:
            reward.amount = reward.amount * pool // total
        rewards = [r for r in rewards if r.amount > 0]
    return rewards
