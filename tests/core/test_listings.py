import pytest

from marketplace.listings.models import Listing
from marketplace.listings.services import listing_record_verified_tflops
from marketplace.providers.models import Machine
from tests.conftest import client_for
from tests.factories import ListingFactory, MachineFactory

pytestmark = pytest.mark.django_db

# What the owner types; the hardware comes from the verified machine.
SHEET = {
    "storage_gb": 8000,
    "network_gbps": 100,
    "region": "us-east",
    "price_per_hour": 1_800_000,
    "interruptible_floor_per_hour": 720_000,
    "reserved_prices": {"1m": 1_440_000, "1y": 1_080_000},
}


def test_a_verified_machine_is_published_and_found_in_search(bob, bob_provider, anon):
    machine = MachineFactory(provider=bob_provider, state=Machine.State.VERIFIED)
    response = client_for(bob).post(
        "/api/v1/listings", {**SHEET, "machine_id": machine.pk}, format="json"
    )
    assert response.status_code == 201, response.json()
    listing = response.json()
    assert listing["reserved_prices"] == {"1m": 1_440_000, "1y": 1_080_000}
    machine.refresh_from_db()
    assert machine.state == Machine.State.LISTED
    found = anon.get("/api/v1/listings").json()["results"]
    assert [item["id"] for item in found] == [listing["id"]]


def test_the_owner_describes_the_listing_in_words_renters_read_back(bob, bob_provider, anon):
    machine = MachineFactory(provider=bob_provider, state=Machine.State.VERIFIED)
    words = "  Quiet rack in Lyon <b>not html</b>; ask for longer terms.  "
    response = client_for(bob).post(
        "/api/v1/listings", {**SHEET, "machine_id": machine.pk, "description": words}, format="json"
    )
    assert response.status_code == 201, response.json()
    listing_id = response.json()["id"]
    expected = words.strip()
    assert anon.get(f"/api/v1/listings/{listing_id}").json()["description"] == expected
    [found] = anon.get("/api/v1/listings").json()["results"]
    assert found["description"] == expected


@pytest.mark.parametrize("description", ["x" * 2001, 42, ["a"], {"a": 1}, None])
def test_a_description_that_is_not_short_text_is_refused_and_nothing_listed(
    bob, bob_provider, description
):
    machine = MachineFactory(provider=bob_provider, state=Machine.State.VERIFIED)
    response = client_for(bob).post(
        "/api/v1/listings",
        {**SHEET, "machine_id": machine.pk, "description": description},
        format="json",
    )
    assert response.status_code == 400, response.json()
    assert "description" in response.json()["error"]["detail"]
    assert not Listing.objects.exists()
    machine.refresh_from_db()
    assert machine.state == Machine.State.VERIFIED


