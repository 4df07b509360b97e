from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import F, IntegerField, Min, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from rest_framework.fields import DateTimeField

from marketplace.accounts.models import User
from marketplace.core.errors import NotFoundError
from marketplace.listings.models import Listing, ReservedPrice

# The columns a search result is built from (`listings_search_rows`), read with values(): a page
# is plain dicts turned straight into JSON, with no model instances and no serializer fields.
SEARCH_COLUMNS = (
    "id",
    "machine_id",
    "provider_id",
    "status",
    "accelerator_kind",
    "vendor",
    "model",
    "accelerator_count",
    "memory_per_accelerator_gb",
    "memory_bandwidth_gbps",
    "interconnect",
    "precisions",
    "vcpu_count",
    "ram_gib",
    "storage_gb",
    "network_gbps",
    "region",
    "description",
    "price_per_hour",
    "interruptible_floor_per_hour",
    "verified_tflops",
    "verified_tflops_by_precision",
    "price_per_tflop_hour",
    "created_at",
)
_DATETIME = DateTimeField()


def _capacity_holders():
    """The orders that hold accelerators right now, as a queryset of the order model.

    Orders sit above listings (accounts < providers < listings < orders), so this module imports
    nothing from them: it reaches the order model through the reverse relation of Order.listing
    and asks it which orders hold capacity (Order.holds_capacity, the same predicate that
    order_create and order_mark_funded decide with, so search never shows a different figure)."""
    order_model = Listing._meta.get_field("orders").related_model
    return order_model.objects.filter(order_model.holds_capacity(now=timezone.now()))


def listings_attach_free_accelerators(listings: list[Listing]) -> list[Listing]:
    """Sets `free_accelerators` on each listing of a page (its accelerators less those held by
    funded and running leases and by unfunded orders inside their hold) with one aggregate
    query for the whole page. After pagination, not as an annotation: the search and its capped
    COUNT then run exactly as before, and the subquery never runs over a thousand counted rows."""
    held = dict(
        _capacity_holders()
        .filter(listing_id__in=[listing.pk for listing in listings])
        .order_by()
        .values("listing_id")
        .annotate(n=Sum("accelerators"))
        .values_list("listing_id", "n")
    )
    for listing in listings:
        listing.free_accelerators = max(0, listing.accelerator_count - held.get(listing.pk, 0))
    return listings


def listings_with_free_at_least(qs: QuerySet[Listing], *, free: int) -> QuerySet[Listing]:
    """The `min_free` search filter: this one needs the figure in SQL, as a correlated subquery
    per candidate row (over the (listing, state) index), so it costs only the searches that ask."""
    held = (
        _capacity_holders()
        .filter(listing=OuterRef("pk"))
        .order_by()
        .values("listing")
        .annotate(n=Sum("accelerators"))
        .values("n")
    )
    return qs.annotate(
        _held=Coalesce(Subquery(held, output_field=IntegerField()), Value(0))
    ).filter(accelerator_count__gte=F("_held") + free)


def listing_search() -> QuerySet[Listing]:
    """Public search: active listings on machines in good standing, cheapest first by default."""
    return Listing.objects.filter(is_searchable=True).order_by("price_per_hour", "id")


