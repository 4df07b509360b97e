"""order_create's refusals word for word, for the mutants the orders scope's other tests let
through (mutation testing, issue 14): the renter's caps on unfunded orders, each pricing-mode
refusal, the listing and accelerator checks, a reused Idempotency-Key. Each refusal's message,
code, status and detail are written out by hand."""

import hashlib

import pytest

from marketplace.core.errors import (
    ApplicationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.listings.models import Listing, ReservedPrice
from marketplace.orders import services
from marketplace.orders.models import Order
from tests.factories import ListingFactory
from tests.orders_capacity.conftest import order

pytestmark = pytest.mark.django_db


def refused(renter, listing, key, exc=ApplicationError, **kw):
    kw.setdefault("pricing_mode", "on_demand")
    kw.setdefault("accelerators", 1)
    with pytest.raises(exc) as caught:
        services.order_create(renter=renter, listing_id=listing.pk, idempotency_key=key, **kw)
    return caught.value


# --- the caps on unfunded orders ---------------------------------------------------------------


def test_a_fourth_unfunded_order_is_refused_naming_the_three_held(alice, bob_provider):
    listings = [ListingFactory(machine__provider=bob_provider) for _ in range(4)]
    held = [order(alice, lst, f"cap-{i:04d}", accelerators=2) for i, lst in enumerate(listings[:3])]
    error = refused(alice, listings[3], "cap-0003", ConflictError, hours=1)
    a, b, c = (o.pk for o in held)
    assert error.message == (
        "You may hold at most 3 unfunded orders and 64 unfunded accelerators at once; "
        f"fund or cancel one of orders {a}, {b}, {c} first."
    )
    assert (error.code, error.status_code) == ("orders_too_many_unfunded", 409)
    assert error.extra == {
        "unfunded_orders": [a, b, c],
        "unfunded_accelerators": 6,
        "max_unfunded_orders": 3,
        "max_unfunded_accelerators": 64,
    }


def test_with_a_cap_of_one_the_refusal_names_the_one_order(alice, bob_provider, settings):
    settings.ORDER_MAX_UNFUNDED_PER_RENTER = 1
    settings.ORDER_MAX_UNFUNDED_ACCELERATORS = 1
    first, second = (ListingFactory(machine__provider=bob_provider) for _ in range(2))
    held = order(alice, first, "cap-0010", accelerators=1)
    error = refused(alice, second, "cap-0011", ConflictError, hours=1)
    assert error.message == (
        "You may hold at most 1 unfunded order and 1 unfunded accelerator at once; "
        f"fund or cancel order {held.pk} first."
    )
    assert error.extra["unfunded_orders"] == [held.pk]
    assert error.extra["unfunded_accelerators"] == 1


def test_the_order_cap_counts_the_new_order_too(alice, bob_provider, settings):
    # Cap 2: with one held, a second is allowed (1 + 1 = 2), a third is not (2 + 1 > 2).
    settings.ORDER_MAX_UNFUNDED_PER_RENTER = 2
    listings = [ListingFactory(machine__provider=bob_provider) for _ in range(3)]
    order(alice, listings[0], "cap-0020", accelerators=1)
    order(alice, listings[1], "cap-0021", accelerators=1)
    error = refused(alice, listings[2], "cap-0022", ConflictError, hours=1)
    assert error.code == "orders_too_many_unfunded"
    assert Order.objects.count() == 2


def test_the_accelerator_cap_counts_held_and_new_accelerators(alice, bob_provider, settings):
    # Cap 10 accelerators: 6 held, 4 more reach 10 exactly (allowed); 5 would be 11.
    settings.ORDER_MAX_UNFUNDED_ACCELERATORS = 10
    first, second, third = (ListingFactory(machine__provider=bob_provider) for _ in range(3))
    order(alice, first, "cap-0030", accelerators=6)
    error = refused(alice, second, "cap-0031", ConflictError, accelerators=5, hours=1)
    assert error.extra["unfunded_accelerators"] == 6
    order(alice, third, "cap-0032", accelerators=4)


def test_another_renters_unfunded_orders_do_not_count(alice, carol, bob_provider, settings):
    settings.ORDER_MAX_UNFUNDED_PER_RENTER = 1
    first, second = (ListingFactory(machine__provider=bob_provider) for _ in range(2))
    order(carol, first, "cap-0040", accelerators=1)
    assert order(alice, second, "cap-0041", accelerators=1).renter == alice


# --- pricing modes -----------------------------------------------------------------------------


def test_a_reserved_order_with_hours_is_refused(alice, listing):
    ReservedPrice.objects.create(listing=listing, term="1m", price_per_hour=1_800_000)
    error = refused(
        alice, listing, "mode-0001", pricing_mode="reserved", reserved_term="1m", hours=3
    )
    assert error.message == (
        "A reserved order gives reserved_term and neither hours nor bid_per_hour."
    )
    assert (error.code, error.status_code) == ("orders_bad_pricing", 400)


def test_a_reserved_order_with_a_bid_or_no_term_is_refused(alice, listing):
    ReservedPrice.objects.create(listing=listing, term="1m", price_per_hour=1_800_000)
    with_bid = refused(
        alice, listing, "mode-0002", pricing_mode="reserved", reserved_term="1m", bid_per_hour=3600
    )
    no_term = refused(alice, listing, "mode-0003", pricing_mode="reserved")
    assert with_bid.code == no_term.code == "orders_bad_pricing"


def test_a_term_the_listing_does_not_offer_is_named(alice, listing):
    ReservedPrice.objects.create(listing=listing, term="1m", price_per_hour=1_800_000)
    error = refused(alice, listing, "mode-0004", pricing_mode="reserved", reserved_term="1y")
    assert error.message == "This listing offers no reserved term '1y'."
    assert error.code == "orders_term_not_offered"


def test_the_term_offered_on_another_listing_does_not_count(alice, listing, bob_provider):
    other = ListingFactory(machine__provider=bob_provider)
    ReservedPrice.objects.create(listing=other, term="1m", price_per_hour=1_800_000)
    error = refused(alice, listing, "mode-0005", pricing_mode="reserved", reserved_term="1m")
    assert error.code == "orders_term_not_offered"


@pytest.mark.parametrize("mode", ["on_demand", "interruptible"])
def test_an_hourly_order_with_a_term_or_without_hours_is_refused(alice, listing, mode):
    bid = {"bid_per_hour": 1_000_800} if mode == "interruptible" else {}
    with_term = refused(
        alice, listing, "mode-0010", pricing_mode=mode, hours=2, reserved_term="1m", **bid
    )
    no_hours = refused(alice, listing, "mode-0011", pricing_mode=mode, **bid)
    for error in (with_term, no_hours):
        assert error.message == f"An {mode} order gives hours and no reserved_term."
        assert error.code == "orders_bad_pricing"


def test_an_on_demand_order_with_a_bid_is_refused(alice, listing):
    error = refused(alice, listing, "mode-0020", hours=2, bid_per_hour=1_000_800)
    assert error.message == "bid_per_hour is only for interruptible orders."
    assert error.code == "orders_bad_pricing"


def test_a_listing_without_a_floor_takes_no_bids(alice, bob_provider):
    plain = ListingFactory(machine__provider=bob_provider, interruptible_floor_per_hour=None)
    error = refused(
        alice, plain, "mode-0030", pricing_mode="interruptible", hours=2, bid_per_hour=1_000_800
    )
    assert error.message == "This listing takes no interruptible bids."
    assert error.code == "orders_interruptible_not_offered"


def test_an_interruptible_order_without_a_bid_is_refused(alice, listing):
    error = refused(alice, listing, "mode-0031", pricing_mode="interruptible", hours=2)
    assert error.message == "An interruptible order gives bid_per_hour."
    assert error.code == "orders_bad_pricing"


def test_a_bid_below_the_floor_names_the_floor(alice, listing):
    error = refused(
        alice, listing, "mode-0032", pricing_mode="interruptible", hours=2, bid_per_hour=997_200
    )
    assert error.message == "The bid is below the listing's floor of 1000800."


def test_a_bid_that_is_not_a_whole_rate_per_second_is_refused(alice, listing):
    error = refused(
        alice, listing, "mode-0033", pricing_mode="interruptible", hours=2, bid_per_hour=1_000_801
    )
    assert error.code == "listings_price_not_per_second"
    assert error.extra == {"field": "bid_per_hour", "nearest_valid": 1_000_800}


# --- who, which listing, how much --------------------------------------------------------------


def test_a_provider_owner_may_not_order(bob, listing):
    error = refused(bob, listing, "who-0001", PermissionDeniedError, hours=1)
    assert error.message == "Only renters can order."
    assert (error.code, error.status_code) == ("orders_not_renter", 403)


def test_staff_may_order(staff, listing):
    made = order(staff, listing, "who-0002", accelerators=1, hours=1)  # asserts it was created
    assert made.renter == staff


def test_a_listing_taken_off_the_search_is_not_found(alice, listing):
    Listing.objects.filter(pk=listing.pk).update(is_searchable=False, status="paused")
    error = refused(alice, listing, "who-0003", NotFoundError, hours=1)
    assert error.message == "No such listing open for orders."
    assert (error.code, error.status_code) == ("orders_listing_not_found", 404)


def test_a_lease_above_one_billion_usd_is_refused(alice, bob_provider):
    # 36,000,000,000 units an hour = 10,000,000 a second per accelerator; x 8 = 80,000,000 a
    # second; a leap year of hours, 8,784 h = 31,622,400 s: 2,529,792,000,000,000 > 10^15.
    dear = ListingFactory(machine__provider=bob_provider, price_per_hour=36_000_000_000)
    error = refused(alice, dear, "much-0001", accelerators=8, hours=8_784)
    assert error.message == (
        "The lease would cost 2529792000000000 units, above the 1000000000000000 limit for one "
        "order."
    )
    assert error.code == "orders_amount_too_large"
    assert not Order.objects.exists()


def test_a_dear_lease_under_the_limit_is_accepted(alice, bob_provider):
    # 3,600,000,000 an hour = 1,000,000 a second; 8,784 h = 31,622,400 s:
    # 31,622,400,000,000 <= 10^15, accepted.
    listing = ListingFactory(machine__provider=bob_provider, price_per_hour=3_600_000_000)
    made = order(alice, listing, "much-0002", accelerators=1, hours=8_784)
    assert made.escrow_amount == 31_622_400_000_000


# --- a reused key ------------------------------------------------------------------------------


def test_a_key_reused_for_another_request_says_so(alice, listing):
    first = order(alice, listing, "key-0001", accelerators=1, hours=1)
    error = refused(alice, listing, "key-0001", hours=2)
    assert error.message == "This Idempotency-Key was already used for a different order request."
    assert (error.code, error.status_code) == ("orders_idempotency_key_reused", 422)
    assert error.extra == {"order_id": first.pk}


def test_the_same_key_from_another_renter_is_a_new_order(alice, carol, listing):
    mine = order(alice, listing, "key-0002", accelerators=1, hours=1)
    theirs = order(carol, listing, "key-0002", accelerators=1, hours=1)  # created, not mine
    assert theirs.pk != mine.pk


# --- capacity, in words ------------------------------------------------------------------------


def test_one_free_accelerator_is_free_in_the_singular(alice, carol, listing):
    order(alice, listing, "room-0001", accelerators=7)
    error = refused(carol, listing, "room-0002", ConflictError, accelerators=2, hours=1)
    assert error.message == "1 accelerator of 8 is free on this listing; 2 requested."
    assert (error.code, error.extra) == ("orders_capacity_exhausted", {"requested": 2})


def test_two_free_accelerators_are_free_in_the_plural(alice, carol, listing):
    order(alice, listing, "room-0003", accelerators=6)
    error = refused(carol, listing, "room-0004", ConflictError, accelerators=3, hours=1)
    assert error.message == "2 accelerators of 8 are free on this listing; 3 requested."


def test_the_request_fingerprint_is_the_sha256_of_the_sorted_request(alice, listing):
    # Stored with the order and compared on every retry, so it must not depend on the order in
    # which the code lists the fields: canonical JSON, keys sorted, written out here.
    made = order(alice, listing, "print-0001", accelerators=2, hours=3)
    canonical = (
        '{"accelerators": 2, "bid_per_hour": null, "hours": 3, '
        f'"listing_id": {listing.pk}, "pricing_mode": "on_demand", "reserved_term": null}}'
    )
    assert made.request_fingerprint == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_listing_hidden_for_want_of_stake_says_so_not_not_found(alice, listing, settings):
    # Active, on a listed machine, but out of search because bob's stake (none) no longer covers
    # it: the refusal is the collateral one, naming the shortfall, not a 404.
    settings.COLLATERAL_ENFORCED = True
    Listing.objects.filter(pk=listing.pk).update(is_searchable=False)
    error = refused(alice, listing, "hide-0001", ConflictError, hours=1)
    assert (error.code, error.status_code) == ("collateral_insufficient", 409)


def test_a_retry_after_the_listing_left_the_search_returns_the_first_order(alice, listing):
    first = order(alice, listing, "hide-0002", accelerators=1, hours=1)
    Listing.objects.filter(pk=listing.pk).update(is_searchable=False, status="paused")
    again, created = services.order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=1,
        hours=1,
        idempotency_key="hide-0002",
    )
    assert (again.pk, created) == (first.pk, False)


