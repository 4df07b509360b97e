"""Writes that follow from collateral (marketplace/payments/collateral.py): a provider whose free
stake no longer covers its listed machines leaves search until it stakes again, and comes back
when it does. Called when its stake changes (the indexer's replay), when one of its machines is
rejected (the rejection raises its requirement), and by beat for locks that expire with time.
The lease locks are mirrored on chain (ProviderStaking.lock) once a lease is funded or ends."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from web3 import Web3

from marketplace.listings.models import Listing
from marketplace.listings.services import listing_sync_searchable
from marketplace.orders.models import Order
from marketplace.payments import chain, collateral
from marketplace.payments.models import ChainTransaction
from marketplace.providers.models import Machine, Provider


def providers_sync_searchable(*, provider_ids: Iterable[int]) -> int:
    """Re-derives `is_searchable` for the open listings of these providers (machine state and
    collateral). Returns how many machines were looked at."""
    provider_ids = sorted({pk for pk in provider_ids if pk is not None})
    if not provider_ids:
        return 0
    machine_ids = list(
        Listing.objects.filter(provider_id__in=provider_ids, status=Listing.Status.ACTIVE)
        .values_list("machine_id", flat=True)
        .distinct()
        .order_by("machine_id")
    )
    for machine_id in machine_ids:
        listing_sync_searchable(machine_id=machine_id)
    return len(machine_ids)


def collateral_sync() -> int:
    """Beat: every provider that has a listed machine or a searchable listing, re-derived. Locks
    end DISPUTE_WINDOW after a lease, with no event to react to; a few queries per provider.
    (A listing can only become searchable on a listed machine, and one that is searchable now
    may have to stop being so: those two sets are every listing whose answer can change.)"""
    provider_ids = set(
        Machine.objects.filter(state=Machine.State.LISTED).values_list("provider_id", flat=True)
    ) | set(
        Listing.objects.filter(is_searchable=True).values_list("provider_id", flat=True).distinct()
    )
    return providers_sync_searchable(provider_ids=provider_ids)


def provider_lock_target(*, provider_id: int, now: datetime | None = None) -> tuple[int, int]:
    """(amount, until) the staking contract should hold for the provider's leases: the sum of
    the locks of the leases still inside their window, until the latest of those windows ends
    (a running lease's window ends its full duration plus the dispute window after its start;
    a funded lease not yet started counts from the latest start its order allows,
    ORDER_START_DEADLINE_SECONDS after funding). (0, 0) when none.

    The target depends on the leases only, never on the clock: one counted from `now` moved
    every second, so each call sent a new lock transaction for the same leases."""
    now = now or timezone.now()
    window = timedelta(seconds=settings.COLLATERAL_DISPUTE_WINDOW_SECONDS)
    amount, until = 0, 0
    for lease in collateral.provider_lease_locks(provider_id=provider_id, now=now):
        if lease.locked_until is not None:
            ends = lease.locked_until
        else:
            # provider_lease_locks returns funded orders only, and funded_at is never cleared.
            order = Order.objects.get(pk=lease.order_id)
            begins = order.started_at or order.funded_at + timedelta(
                seconds=settings.ORDER_START_DEADLINE_SECONDS
            )
            ends = begins + timedelta(seconds=order.duration_seconds) + window
        amount += lease.locked
        until = max(until, int(ends.timestamp()))
    return amount, until


def provider_lock_send(*, provider_id: int) -> ChainTransaction | None:
    """Mirrors the provider's lease locks on chain (ProviderStaking.lock, which replaces the
    previous lock): until `until`, requestUnstake reverts StakeLocked below `amount`. Sent only
    when the target differs from the last lock sent; the key names the target and how many
    locks came before, so a retry or a concurrent run sends it once, and going back to an
    earlier target later is a new transaction."""
    if not settings.COLLATERAL_ENFORCED:
        return None
    amount, until = provider_lock_target(provider_id=provider_id)
    sent = ChainTransaction.objects.filter(provider_id=provider_id, purpose="stake_lock").exclude(
        status=ChainTransaction.Status.FAILED
    )
    last = sent.order_by("-pk").first()
    if last is not None and last.idempotency_key.startswith(
        f"lock:{provider_id}:{amount}:{until}:"
    ):
        return chain.confirm(last) if last.status != ChainTransaction.Status.CONFIRMED else last
    if last is None and amount == 0:
        return None  # nothing was ever locked: nothing to release
    provider = Provider.objects.get(pk=provider_id)
    staking = chain.contract("staking")
    tx = chain.send_call(
        staking.functions.lock(Web3.to_checksum_address(provider.wallet_address), amount, until),
        idempotency_key=f"lock:{provider_id}:{amount}:{until}:{sent.count()}",
        purpose="stake_lock",
        provider_id=provider_id,
    )
    return chain.confirm(tx)


def providers_with_lease_changes(*, order_ids: Iterable[int]) -> list[int]:
    return sorted(
        set(Order.objects.filter(pk__in=list(order_ids)).values_list("provider_id", flat=True))
    )
