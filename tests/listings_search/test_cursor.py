"""Keyset pagination: each row exactly once while rows are added, and a cursor that this API did
not issue for this search is a 400 in the error shape, never a query or a 500."""

import base64
import json
import random

import pytest

from tests.factories import ProviderFactory
from tests.listings_search.conftest import property_seed, random_listing
from tests.listings_search.helpers import walk_cursor, walk_pages

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("sort", ["price", "-price", "tflops", "-price_per_tflop_hour"])
def test_a_cursor_walk_returns_each_row_exactly_once_while_listings_are_added(bob, anon, sort):
    seed = property_seed()
    rng = random.Random(seed)
    provider = ProviderFactory(owner=bob)
    before = [random_listing(rng, provider) for _ in range(30)]
    added = []

    def publish_more(_page: int) -> None:
        # New listings land before, at and after the cursor's position in the order (prices and
        # figures repeat, so some tie with the last row returned).
        added.extend(random_listing(rng, provider) for _ in range(3))

    ids = walk_cursor(anon, {"sort": sort}, page_size=4, between_pages=publish_more)
    context = f"SEARCH_PROPERTY_SEED={seed} sort={sort}"
    assert len(ids) == len(set(ids)), context
    key = {"price": "price_per_hour", "tflops": "verified_tflops"}.get(
        sort.lstrip("-"), "price_per_tflop_hour"
    )
    present = {x.pk for x in before if getattr(x, key) is not None}
    assert present <= set(ids), context
    assert set(ids) <= present | {x.pk for x in added}, context


def test_page_numbers_repeat_or_skip_rows_under_inserts_which_is_why_cursors_exist(bob, anon):
    """The reason for cursors, shown: OFFSET pages shift when a cheaper listing arrives."""
    provider = ProviderFactory(owner=bob)
    rng = random.Random(7)
    for price in (2, 3, 4, 5):
        random_listing(rng, provider, price_per_hour=price * 360_000)
    first = anon.get("/api/v1/listings", {"page_size": 2}).json()
    random_listing(rng, provider, price_per_hour=360_000)
    second = anon.get("/api/v1/listings", {"page_size": 2, "page": 2}).json()
    assert second["results"][0]["id"] == first["results"][1]["id"]  # seen twice
    after = anon.get("/api/v1/listings", {"page_size": 2, "cursor": first["next_cursor"]}).json()
    assert not {r["id"] for r in after["results"]} & {r["id"] for r in first["results"]}
    assert len(after["results"]) == 2


def _cursor(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


BAD_CURSORS = {
    "garbage": "%%%not-base64%%%",
    "not json": base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    "empty": "",
    "a list": _cursor([1, 2]),
    "another sort": _cursor({"k": ["verified_tflops", "id"], "v": [1.0, 1]}),
    "reversed sort": _cursor({"k": ["-price_per_hour", "-id"], "v": [1, 1]}),
    "too few values": _cursor({"k": ["price_per_hour", "id"], "v": [1]}),
    "a string value": _cursor({"k": ["price_per_hour", "id"], "v": ["1; DROP TABLE", 1]}),
    "a boolean": _cursor({"k": ["price_per_hour", "id"], "v": [True, 1]}),
    "a null": _cursor({"k": ["price_per_hour", "id"], "v": [None, 1]}),
    "NaN": base64.urlsafe_b64encode(b'{"k":["price_per_hour","id"],"v":[NaN,1]}').decode(),
    "huge": _cursor({"k": ["price_per_hour", "id"], "v": [10**30, 1]}),
    "too long": "A" * 5000,
    "not ascii": "€€€",
    "nested": _cursor({"k": ["price_per_hour", "id"], "v": [[[1]], 1]}),
}


@pytest.mark.parametrize("name", BAD_CURSORS)
def test_a_bad_cursor_is_a_400_in_the_error_shape(listing, anon, name):
    response = anon.get("/api/v1/listings", {"cursor": BAD_CURSORS[name]})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "detail"}
    assert "cursor" in error["detail"]


def test_page_and_cursor_together_is_a_400(listing, anon):
    cursor = anon.get("/api/v1/listings", {"page_size": 1}).json()["next_cursor"]
    assert cursor is None  # one listing: no next page
    response = anon.get("/api/v1/listings", {"cursor": _cursor({}), "page": 2})
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["detail"]


def test_a_cursor_from_one_sort_is_refused_by_another(bob, anon):
    provider = ProviderFactory(owner=bob)
    rng = random.Random(3)
    for _ in range(3):
        random_listing(rng, provider, verified_tflops=50.0, price_per_tflop_hour=100)
    cursor = anon.get("/api/v1/listings", {"page_size": 1, "sort": "price"}).json()["next_cursor"]
    assert anon.get("/api/v1/listings", {"cursor": cursor, "sort": "price"}).status_code == 200
    assert anon.get("/api/v1/listings", {"cursor": cursor, "sort": "-price"}).status_code == 400
    assert anon.get("/api/v1/listings", {"cursor": cursor, "sort": "tflops"}).status_code == 400


def test_the_owner_list_pages_by_cursor_too(bob, bob_provider):
    from tests.conftest import client_for

    rng = random.Random(5)
    mine = {random_listing(rng, bob_provider).pk for _ in range(5)}
    client = client_for(bob)
    ids, cursor = [], None
    while True:
        query = {"page_size": 2, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/listings/mine", query).json()
        ids += [r["id"] for r in body["results"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert ids == sorted(mine)
    assert walk_pages  # page-number walking is covered by the reference test
