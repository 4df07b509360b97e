from typing import Any

from django.db import transaction

from marketplace.accounts.models import User
from marketplace.core import collateral
from marketplace.core.errors import ApplicationError, ConflictError, NotFoundError
from marketplace.listings import search_cache
from marketplace.listings.models import SECONDS_PER_HOUR, Listing, ReservedPrice
from marketplace.providers import services as provider_services
from marketplace.providers.models import Machine

# Above this an hourly price is a typo, not a market: 1,000,000 USD per accelerator-hour.
MAX_PRICE_PER_HOUR = 10**12


def price_validate(value: Any, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApplicationError(f"{field} must be an integer.", code="listings_bad_price")
    if value <= 0 or value > MAX_PRICE_PER_HOUR:
        raise ApplicationError(
            f"{field} must be between 1 and {MAX_PRICE_PER_HOUR} token units.",
            code="listings_bad_price",
            extra={"field": field},
        )
    if value % SECONDS_PER_HOUR:
        raise ApplicationError(
            f"{field} must be a multiple of {SECONDS_PER_HOUR} token units, so that the "
            "per-second rate billed on chain is a whole number of units.",
            code="listings_price_not_per_second",
            extra={"field": field, "nearest_valid": max(SECONDS_PER_HOUR, value - value % 3600)},
        )
    return value


def _price_per_tflop_hour(listing: Listing) -> int | None:
    if not listing.verified_tflops:
        return None
    return round(listing.price_per_hour * listing.accelerator_count / listing.verified_tflops)


def listing_sync_searchable(*, machine_id: int) -> None:
    """Called whenever a machine's state or a listing's status changes."""
    search_cache.invalidate_on_commit()
    provider_id = (
        Machine.objects.filter(pk=machine_id, state=Machine.State.LISTED)
        .values_list("provider_id", flat=True)
        .first()
    )
    # A listed machine shows only while its provider's free stake covers it (core.collateral).
    machine_listed = provider_id is not None and collateral.covers(provider_id=provider_id)
    Listing.objects.filter(machine_id=machine_id).exclude(status=Listing.Status.ACTIVE).update(
        is_searchable=False
    )
    Listing.objects.filter(machine_id=machine_id, status=Listing.Status.ACTIVE).update(
        is_searchable=machine_listed
    )


def _reserved_prices_replace(listing: Listing, reserved_prices: dict[str, int]) -> None:
    listing.reserved_prices.all().delete()
    ReservedPrice.objects.bulk_create(
        ReservedPrice(
            listing=listing,
            term=term,
            price_per_hour=price_validate(price, field=f"reserved {term}"),
        )
        for term, price in reserved_prices.items()
    )


def _verified_sheet(machine: Machine) -> dict[str, Any]:
    """A listing's hardware columns, copied from what the platform verified on the machine (the
    devices and precisions its onboarding suite passed) and what its agent detected (cores, RAM,
    memory per device). Memory bandwidth is the claimed model's data-sheet figure (0 when the
    model is unknown). Interconnect is not verified: a listing never claims NVLink or
    InfiniBand, only the PCIe every multi-device host has ("none" for a single device)."""
    from marketplace.benchmarks.suites import device_class_for

    device_class = device_class_for(
        accelerator_kind=machine.accelerator_kind, model=machine.accelerator_model
    )
    count = machine.verified_device_count
    cpu = machine.accelerator_kind == Machine.AcceleratorKind.CPU
    return {
        "accelerator_kind": machine.accelerator_kind,
        "vendor": (machine.accelerator_vendor or "unknown")[:50],
        "model": machine.accelerator_model[:100],
        "accelerator_count": count,
        "memory_per_accelerator_gb": machine.ram_gib if cpu else machine.accelerator_memory_gb,
        "memory_bandwidth_gbps": device_class.memory_bandwidth_gbps if device_class else 0,
        "interconnect": "pcie" if count > 1 else "none",
        "precisions": "," + ",".join(sorted(set(machine.verified_precisions))) + ",",
        "vcpu_count": machine.vcpu_count,
        "ram_gib": machine.ram_gib,
    }


@transaction.atomic
def listing_publish(
    *,
    user: User,
    machine_id: int,
    region: str,
    price_per_hour: int,
    interruptible_floor_per_hour: int | None = None,
    reserved_prices: dict[str, int] | None = None,
    storage_gb: int = 0,
    network_gbps: int = 0,
    description: str = "",
) -> Listing:
    """Lists a verified machine. The owner sets only what the platform cannot know: prices,
    region, a description, storage and network; the hardware (kind, model, devices, memory,
    precisions) is copied from the verified machine, so a listing cannot offer a device or a
    precision that did not pass."""
    machine = Machine.objects.select_for_update().filter(pk=machine_id).first()
    if machine is None or (machine.provider.owner_id != user.pk and not user.is_staff):
        raise NotFoundError("No such machine.", code="listings_machine_not_found")
    if machine.state != Machine.State.VERIFIED:
        raise ConflictError(
            f"Only a verified machine can be listed; this one is '{machine.state}'.",
            code="listings_machine_not_verified",
            extra={"machine_state": machine.state},
        )
    if machine.verified_device_count < 1 or not machine.verified_precisions:
        raise ConflictError(
            "This machine has no verified devices on record; it is listed from what its "
            "onboarding benchmarks verified, so it must pass them (again) first.",
            code="listings_machine_not_measured",
        )
    price_validate(price_per_hour, field="price_per_hour")
    if interruptible_floor_per_hour is not None:
        price_validate(interruptible_floor_per_hour, field="interruptible_floor_per_hour")
    # Collateral before capacity: the free stake must cover this machine too (409 otherwise).
    collateral.require(provider_id=machine.provider_id, adding_machine_id=machine.pk)
    sheet = {
        **_verified_sheet(machine),
        "region": region,
        "description": description,
        "storage_gb": storage_gb,
        "network_gbps": network_gbps,
        "price_per_hour": price_per_hour,
        "interruptible_floor_per_hour": interruptible_floor_per_hour,
    }
    from marketplace.benchmarks.selectors import machine_verified_tflops

    # The machine was verified before it could be listed: the listing starts with that figure
    # (later verifications update it through listing_record_verified_tflops).
    listing = Listing(
        machine=machine,
        provider_id=machine.provider_id,
        status=Listing.Status.ACTIVE,
        verified_tflops=machine_verified_tflops(machine_id=machine.pk),
        **sheet,
    )
    listing.price_per_tflop_hour = _price_per_tflop_hour(listing)
    listing.verified_tflops_by_precision = _machine_tflops_by_precision(machine)
    listing.save()
    _reserved_prices_replace(listing, reserved_prices or {})
    search_cache.invalidate_on_commit()
    provider_services.machine_mark_listed(machine_id=machine.pk)
    listing.refresh_from_db()
    return listing


def _listing_lock_for_owner(*, listing_id: int, user: User) -> Listing:
    listing = (
        Listing.objects.select_for_update().select_related("provider").filter(pk=listing_id).first()
    )
    if listing is None or (listing.provider.owner_id != user.pk and not user.is_staff):
        raise NotFoundError("No such listing.", code="listings_not_found")
    return listing


@transaction.atomic
def listing_update_prices(
    *,
    listing_id: int,
    user: User,
    price_per_hour: int | None = None,
    interruptible_floor_per_hour: int | None = None,
    clear_interruptible_floor: bool = False,
    reserved_prices: dict[str, int] | None = None,
) -> Listing:
    listing = _listing_lock_for_owner(listing_id=listing_id, user=user)
    if listing.status == Listing.Status.CLOSED:
        raise ConflictError("A closed listing cannot be repriced.", code="listings_closed")
    if price_per_hour is not None:
        listing.price_per_hour = price_validate(price_per_hour, field="price_per_hour")
    if clear_interruptible_floor:
        listing.interruptible_floor_per_hour = None
    elif interruptible_floor_per_hour is not None:
        listing.interruptible_floor_per_hour = price_validate(
            interruptible_floor_per_hour, field="interruptible_floor_per_hour"
        )
    listing.price_per_tflop_hour = _price_per_tflop_hour(listing)
    listing.save()
    if reserved_prices is not None:
        _reserved_prices_replace(listing, reserved_prices)
    search_cache.invalidate_on_commit()
    return listing


@transaction.atomic
def listing_set_status(*, listing_id: int, user: User, status: str) -> Listing:
    listing = _listing_lock_for_owner(listing_id=listing_id, user=user)
    allowed = {
        Listing.Status.ACTIVE: {Listing.Status.PAUSED, Listing.Status.CLOSED},
        Listing.Status.PAUSED: {Listing.Status.ACTIVE, Listing.Status.CLOSED},
        Listing.Status.CLOSED: set(),
    }
    if status not in allowed[listing.status]:
        raise ConflictError(
            f"Listing {listing.pk} cannot go from '{listing.status}' to '{status}'.",
            code="listings_invalid_transition",
            extra={"current_state": listing.status, "requested_state": status},
        )
    listing.status = status
    listing.save(update_fields=["status", "updated_at"])
    if status == Listing.Status.CLOSED:
        provider_services.machine_mark_unlisted(machine_id=listing.machine_id)
    listing_sync_searchable(machine_id=listing.machine_id)
    listing.refresh_from_db()
    return listing


@transaction.atomic
def listing_record_verified_tflops(*, machine_id: int, tflops: float) -> None:
    """Owned by the benchmarks app: the figure comes only from verified jobs."""
    if not (tflops > 0):
        raise ValueError("verified TFLOP/s must be positive")
    for listing in Listing.objects.select_for_update().filter(machine_id=machine_id).order_by("pk"):
        listing.verified_tflops = tflops
        listing.price_per_tflop_hour = _price_per_tflop_hour(listing)
        listing.save(update_fields=["verified_tflops", "price_per_tflop_hour", "updated_at"])
    search_cache.invalidate_on_commit()


def _machine_tflops_by_precision(machine: Machine) -> dict[str, float]:
    """Whole-machine matmul TFLOP/s per precision: each verified device's newest verified job,
    summed (the onboarding suite ran before the machine could be listed)."""
    from marketplace.benchmarks.selectors import machine_verified_tflops_by_precision

    return machine_verified_tflops_by_precision(machine_id=machine.pk)


@transaction.atomic
def listing_record_precision_tflops(*, machine_id: int) -> None:
    """A verified matmul job changed the machine's per-precision figures: its listings show the
    whole-machine figures again (each verified device's newest job, summed). Called (through
    listings.receivers) in the transaction that verified the job, so the figure and the verdict
    commit together."""
    figures = _machine_tflops_by_precision(Machine(pk=machine_id))
    for listing in Listing.objects.select_for_update().filter(machine_id=machine_id).order_by("pk"):
        if listing.verified_tflops_by_precision == figures:
            continue
        listing.verified_tflops_by_precision = figures
        listing.save(update_fields=["verified_tflops_by_precision", "updated_at"])
    search_cache.invalidate_on_commit()


@transaction.atomic
def listing_follow_verified_machine(*, machine_id: int) -> None:
    """Owned by the benchmarks app: after a (re-)verification the machine's open listings show
    what passed this time: fewer devices lower the count, a precision no longer passed is
    removed."""
    machine = Machine.objects.get(pk=machine_id)
    if machine.verified_device_count < 1:
        return
    sheet = _verified_sheet(machine)
    for listing in (
        Listing.objects.select_for_update()
        .filter(machine_id=machine_id)
        .exclude(status=Listing.Status.CLOSED)
        .order_by("pk")
    ):
        for name, value in sheet.items():
            setattr(listing, name, value)
        listing.price_per_tflop_hour = _price_per_tflop_hour(listing)
        listing.save(update_fields=[*sheet, "price_per_tflop_hour", "updated_at"])
