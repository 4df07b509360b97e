"""Search shows how many accelerators an order can get right now, with the same rule that
order_create decides by, at one query per page."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketplace.core.errors import ConflictError
from marketplace.orders import services
from tests.conftest import client_for
from tests.factories import ListingFactory
from tests.orders_capacity.conftest import let_hold_expire, order, running

pytestmark = pytest.mark.django_db


def _free_in_search(client, **params) -> dict[int, int]:
    body = client.get("/api/v1/listings", params).json()
    return {row["id"]: row["free_accelerators"] for row in body["results"]}


def test_search_and_detail_count_leases_and_live_holds_but_not_expired_or_ended_ones(
    anon, alice, carol, mallet, market
):
    a, b, c, d = market
    running(alice, a, "free-0001", accelerators=3)
    order(carol, a, "free-0002", accelerators=2)  # a live hold
    let_hold_expire(order(mallet, b, "free-0003", accelerators=8))
    ended = running(alice, c, "free-0004", accelerators=5)
    services.order_complete(order_id=ended.pk)
    funded = order(carol, d, "free-0005", accelerators=1)
    services.order_mark_funded(order_id=funded.pk)

    assert _free_in_search(anon) == {a.pk: 3, b.pk: 8, c.pk: 8, d.pk: 7}
    assert anon.get(f"/api/v1/listings/{a.pk}").json()["free_accelerators"] == 3


def test_the_figure_shown_is_what_an_order_can_get(anon, alice, carol, listing):
    running(alice, listing, "shown-0001", accelerators=3)
    order(alice, listing, "shown-0002", accelerators=2)
    free = anon.get(f"/api/v1/listings/{listing.pk}").json()["free_accelerators"]
    with pytest.raises(ConflictError):
        order(carol, listing, "shown-0003", accelerators=free + 1)
    order(carol, listing, "shown-0004", accelerators=free)
    assert anon.get(f"/api/v1/listings/{listing.pk}").json()["free_accelerators"] == 0


def test_min_free_keeps_listings_with_that_many_free(anon, alice, market):
    a, b, *_ = market
    running(alice, a, "minfree-1", accelerators=6)
    order(alice, b, "minfree-2", accelerators=1)
    found = _free_in_search(anon, min_free=7)
    assert a.pk not in found and found[b.pk] == 7
    assert set(_free_in_search(anon, min_free=2)) == {listing.pk for listing in market}


def test_a_providers_own_listings_show_free_accelerators(bob, alice, listing):
    running(alice, listing, "mine-0001", accelerators=5)
    body = client_for(bob).get("/api/v1/listings/mine").json()
    assert [row["free_accelerators"] for row in body["results"]] == [3]


def test_free_accelerators_cost_one_query_per_page_not_one_per_listing(
    anon, alice, bob_provider, market
):
    for i, listing in enumerate(market):
        running(alice, listing, f"page-{i:04d}", accelerators=1)

    def queries_for_a_page():
        with CaptureQueriesContext(connection) as captured:
            body = anon.get("/api/v1/listings").json()
        assert {row["free_accelerators"] for row in body["results"]} <= {7, 8}
        return len(captured)

    four = queries_for_a_page()
    for _ in range(8):
        ListingFactory(machine__provider=bob_provider)
    assert queries_for_a_page() == four
