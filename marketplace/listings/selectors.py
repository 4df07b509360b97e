from django.db.models import QuerySet, Sum

from marketplace.accounts.models import User
from marketplace.core.errors import NotFoundError
from marketplace.listings.models import Listing


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
    return listing


def listing_list_for_owner(*, user: User) -> QuerySet[Listing]:
    qs = Listing.objects.prefetch_related("reserved_prices").order_by("pk")
    return qs if user.is_staff else qs.filter(provider__owner=user)


def listing_accelerators_in_use(*, listing_id: int) -> int:
    from marketplace.orders.models import Order

    used = Order.objects.filter(listing_id=listing_id, state__in=Order.HOLDS_CAPACITY).aggregate(
        n=Sum("accelerators")
    )["n"]
    return used or 0