def listing_models_matching(fragment: str) -> list[str]:
    """The searchable listings' model names containing `fragment`, ignoring case. The distinct
    names come from a loose index scan (one index probe per distinct name, over the partial
    (model, price) index) instead of reading every row."""
    table = Listing._meta.db_table
    sql = (
        f"WITH RECURSIVE m(model) AS ("  # noqa: S608 - only the table name is formatted in
        f" SELECT MIN(model) FROM {table} WHERE is_searchable"
        f" UNION ALL SELECT ("
        f"  SELECT MIN(model) FROM {table} WHERE is_searchable AND model > m.model"
        f" ) FROM m WHERE m.model IS NOT NULL"
        f") SELECT model FROM m WHERE model IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        names = [row[0] for row in cursor.fetchall()]
    needle = fragment.casefold()
    return [name for name in names if needle in name.casefold()]


def _unfunded_holds():
    order_model = Listing._meta.get_field("orders").related_model
    return order_model.objects.filter(
        state=order_model.State.CREATED, hold_expires_at__gt=timezone.now()
    )


def listings_search_rows(
    rows: list[dict], *, holds_anywhere: bool = False
) -> tuple[list[dict], datetime | None]:
    """A search page as JSON-ready dicts, in ListingOutputSerializer's shape, from rows read with
    SEARCH_COLUMNS: two indexed queries for the whole page (reserved prices, held accelerators).
    Also returns when the page may next change by the clock alone: the earliest expiry of a live
    unfunded hold on it (of any listing, with holds_anywhere: a min_free search, whose matches
    change when any hold lapses), or None."""
    ids = [row["id"] for row in rows]
    reserved: dict[int, dict[str, int]] = defaultdict(dict)
    held: dict[int, int] = {}
    next_change = None
    if ids:
        for listing_id, term, price in ReservedPrice.objects.filter(listing_id__in=ids).values_list(
            "listing_id", "term", "price_per_hour"
        ):
            reserved[listing_id][term] = price
        order_model = Listing._meta.get_field("orders").related_model
        unfunded = Q(state=order_model.State.CREATED)
        for listing_id, n, lapse in (
            _capacity_holders()
            .filter(listing_id__in=ids)
            .order_by()
            .values("listing_id")
            .annotate(n=Sum("accelerators"), lapse=Min("hold_expires_at", filter=unfunded))
            .values_list("listing_id", "n", "lapse")
        ):
            held[listing_id] = n
            if lapse is not None and (next_change is None or lapse < next_change):
                next_change = lapse
    if holds_anywhere:
        next_change = _unfunded_holds().aggregate(at=Min("hold_expires_at"))["at"]
    results = []
    for row in rows:
        out = {key: row[key] for key in SEARCH_COLUMNS}
        out["free_accelerators"] = max(0, row["accelerator_count"] - held.get(row["id"], 0))
        out["precisions"] = [p for p in row["precisions"].split(",") if p]
        out["reserved_prices"] = reserved.get(row["id"], {})
        out["verified_tflops_by_precision"] = row["verified_tflops_by_precision"] or {}
        out["created_at"] = _DATETIME.to_representation(row["created_at"])
        results.append(out)
    return results, next_change


def listing_get_public(*, listing_id: int) -> Listing:
    listing = listing_search().filter(pk=listing_id).first()
    if listing is None:
        raise NotFoundError("No such listing.", code="listings_not_found")
    return listings_attach_free_accelerators([listing])[0]


def listing_verification_public(*, listing: Listing) -> dict[str, Any]:
    """What a renter choosing this listing needs beside its prices: when the machine was last
    verified, each kernel x precision's newest verified figure (per device) with the time of that
    check, and the machine's reputation (pass ratio over recent checks x uptime). Read upward
    from the benchmarks app, as listing_publish reads the verified figures; nothing is written."""
    from marketplace.benchmarks.selectors import machine_benchmark_scores, machine_reputation

    scores = machine_benchmark_scores(machine_id=listing.machine_id)
    checks = [
        {
            "kind": row["kind"],
            "precision": row["precision"],
            "last_tflops_per_device": row["last_tflops"],
            "last_checked_at": row["last_verified_at"],
            "verified_jobs": row["verified_jobs"],
        }
        for row in scores
    ]
    reputation = machine_reputation(machine_id=listing.machine_id)
    return {
        "last_checked_at": max((c["last_checked_at"] for c in checks), default=None),
        "checks": checks,
        "reputation": {
            "pass_ratio": reputation["pass_ratio"],
            "recent_checks": reputation["recent_jobs"],
            "uptime_ratio": reputation["uptime_ratio"],
            "score": reputation["score"],
        },
    }


def listing_list_for_owner(*, user: User) -> QuerySet[Listing]:
    qs = Listing.objects.prefetch_related("reserved_prices").order_by("pk")
    return qs if user.is_staff else qs.filter(provider__owner=user)
