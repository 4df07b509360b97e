from django.db.models import F, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.core.errors import NotFoundError
from marketplace.listings.models import Listing


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
    return (
        Listing.objects.filter(is_searchable=True)
        .prefetch_related("reserved_prices")
        .order_by("price_per_hour", "id")
    )


def listing_get_public(*, listing_id: int) -> Listing:
    listing = listing_search().filter(pk=listing_id).first()
    if listing is None:
        raise NotFoundError("No such listing.", code="listings_not_found")
    return listings_attach_free_accelerators([listing])[0]


def listing_list_for_owner(*, user: User) -> QuerySet[Listing]:
    qs = Listing.objects.prefetch_related("reserved_prices").order_by("pk")
    return qs if user.is_staff else qs.filter(provider__owner=user)
