"""Search returns exactly what a naive reference computes, across random filter and sort
combinations, with page numbers and with cursors. Property-style: the seed is printed (run with
-s) and repeated in every failure; SEARCH_PROPERTY_SEED=<n> replays it. Runs on SQLite, and on
PostgreSQL when DATABASE_URL points at it."""

import random

import pytest

from marketplace.listings import selectors
from marketplace.listings.models import Listing
from marketplace.listings.serializers import ListingOutputSerializer
from tests.factories import ProviderFactory
from tests.listings_search.conftest import (
    property_seed,
    random_listing,
    random_params,
    reference_search,
)
from tests.listings_search.helpers import let_hold_expire, order, walk_cursor, walk_pages

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(bob, alice, carol):
    seed = property_seed()
    rng = random.Random(seed)
    provider = ProviderFactory(owner=bob)
    listings = [random_listing(rng, provider) for _ in range(60)]
    busy = [x for x in listings if x.accelerator_count >= 4 and x.pk % 2][:6]
    idle = [x for x in listings if x not in busy]
    for listing in rng.sample(idle, 6):
        Listing.objects.filter(pk=listing.pk).update(status="paused", is_searchable=False)
    # Capacity in every state search must tell apart: funded leases and live holds count,
    # an expired hold does not.
    for i, listing in enumerate(busy[:3]):
        half = listing.accelerator_count // 2
        order(carol, listing, f"funded-{i}", accelerators=half, funded=True)
    for i, listing in enumerate(busy[3:5]):
        order(alice, listing, f"held-{i}", accelerators=listing.accelerator_count - 1)
    for listing in busy[5:]:
        let_hold_expire(order(alice, listing, "lapsed", accelerators=listing.accelerator_count))
    return seed, rng


def test_search_equals_the_reference_across_random_filter_and_sort_mixes(market, anon):
    seed, rng = market
    for _ in range(40):
        params = random_params(rng)
        expected = reference_search(params)
        page_size = rng.randint(1, 9)
        by_page, first = walk_pages(anon, params, page_size=page_size)
        by_cursor = walk_cursor(anon, params, page_size=page_size)
        context = f"SEARCH_PROPERTY_SEED={seed} params={params} page_size={page_size}"
        assert by_page == expected, context
        assert by_cursor == expected, context
        assert first["count"] == len(expected) and first["count_is_exact"], context


def test_every_search_row_is_what_the_listing_serializer_shows(market, anon):
    seed, _ = market
    rows = walk_pages(anon, {}, page_size=100)[1]["results"]
    assert rows
    for row in rows:
        listing = Listing.objects.get(pk=row["id"])
        assert row == dict(ListingOutputSerializer(listing).data), f"SEARCH_PROPERTY_SEED={seed}"


def test_the_model_filter_matches_any_part_of_a_name_in_any_case(market):
    assert selectors.listing_models_matching("h100") == ["H100 80GB HBM3"]
    assert selectors.listing_models_matching("A100") == ["A100 40GB", "A100 80GB"]
    assert selectors.listing_models_matching("nothing-like-it") == []


@pytest.mark.parametrize("sort", ["price", "-price", "tflops", "-price_per_tflop_hour"])
@pytest.mark.parametrize("fragment", ["a100", "40"])  # two names each: read apart and merged
def test_a_model_fragment_that_matches_several_names_pages_in_order(market, anon, sort, fragment):
    seed, _ = market
    params = {"model": fragment, "sort": sort}
    expected = reference_search(params)
    assert len(selectors.listing_models_matching(fragment)) == 2
    context = f"SEARCH_PROPERTY_SEED={seed}"
    assert walk_pages(anon, params, page_size=3)[0] == expected, context
    assert walk_cursor(anon, params, page_size=3) == expected, context