@pytest.mark.parametrize("state", ["registered", "suspended", "offline", "listed"])
def test_only_a_verified_machine_can_be_listed(bob, bob_provider, state):
    machine = MachineFactory(provider=bob_provider, state=state)
    response = client_for(bob).post(
        "/api/v1/listings", {**SHEET, "machine_id": machine.pk}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "listings_machine_not_verified"
    assert not Listing.objects.exists()


def test_a_price_off_the_per_second_grid_is_refused_with_the_nearest_valid_one(bob, bob_provider):
    machine = MachineFactory(provider=bob_provider)
    response = client_for(bob).post(
        "/api/v1/listings",
        {**SHEET, "machine_id": machine.pk, "price_per_hour": 2_500_000},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "listings_price_not_per_second"
    assert error["detail"]["nearest_valid"] == 2_498_400
    assert not Listing.objects.exists()
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.VERIFIED


def test_another_owners_machine_cannot_be_listed(mallory, bob_provider):
    machine = MachineFactory(provider=bob_provider)
    response = client_for(mallory).post(
        "/api/v1/listings", {**SHEET, "machine_id": machine.pk}, format="json"
    )
    assert response.status_code == 404


def test_listing_detail_shows_what_was_checked_when_and_the_machines_reputation(bob_provider, anon):
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.benchmarks.models import BenchmarkJob, MachineUptime

    listing = ListingFactory(provider=bob_provider)
    detail = anon.get(f"/api/v1/listings/{listing.pk}").json()
    assert detail["verification"] == {
        "last_checked_at": None,
        "checks": [],
        "reputation": {
            "pass_ratio": None,
            "recent_checks": 0,
            "uptime_ratio": None,
            "score": None,
        },
    }
    now = timezone.now().replace(microsecond=0)

    def job(state, precision, tflops, finished_at, seed):
        return BenchmarkJob.objects.create(
            machine_id=listing.machine_id,
            purpose="periodic",
            state=state,
            kind="matmul",
            spec={},
            precision=precision,
            flops=1,
            seed=seed,
            measured_tflops=tflops,
            finished_at=finished_at,
        )

    job("verified", "fp32", 60.0, now - timedelta(hours=2), "a")
    job("verified", "fp32", 61.5, now - timedelta(minutes=5), "b")
    job("verified", "bf16", 400.0, now - timedelta(hours=1), "c")
    job("rejected", "bf16", 9999.0, now, "d")
    MachineUptime.objects.create(machine_id=listing.machine_id, samples=10, online_samples=9)

    verification = anon.get(f"/api/v1/listings/{listing.pk}").json()["verification"]
    checks = {c["precision"]: c for c in verification["checks"]}
    assert checks["fp32"]["last_tflops_per_device"] == 61.5
    assert checks["fp32"]["verified_jobs"] == 2
    assert checks["bf16"]["last_tflops_per_device"] == 400.0
    assert checks["fp32"]["last_checked_at"] == (now - timedelta(minutes=5)).isoformat().replace(
        "+00:00", "Z"
    )
    assert verification["last_checked_at"] == checks["fp32"]["last_checked_at"]
    # 3 passed of 4 decided checks; 9 of 10 samples online.
    assert verification["reputation"] == {
        "pass_ratio": 0.75,
        "recent_checks": 4,
        "uptime_ratio": 0.9,
        "score": 0.75 * 0.9,
    }


def test_repricing_keeps_price_per_tflop_hour_in_step(bob, bob_provider):
    listing = ListingFactory(machine__provider=bob_provider, accelerator_count=8)
    listing_record_verified_tflops(machine_id=listing.machine_id, tflops=400.0)
    listing.refresh_from_db()
    assert listing.price_per_tflop_hour == round(listing.price_per_hour * 8 / 400)
    response = client_for(bob).patch(
        f"/api/v1/listings/{listing.pk}/prices", {"price_per_hour": 3_600_000}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["price_per_tflop_hour"] == 3_600_000 * 8 // 400


@pytest.fixture
def market(bob_provider):
    """Four listings that differ on every searchable axis."""
    rows = [
        dict(
            model="H100 80GB HBM3",
            accelerator_count=8,
            memory_per_accelerator_gb=80,
            price_per_hour=3_600_000,
            region="eu-west",
            interconnect="nvlink",
            precisions=",bf16,fp16,fp32,fp8,",
            verified_tflops=400.0,
        ),
        dict(
            model="A100 40GB",
            accelerator_count=4,
            memory_per_accelerator_gb=40,
            price_per_hour=1_440_000,
            region="us-east",
            interconnect="pcie",
            precisions=",bf16,fp16,fp32,",
            verified_tflops=70.0,
        ),
        dict(
            model="L4",
            accelerator_count=1,
            memory_per_accelerator_gb=24,
            price_per_hour=360_000,
            region="us-east",
            interconnect="pcie",
            precisions=",fp16,fp32,int8,",
            verified_tflops=None,
        ),
        dict(
            model="Trainium",
            accelerator_kind="inference_asic",
            accelerator_count=16,
            memory_per_accelerator_gb=32,
            price_per_hour=720_000,
            region="ap-south",
            interconnect="neuronlink",
            precisions=",bf16,fp32,",
            verified_tflops=190.0,
        ),
    ]
    listings = {}
    for row in rows:
        tflops = row.pop("verified_tflops")
        listing = ListingFactory(machine__provider=bob_provider, **row)
        if tflops:
            listing_record_verified_tflops(machine_id=listing.machine_id, tflops=tflops)
        listings[row["model"]] = listing
    ListingFactory(machine__provider=bob_provider, model="hidden", is_searchable=False)
    return listings


def search(anon, query: str) -> list[str]:
    response = anon.get(f"/api/v1/listings?{query}")
    assert response.status_code == 200, response.json()
    return [item["model"] for item in response.json()["results"]]


@pytest.mark.parametrize(
    "query,expected",
    [
        ("", ["L4", "Trainium", "A100 40GB", "H100 80GB HBM3"]),
        ("kind=inference_asic", ["Trainium"]),
        ("model=a100", ["A100 40GB"]),
        ("min_count=8", ["Trainium", "H100 80GB HBM3"]),
        ("min_memory=40", ["A100 40GB", "H100 80GB HBM3"]),
        ("max_price=1440000", ["L4", "Trainium", "A100 40GB"]),
        ("region=US-EAST", ["L4", "A100 40GB"]),
        ("interconnect=pcie", ["L4", "A100 40GB"]),
        ("precision=int8", ["L4"]),
        ("precision=bf16&min_tflops=100", ["Trainium", "H100 80GB HBM3"]),
        ("sort=-price", ["H100 80GB HBM3", "A100 40GB", "Trainium", "L4"]),
        ("sort=-tflops", ["H100 80GB HBM3", "Trainium", "A100 40GB"]),
        ("sort=tflops", ["A100 40GB", "Trainium", "H100 80GB HBM3"]),
        # 720000*16/190 = 60632; 3600000*8/400 = 72000; 1440000*4/70 = 82286
        ("sort=price_per_tflop_hour", ["Trainium", "H100 80GB HBM3", "A100 40GB"]),
    ],
)
def test_search_filters_and_sorts(anon, market, query, expected):
    assert search(anon, query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "kind=quantum",
        "interconnect=smoke-signals",
        "precision=fp4",
        "sort=random",
        "min_count=-1",
        "min_count=abc",
        "max_price=1e400",
        "page=0",
        "page_size=x",
    ],
)
def test_search_rejects_bad_filters_with_400(anon, market, query):
    response = anon.get(f"/api/v1/listings?{query}")
    assert response.status_code in (400, 404)
    assert "error" in response.json()


def test_search_is_paginated(anon, market):
    page = anon.get("/api/v1/listings?page_size=3").json()
    assert page["count"] == 4
    assert len(page["results"]) == 3
    assert page["next"] is not None


def test_search_count_is_capped_and_says_so(anon, bob_provider, monkeypatch):
    from marketplace.core.pagination import CappedCountPagination

    monkeypatch.setattr(CappedCountPagination, "COUNT_CAP", 3)
    for _ in range(5):
        ListingFactory(machine__provider=bob_provider)
    page = anon.get("/api/v1/listings?page_size=2").json()
    assert page["count"] == 3 and page["count_is_exact"] is False
    assert len(page["results"]) == 2
    second = anon.get("/api/v1/listings?page_size=2&page=2").json()
    assert len(second["results"]) == 2 and second["next"] is not None
    exact = anon.get("/api/v1/listings?page_size=2&model=nothing-like-this").json()
    assert exact["count"] == 0 and exact["count_is_exact"] is True
