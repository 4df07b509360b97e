"""Writes that follow from collateral (marketplace/payments/collateral.py): a provider whose free
stake no longer covers its listed machines leaves search until it stakes again, and comes back
when it does. Called when its stake changes (the indexer's replay), when one of its machines is
rejected (the rejection raises its requirement), and by beat for locks that expire with time."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q

from marketplace.listings.models import Listing
from marketplace.listings.services import listing_sync_searchable
from marketplace.providers.models import Machine


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
    end DISPUTE_WINDOW after a lease, with no event to react to; a few queries per provider."""
    provider_ids = set(
        Machine.objects.filter(state=Machine.State.LISTED).values_list("provider_id", flat=True)
    ) | set(
        Listing.objects.filter(Q(is_searchable=True) | Q(status=Listing.Status.ACTIVE))
        .values_list("provider_id", flat=True)
        .distinct()
    )
    return providers_sync_searchable(provider_ids=provider_ids)
