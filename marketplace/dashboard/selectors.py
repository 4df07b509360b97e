"""Reads for the market dashboard. Every query aggregates in the database and is bounded: by a
time window, by a LIMIT, or by the small number of states, kinds and precisions."""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import NO_FAULT_REASONS
from marketplace.core.errors import NotFoundError
from marketplace.dashboard.models import MarketSnapshot
from marketplace.listings.models import Listing
from marketplace.orders.models import Order
from marketplace.providers.models import Machine

Job = BenchmarkJob.State
DECIDED = (Job.VERIFIED, Job.REJECTED, Job.EXPIRED)
# Machines that answer heartbeats and are not barred: what "online" means on the dashboard.
REACHABLE_STATES = (Machine.State.REGISTERED, Machine.State.VERIFIED, Machine.State.LISTED)
MAX_MODELS = 12
MAX_SNAPSHOTS = 2016  # a week of 5-minute snapshots; a longer window would be downsampled
MAX_MACHINE_JOBS = 300
MAX_REJECTIONS = 50


def _escrowed_orders():
    # Funded on chain and not yet settled: the money is in the escrow contract, whatever the
    # lease's state (a completed or cancelled lease keeps it there until settlement confirms).
    return Order.objects.filter(funded_at__isnull=False).exclude(state=Order.State.SETTLED)


def market_now(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    by_state = dict(
        Machine.objects.values_list("state").annotate(n=Count("pk")).values_list("state", "n")
    )
    alive_since = now - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
    online = Machine.objects.filter(
        state__in=REACHABLE_STATES, last_heartbeat_at__gte=alive_since
    ).count()
    escrow = _escrowed_orders().aggregate(amount=Sum("escrow_amount"), orders=Count("pk"))
    return {
        "machines_by_state": by_state,
        "machines_total": sum(by_state.values()),
        "machines_online": online,
        "escrow_amount": int(escrow["amount"] or 0),
        "escrow_orders": escrow["orders"],
    }


def price_per_tflop_by_model(*, limit: int = MAX_MODELS) -> list[dict[str, Any]]:
    """Min, median and max of price per verified TFLOP-hour (token units) over searchable
    listings, per accelerator model; the `limit` models with the most listings."""
    priced = Listing.objects.filter(is_searchable=True, price_per_tflop_hour__isnull=False)
    rows = list(
        priced.values("model")
        .annotate(
            listings=Count("pk"),
            low=Min("price_per_tflop_hour"),
            high=Max("price_per_tflop_hour"),
        )
        .order_by("-listings", "model")[:limit]
    )
    for row in rows:
        # No portable MEDIAN aggregate (SQLite has none): read the middle one or two values by
        # OFFSET, so at most two rows per model leave the database.
        count = row["listings"]
        middle = list(
            priced.filter(model=row["model"])
            .order_by("price_per_tflop_hour")
            .values_list("price_per_tflop_hour", flat=True)[(count - 1) // 2 : count // 2 + 1]
        )
        row["median"] = round(sum(middle) / len(middle))
    rows.sort(key=lambda r: (r["median"], r["model"]))
    return rows


def market_snapshots(*, days: int = 7, now: datetime | None = None) -> list[MarketSnapshot]:
    now = now or timezone.now()
    recent = MarketSnapshot.objects.filter(taken_at__gte=now - timedelta(days=days))
    # The newest MAX_SNAPSHOTS, returned oldest first for drawing.
    return list(reversed(recent.order_by("-taken_at")[:MAX_SNAPSHOTS]))


def _decided_jobs(since: datetime):
    # Jobs that ended for reasons that are not the machine's fault (its suite failed elsewhere,
    # it was never dispatched) say nothing about honesty; reputation leaves them out too.
    return BenchmarkJob.objects.filter(state__in=DECIDED, finished_at__gte=since).exclude(
        outcome_reason__in=NO_FAULT_REASONS
    )


def _with_ratio(row: dict[str, Any]) -> dict[str, Any]:
    decided = row["verified"] + row["rejected"] + row["expired"]
    row["decided"] = decided
    row["ratio"] = row["verified"] / decided if decided else None
    return row


_OUTCOMES = {
    "verified": Count("pk", filter=Q(state=Job.VERIFIED)),
    "rejected": Count("pk", filter=Q(state=Job.REJECTED)),
    "expired": Count("pk", filter=Q(state=Job.EXPIRED)),
}


def pass_ratio_by_kind_precision(
    *, days: int = 30, now: datetime | None = None
) -> list[dict[str, Any]]:
    now = now or timezone.now()
    rows = (
        _decided_jobs(now - timedelta(days=days))
        .values("kind", "precision")
        .annotate(**_OUTCOMES)
        .order_by("kind", "precision")
    )
    return [_with_ratio(dict(row)) for row in rows]


def pass_ratio_by_day(*, days: int = 14, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or timezone.now()
    rows = (
        _decided_jobs(now - timedelta(days=days))
        .annotate(day=TruncDay("finished_at"))
        .values("day")
        .annotate(**_OUTCOMES)
        .order_by("day")
    )
    return [_with_ratio(dict(row)) for row in rows]


def machines_for_dashboard(*, limit: int = 50) -> list[dict[str, Any]]:
    """Machines with the most decided jobs, for links to their benchmark history."""
    return list(
        Machine.objects.annotate(
            decided=Count("benchmark_jobs", filter=Q(benchmark_jobs__state__in=DECIDED)),
            rejected=Count("benchmark_jobs", filter=Q(benchmark_jobs__state=Job.REJECTED)),
        )
        .order_by("-decided", "pk")
        .values(
            "pk",
            "name",
            "state",
            "accelerator_model",
            "accelerator_count",
            "provider__name",
            "decided",
            "rejected",
        )[:limit]
    )


def machine_benchmark_history(*, machine_id: int) -> dict[str, Any]:
    machine = Machine.objects.select_related("provider").filter(pk=machine_id).first()
    if machine is None:
        raise NotFoundError("No such machine.", code="dashboard_machine_not_found")
    jobs = list(
        BenchmarkJob.objects.filter(machine_id=machine_id, state__in=DECIDED)
        .order_by("-finished_at", "-pk")
        .values(
            "pk",
            "kind",
            "precision",
            "state",
            "purpose",
            "finished_at",
            "measured_tflops",
            "outcome_reason",
            "outcome_detail",
        )[:MAX_MACHINE_JOBS]
    )
    jobs.reverse()
    rejections = (
        BenchmarkJob.objects.filter(machine_id=machine_id, state__in=(Job.REJECTED, Job.EXPIRED))
        .values("outcome_reason")
        .annotate(n=Count("pk"), last=Max("finished_at"))
        .order_by("-n", "outcome_reason")
    )
    return {
        "machine": machine,
        "jobs": jobs,
        "rejection_reasons": list(rejections),
        "recent_failures": [j for j in reversed(jobs) if j["state"] != Job.VERIFIED][
            :MAX_REJECTIONS
        ],
    }
