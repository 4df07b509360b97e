from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from marketplace.orders import services as order_services
from marketplace.orders.models import Order


def order(renter, listing, key: str, *, accelerators: int, funded: bool = False) -> Order:
    made, created = order_services.order_create(
        renter=renter,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=accelerators,
        idempotency_key=key,
        hours=2,
    )
    assert created
    if funded:
        made = order_services.order_mark_funded(order_id=made.pk)
    return made


def let_hold_expire(made: Order) -> None:
    Order.objects.filter(pk=made.pk).update(hold_expires_at=timezone.now() - timedelta(seconds=1))


def walk_pages(client, params: dict, *, page_size: int) -> tuple[list[int], dict]:
    """Every id that page-number pagination returns, in order, and the first page's body."""
    ids, page, first = [], 1, None
    while True:
        response = client.get("/api/v1/listings", {**params, "page_size": page_size, "page": page})
        assert response.status_code == 200, response.content
        body = response.json()
        first = first or body
        ids += [row["id"] for row in body["results"]]
        if body["next"] is None:
            return ids, first
        page += 1


def walk_cursor(client, params: dict, *, page_size: int, between_pages=None) -> list[int]:
    """Every id that cursor pagination returns, in order; between_pages(n) runs after page n."""
    ids, cursor, n = [], None, 0
    while True:
        query = {**params, "page_size": page_size}
        if cursor is not None:
            query["cursor"] = cursor
        response = client.get("/api/v1/listings", query)
        assert response.status_code == 200, response.content
        body = response.json()
        ids += [row["id"] for row in body["results"]]
        cursor = body["next_cursor"]
        assert (cursor is None) == (body["next"] is None)
        if cursor is None:
            return ids
        n += 1
        if between_pages is not None:
            between_pages(n)
