"""Collateral before capacity: how much stake a provider must keep free for what it offers, how
much each lease locks, and how much a broken lease slashes. Reads only (the writes that follow,
searchability and slashes, call these). The reasoning and the figures are in the design document
(/work/helpers/collateral-design.md, to be merged into docs/design/collateral.md).

- A lease locks ceil((escrow + the rewards it earns) * MARGIN / P(caught)), P(caught) =
  1 - (1 - DETECTION)^checks, from funding until DISPUTE_WINDOW after it ends: a provider who
  cheats on it expects to lose more than the most it can gain from it.
- Every listed machine needs (BASE + PER_ACCELERATOR * accelerators) * (1 + machines of the
  provider rejected for cheating within the rejection window) of free stake: what a fake or a
  relay puts at risk before any lease, and what a rejected owner must put at risk again.
- free = staked - locked; a provider is covered when free >= the listed machines' requirement.
  Pending unstakes count for nothing (they are leaving), though they stay slashable on chain.

Amounts are integer token units (6 decimals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from web3 import Web3

from marketplace.benchmarks.models import Verdict
from marketplace.core.errors import ConflictError
from marketplace.orders.models import Order
from marketplace.payments.models import ContractDeployment, Stake
from marketplace.providers.models import Machine, Provider

PPM = 1_000_000
BPS = 10_000
SECONDS_PER_HOUR = 3_600
# (1 - 0.95)^8 is 4e-11 of a ppm: more checks change nothing an integer can hold.
_MAX_CHECKS_COUNTED = 8


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def lease_checks(*, duration_seconds: int) -> int:
    """Re-verification jobs a lease of this length gets: one per BENCHMARK_LEASE_INTERVAL, and
    at least the one at its start."""
    return max(1, int(duration_seconds) // settings.BENCHMARK_LEASE_INTERVAL_SECONDS)


def catch_probability_ppm(*, checks: int) -> int:
    """P(a cheat of >= 10% of the work is caught by at least one of `checks`), in ppm, rounded
    down (so the lock derived from it rounds up)."""
    miss = PPM
    for _ in range(min(checks, _MAX_CHECKS_COUNTED)):
        miss = _ceil_div(miss * (PPM - settings.COLLATERAL_DETECTION_PPM), PPM)
    return PPM - miss


def lease_reward(*, accelerators: int, seconds: int) -> int:
    return (
        int(accelerators) * int(seconds) * settings.REWARD_PER_ACCELERATOR_HOUR // SECONDS_PER_HOUR
    )


def lease_lock(*, escrow_amount: int, accelerators: int, duration_seconds: int) -> int:
    """Stake a lease locks, and the most a break of it adds to a slash: the most a cheat on it
    can gain (the whole escrow plus the rewards it would earn), scaled up by 1 / P(caught) and
    the margin, so that P(caught) * lock > gain."""
    gain = int(escrow_amount) + lease_reward(
        accelerators=accelerators, seconds=int(duration_seconds)
    )
    catch = catch_probability_ppm(checks=lease_checks(duration_seconds=duration_seconds))
    return _ceil_div(gain * PPM * settings.COLLATERAL_MARGIN_BPS, catch * BPS)


def machine_base_requirement(*, accelerators: int) -> int:
    return settings.COLLATERAL_BASE + settings.COLLATERAL_PER_ACCELERATOR * max(1, accelerators)


def _accelerators(machine: Machine) -> int:
    return max(1, machine.verified_device_count or machine.accelerator_count)


@dataclass
class MachineRequirement:
    machine_id: int
    name: str
    state: str
    accelerators: int
    required: int


@dataclass
class LeaseLock:
    order_id: int
    state: str
    escrow_amount: int
    accelerators: int
    duration_seconds: int
    locked: int
    # None while the lease runs; then its end plus the dispute window.
    locked_until: datetime | None


@dataclass
class ProviderCollateral:
    provider_id: int
    wallet_address: str
    chain_id: int | None
    staked: int
    pending: int
    unlock_time: int
    locked: int
    machines_required: int
    adding_required: int
    rejected_machines: int
    multiplier: int
    machines: list[MachineRequirement] = field(default_factory=list)
    leases: list[LeaseLock] = field(default_factory=list)

    @property
    def free(self) -> int:
        return max(0, self.staked - self.locked)

    @property
    def required(self) -> int:
        """Free stake needed: the listed machines, plus what the caller is about to add."""
        return self.machines_required + self.adding_required

    @property
    def shortfall(self) -> int:
        return max(0, self.required - self.free)

    @property
    def covered(self) -> bool:
        return self.shortfall == 0

    @property
    def unstakable(self) -> int:
        """How much may be requested for unstaking without leaving anything uncovered."""
        return max(0, self.free - self.machines_required)


def staking_chain_id() -> int | None:
    """The chain of the staking contract we use: read from our own deployment rows, so the
    requirement never waits on a node."""
    return (
        ContractDeployment.objects.filter(name=ContractDeployment.Name.STAKING)
        .order_by("-updated_at", "-pk")
        .values_list("chain_id", flat=True)
        .first()
    )


def _stake_of(provider: Provider, cid: int | None) -> Stake | None:
    if cid is None:
        return None
    # Stakes are keyed by the checksummed address the indexer decoded (the unique index).
    address = Web3.to_checksum_address(provider.wallet_address)
    return Stake.objects.filter(chain_id=cid, address=address).first()


def provider_rejected_machines(*, provider_id: int, now: datetime | None = None) -> int:
    """The provider's machines rejected for cheating (a penalising failed job) recently."""
    since = (now or timezone.now()) - timedelta(
        seconds=settings.COLLATERAL_REJECTION_WINDOW_SECONDS
    )
    return (
        Verdict.objects.filter(
            machine__provider_id=provider_id,
            kind=Verdict.Kind.FAIL,
            penalised=True,
            created_at__gte=since,
        )
        .values("machine_id")
        .distinct()
        .count()
    )


