from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.dashboard.selectors import pass_ratio_by_kind_precision, price_per_tflop_by_model
from marketplace.listings.services import listing_record_verified_tflops
from tests.factories import ListingFactory, MachineFactory

pytestmark = pytest.mark.django_db


def _listing(model: str, price_per_tflop_hour_target: int):
    # 8 accelerators at 360_000/h = 2_880_000 per machine-hour; TFLOP/s picks the ratio.
    listing = ListingFactory(model=model, price_per_hour=360_000)
    listing_record_verified_tflops(
        machine_id=listing.machine_id, tflops=2_880_000 / price_per_tflop_hour_target
    )
    return listing


def test_median_min_max_per_model_odd_and_even_counts():
    for target in (1000, 4000, 2000):
        _listing("A", target)
    for target in (100, 300, 200, 900):
        _listing("B", target)
    _listing("C", 50).machine  # noqa: B018
    unverified = ListingFactory(model="C")  # no verified TFLOP/s: not priced
    assert unverified.price_per_tflop_hour is None

    rows = {r["model"]: r for r in price_per_tflop_by_model()}
    assert (rows["A"]["low"], rows["A"]["median"], rows["A"]["high"]) == (1000, 2000, 4000)
    assert (rows["B"]["low"], rows["B"]["median"], rows["B"]["high"]) == (100, 250, 900)
    assert rows["C"]["listings"] == 1 and rows["C"]["median"] == 50


def test_price_chart_is_bounded_to_the_models_with_most_listings():
    for i in range(5):
        for _ in range(i + 1):
            _listing(f"M{i}", 1000 + i)
    assert [r["model"] for r in price_per_tflop_by_model(limit=2)] == ["M3", "M4"]


def test_pass_ratio_leaves_out_no_fault_endings_and_old_jobs():
    machine = MachineFactory()
    now = timezone.now()

    def job(state, reason="", age_days=1, precision="fp32"):
        return BenchmarkJob.objects.create(
            machine=machine,
            purpose="periodic",
            kind="matmul",
            spec={},
            precision=precision,
            flops=1,
            seed="s",
            state=state,
            outcome_reason=reason,
            finished_at=now - timedelta(days=age_days),
        )

    job("verified")
    job("verified")
    job("rejected", "freivalds_failed")
    job("expired", "suite_failed")  # another job's failure ended it: not this machine's fault
    job("rejected", "row_mismatch", age_days=40)  # outside the 30-day window
    job("verified", precision="bf16")
    rows = pass_ratio_by_kind_precision(now=now)
    assert [(r["precision"], r["verified"], r["decided"]) for r in rows] == [
        ("bf16", 1, 1),
        ("fp32", 2, 3),
    ]
    assert rows[1]["ratio"] == pytest.approx(2 / 3)
