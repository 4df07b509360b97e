"""What search shows stays current through every service that changes it: a listing's fields
and status, its machine's state, its capacity (orders created, funded, ended, holds lapsing) and
its verified figures. Every check reads search over HTTP with the result cache on, so a write
that forgot to invalidate it would show up as a stale page."""

import time

import pytest
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.listings import services as listing_services
from marketplace.listings.models import Listing
from marketplace.orders import services as order_services
from marketplace.providers import services as machine_services
from marketplace.providers.models import Machine
from tests.listings_search.helpers import order

# Real commits: the cache is invalidated when a write commits, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _cache_on(settings):
    settings.SEARCH_CACHE_SECONDS = 60


def shown(anon, listing) -> dict | None:
    """The listing as search shows it, or None when search does not find it."""
    body = anon.get("/api/v1/listings", {"page_size": 100}).json()
    return next((row for row in body["results"] if row["id"] == listing.pk), None)


def test_price_changes_show_on_the_next_search(listing, bob, anon):
    assert shown(anon, listing)["price_per_hour"] == listing.price_per_hour
    listing_services.listing_update_prices(
        listing_id=listing.pk, user=bob, price_per_hour=3_600_000, reserved_prices={"1y": 3600}
    )
    row = shown(anon, listing)
    assert row["price_per_hour"] == 3_600_000
    assert row["reserved_prices"] == {"1y": 3600}


def test_pausing_closing_and_resuming_show_on_the_next_search(listing, bob, anon):
    assert shown(anon, listing) is not None
    listing_services.listing_set_status(listing_id=listing.pk, user=bob, status="paused")
    assert shown(anon, listing) is None
    listing_services.listing_set_status(listing_id=listing.pk, user=bob, status="active")
    assert shown(anon, listing) is not None
    listing_services.listing_set_status(listing_id=listing.pk, user=bob, status="closed")
    assert shown(anon, listing) is None


def test_a_suspended_machine_leaves_search_at_once(listing, anon):
    assert shown(anon, listing) is not None
    machine_services.machine_suspend(machine_id=listing.machine_id, reason="failed verification")
    assert shown(anon, listing) is None


def test_capacity_follows_orders_created_funded_and_ended(listing, alice, carol, anon):
    assert shown(anon, listing)["free_accelerators"] == 8
    held = order(alice, listing, "hold-1", accelerators=3)
    assert shown(anon, listing)["free_accelerators"] == 5
    leased = order(carol, listing, "lease-1", accelerators=2, funded=True)
    assert shown(anon, listing)["free_accelerators"] == 3
    assert [r["id"] for r in anon.get("/api/v1/listings", {"min_free": 4}).json()["results"]] == []
    order_services.order_cancel(order_id=held.pk, user=alice)
    assert shown(anon, listing)["free_accelerators"] == 6
    order_services.order_mark_starting(order_id=leased.pk)
    order_services.order_activate(order_id=leased.pk)
    assert shown(anon, listing)["free_accelerators"] == 6
    order_services.order_complete(order_id=leased.pk)
    assert shown(anon, listing)["free_accelerators"] == 8
    found = anon.get("/api/v1/listings", {"min_free": 4}).json()["results"]
    assert [r["id"] for r in found] == [listing.pk]


def test_a_lapsing_hold_frees_capacity_in_search_with_no_write_at_all(
    listing, alice, anon, settings
):
    """The one change no write announces: the clock passing an unfunded order's hold. A cached
    page lives no longer than the earliest hold it shows."""
    settings.ORDER_UNFUNDED_HOLD_SECONDS = 2
    made = order(alice, listing, "brief-hold", accelerators=8)
    assert shown(anon, listing)["free_accelerators"] == 0
    assert anon.get("/api/v1/listings", {"min_free": 1}).json()["results"] == []
    time.sleep(max(0.0, (made.hold_expires_at - timezone.now()).total_seconds()) + 0.1)
    assert shown(anon, listing)["free_accelerators"] == 8
    assert [r["id"] for r in anon.get("/api/v1/listings", {"min_free": 1}).json()["results"]] == [
        listing.pk
    ]
    # Beat's cancellation of the lapsed order changes nothing search shows.
    order_services.orders_cancel_unfunded()
    assert shown(anon, listing)["free_accelerators"] == 8


def test_verified_figures_follow_verified_jobs_per_precision(listing, anon):
    assert shown(anon, listing)["verified_tflops_by_precision"] == {}
    listing_services.listing_record_verified_tflops(machine_id=listing.machine_id, tflops=400.0)
    row = shown(anon, listing)
    assert row["verified_tflops"] == 400.0
    assert row["price_per_tflop_hour"] == round(listing.price_per_hour * 8 / 400.0)
    # Two of the machine's devices passed; the figure is theirs summed, never one device's
    # figure times the claimed count, and a device that was not verified adds nothing.
    Machine.objects.filter(pk=listing.machine_id).update(
        verified_devices=[{"index": 0, "uuid": "GPU-a"}, {"index": 1, "uuid": "GPU-b"}]
    )

    def verify(device_index: int, tflops: float, seed: str) -> None:
        job = BenchmarkJob.objects.create(
            machine_id=listing.machine_id,
            purpose="periodic",
            state=BenchmarkJob.State.CHALLENGED,
            kind="matmul",
            spec={},
            precision="bf16",
            flops=1,
            seed=seed,
            device_index=device_index,
        )
        # As the verification service writes it: the state change, in one save with its figure.
        job.state, job.measured_tflops = BenchmarkJob.State.VERIFIED, tflops
        job.finished_at = timezone.now()
        job.save(update_fields=["state", "measured_tflops", "finished_at", "updated_at"])

    verify(0, 250.0, "s0")
    assert shown(anon, listing)["verified_tflops_by_precision"] == {"bf16": 250.0}
    verify(1, 240.0, "s1")
    verify(5, 900.0, "s5")
    assert shown(anon, listing)["verified_tflops_by_precision"] == {"bf16": 490.0}
    verify(0, 1760.0, "s0-newer")
    assert shown(anon, listing)["verified_tflops_by_precision"] == {"bf16": 2000.0}
    rejected = BenchmarkJob.objects.create(
        machine_id=listing.machine_id,
        purpose="periodic",
        state=BenchmarkJob.State.REJECTED,
        kind="matmul",
        spec={},
        precision="fp16",
        flops=1,
        seed="t",
        measured_tflops=999.0,
    )
    assert rejected.pk
    assert shown(anon, listing)["verified_tflops_by_precision"] == {"bf16": 2000.0}
    assert Listing.objects.get(pk=listing.pk).verified_tflops_by_precision == {"bf16": 2000.0}