def _listed(provider_id: int):
    return Machine.objects.filter(provider_id=provider_id).filter(
        Q(state=Machine.State.LISTED)
        | Q(state=Machine.State.OFFLINE, resume_state=Machine.State.LISTED)
    )


def provider_lease_locks(*, provider_id: int, now: datetime | None = None) -> list[LeaseLock]:
    """Every lease that locks stake now: funded or running, or ended within the dispute window
    after having run. A lease cancelled before it started served nothing and locks nothing."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.COLLATERAL_DISPUTE_WINDOW_SECONDS)
    orders = Order.objects.filter(provider_id=provider_id, funded_at__isnull=False).filter(
        Q(state__in=Order.COMMITTED) | Q(started_at__isnull=False, ended_at__gte=cutoff)
    )
    window = timedelta(seconds=settings.COLLATERAL_DISPUTE_WINDOW_SECONDS)
    return [
        LeaseLock(
            order_id=o.pk,
            state=o.state,
            escrow_amount=o.escrow_amount,
            accelerators=o.accelerators,
            duration_seconds=o.duration_seconds,
            locked=lease_lock(
                escrow_amount=o.escrow_amount,
                accelerators=o.accelerators,
                duration_seconds=o.duration_seconds,
            ),
            locked_until=o.ended_at + window if o.ended_at else None,
        )
        for o in orders.order_by("pk")
    ]


def provider_collateral(
    *,
    provider_id: int,
    now: datetime | None = None,
    adding_machine_id: int | None = None,
    adding_lease: dict | None = None,
    excluding_order_id: int | None = None,
) -> ProviderCollateral:
    """The provider's stake, locks and requirement, with what the caller is about to add: a
    machine about to be listed, or a lease about to be taken (`excluding_order_id` keeps that
    lease's own order out of the locks, when it exists already)."""
    now = now or timezone.now()
    provider = Provider.objects.get(pk=provider_id)
    cid = staking_chain_id()
    stake = _stake_of(provider, cid)
    rejected = provider_rejected_machines(provider_id=provider_id, now=now)
    multiplier = 1 + rejected
    machines = list(_listed(provider_id).order_by("pk"))
    if adding_machine_id is not None and all(m.pk != adding_machine_id for m in machines):
        machines.append(Machine.objects.get(pk=adding_machine_id))
    requirements = [
        MachineRequirement(
            machine_id=m.pk,
            name=m.name,
            state=m.state,
            accelerators=_accelerators(m),
            required=machine_base_requirement(accelerators=_accelerators(m)) * multiplier,
        )
        for m in machines
    ]
    leases = [
        lease
        for lease in provider_lease_locks(provider_id=provider_id, now=now)
        if lease.order_id != excluding_order_id
    ]
    adding = 0
    if adding_lease is not None:
        adding = lease_lock(
            escrow_amount=adding_lease["escrow_amount"],
            accelerators=adding_lease["accelerators"],
            duration_seconds=adding_lease["duration_seconds"],
        )
    return ProviderCollateral(
        provider_id=provider.pk,
        wallet_address=provider.wallet_address,
        chain_id=cid,
        staked=int(stake.staked) if stake else 0,
        pending=int(stake.pending) if stake else 0,
        unlock_time=stake.unlock_time if stake else 0,
        locked=sum(lease.locked for lease in leases),
        machines_required=sum(r.required for r in requirements),
        adding_required=adding,
        rejected_machines=rejected,
        multiplier=multiplier,
        machines=requirements,
        leases=leases,
    )


def provider_collateral_covers(*, provider_id: int) -> bool:
    """Whether the provider's listed machines may show in search (core.collateral.covers)."""
    if not settings.COLLATERAL_ENFORCED:
        return True
    return provider_collateral(provider_id=provider_id).covered


def provider_collateral_require(
    *,
    provider_id: int,
    adding_machine_id: int | None = None,
    adding_lease: dict | None = None,
    excluding_order_id: int | None = None,
) -> None:
    """Raises the 409 `collateral_insufficient` that says how much more to stake."""
    if not settings.COLLATERAL_ENFORCED:
        return
    # Serialises the decisions that add to one provider's commitments (two orders on two of
    # its listings at once, a listing beside an order): each sees the other's lease once it
    # commits. Always taken last, after the listing, machine or order the caller holds.
    Provider.objects.select_for_update().filter(pk=provider_id).first()
    state = provider_collateral(
        provider_id=provider_id,
        adding_machine_id=adding_machine_id,
        adding_lease=adding_lease,
        excluding_order_id=excluding_order_id,
    )
    if state.covered:
        return
    raise ConflictError(
        f"The provider's free stake ({state.free} units: {state.staked} staked, "
        f"{state.locked} locked by its leases) does not cover the {state.required} units of "
        f"collateral this needs; stake {state.shortfall} more units "
        f"(GET /api/v1/providers/{provider_id}/staking has the calldata).",
        code="collateral_insufficient",
        extra={
            "provider_id": provider_id,
            "staked": state.staked,
            "locked": state.locked,
            "free": state.free,
            "required": state.required,
            "shortfall": state.shortfall,
        },
    )


def verdict_slash_amount(*, verdict: Verdict, available: int) -> int:
    """What a penalising verdict slashes: SLASH_AMOUNT (what any rejection costs, leases or
    not) plus the lock of every lease it broke, capped by what the wallet has staked or
    pending. Scales with the leases broken instead of a flat amount."""
    amount = settings.SLASH_AMOUNT
    for order in verdict.orders.filter(funded_at__isnull=False).order_by("pk"):
        amount += lease_lock(
            escrow_amount=order.escrow_amount,
            accelerators=order.accelerators,
            duration_seconds=order.duration_seconds,
        )
    return max(0, min(amount, available))