# --- what order_create asks of the collateral check --------------------------------------------


@pytest.fixture
def collateral_asked(monkeypatch):
    """The questions order_create puts to payments' collateral check (registered at app ready;
    the test settings leave it off): recorded, each answered 'covered'."""
    from marketplace.core import collateral

    asked = []
    monkeypatch.setattr(collateral, "_require", lambda **question: asked.append(question))
    return asked


def test_the_lease_lock_is_checked_against_the_providers_stake(alice, listing, collateral_asked):
    # 3 accelerators for 7 h at 694 a second each: 2,082 a second x 25,200 s = 52,466,400.
    order(alice, listing, "stake-0001", accelerators=3, hours=7)
    assert collateral_asked == [
        {
            "provider_id": listing.provider_id,
            "adding_machine_id": None,
            "adding_lease": {
                "escrow_amount": 52_466_400,
                "accelerators": 3,
                "duration_seconds": 25_200,
            },
            "excluding_order_id": None,
        }
    ]


def test_a_hidden_listing_asks_about_its_own_provider(alice, bob_provider, collateral_asked):
    # Another provider's open listing first, and a listing whose id is not its provider's, so
    # that asking about the wrong listing or the wrong provider shows.
    ListingFactory()
    hidden = ListingFactory(machine__provider=bob_provider)
    while hidden.pk == bob_provider.pk:
        hidden = ListingFactory(machine__provider=bob_provider)
    Listing.objects.filter(pk=hidden.pk).update(is_searchable=False)
    refused(alice, hidden, "stake-0002", NotFoundError, hours=1)
    assert collateral_asked == [
        {
            "provider_id": bob_provider.pk,
            "adding_machine_id": None,
            "adding_lease": None,
            "excluding_order_id": None,
        }
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"status": "paused"},
        {"machine_state": "offline"},
    ],
)
def test_a_paused_listing_or_one_on_an_unlisted_machine_is_just_not_found(
    alice, listing, collateral_asked, change
):
    Listing.objects.filter(pk=listing.pk).update(
        is_searchable=False, status=change.get("status", "active")
    )
    if "machine_state" in change:
        listing.machine.__class__.objects.filter(pk=listing.machine_id).update(
            state=change["machine_state"]
        )
    error = refused(alice, listing, "stake-0003", NotFoundError, hours=1)
    assert error.code == "orders_listing_not_found"
    assert collateral_asked == []
