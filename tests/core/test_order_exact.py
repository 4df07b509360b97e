"""Order creation at exact, hand-computed values (mutation testing, issue 14): the escrow for odd
prices and durations, each bound with its code, every request field in the idempotency
fingerprint, and which interruptible lease a funded order pre-empts. Expected values are worked
out in the comments, not read from the code under test."""

import pytest

from marketplace.core.errors import ApplicationError, ConflictError
from marketplace.listings.models import ReservedPrice
from marketplace.orders import services
from marketplace.orders.models import Order
from tests.factories import ListingFactory
from tests.orders_capacity.conftest import order, running

pytestmark = pytest.mark.django_db
State = Order.State


def create(renter, listing, key, **kw):
    kw.setdefault("pricing_mode", "on_demand")
    kw.setdefault("accelerators", 1)
    if kw["pricing_mode"] != "reserved":
        kw.setdefault("hours", 1)
    return services.order_create(renter=renter, listing_id=listing.pk, idempotency_key=key, **kw)


# --- amounts ----------------------------------------------------------------------------------


def test_on_demand_escrow_for_three_accelerators_for_seven_hours(alice, listing):
    # 2,498,400 units an hour = 694 a second per accelerator; x 3 = 2,082 a second;
    # 7 h = 25,200 s: 2,082 x 25,200 = 52,466,400.
    made, created = create(alice, listing, "exact-0001", accelerators=3, hours=7)
    assert created
    assert (made.price_per_hour, made.rate_per_second) == (2_498_400, 2_082)
    assert (made.duration_seconds, made.escrow_amount) == (25_200, 52_466_400)
    assert (made.accelerators, made.pricing_mode, made.reserved_term) == (3, "on_demand", "")
    assert made.state == State.CREATED


def test_a_legacy_price_that_is_not_per_second_rounds_the_rate_down(alice, bob_provider):
    # Listed before prices had to be multiples of 3,600: 1,000,003 x 3 = 3,000,009 an hour;
    # 3,000,009 // 3,600 = 833 (833 x 3,600 = 2,998,800, 1,209 left over, never billed);
    # 7 h: 833 x 25,200 = 20,991,600.
    odd = ListingFactory(machine__provider=bob_provider, price_per_hour=1_000_003)
    made, _ = create(alice, odd, "exact-0002", accelerators=3, hours=7)
    assert (made.rate_per_second, made.escrow_amount) == (833, 20_991_600)
    assert type(made.rate_per_second) is int and type(made.escrow_amount) is int


def test_interruptible_escrow_is_at_the_bid(alice, listing):
    # bid 1,004,400 = 279 a second; x 5 = 1,395; 3 h = 10,800 s: 15,066,000.
    made, _ = create(
        alice,
        listing,
        "exact-0003",
        pricing_mode="interruptible",
        accelerators=5,
        hours=3,
        bid_per_hour=1_004_400,
    )
    assert (made.price_per_hour, made.rate_per_second) == (1_004_400, 1_395)
    assert (made.duration_seconds, made.escrow_amount) == (10_800, 15_066_000)


def test_reserved_escrow_is_the_whole_term(alice, listing):
    # 30 days = 2,592,000 s; 1,800,000 an hour = 500 a second; x 2 = 1,000 a second.
    ReservedPrice.objects.create(listing=listing, term="1m", price_per_hour=1_800_000)
    made, _ = create(
        alice, listing, "exact-0004", pricing_mode="reserved", accelerators=2, reserved_term="1m"
    )
    assert (made.rate_per_second, made.duration_seconds) == (1_000, 2_592_000)
    assert (made.escrow_amount, made.reserved_term) == (2_592_000_000, "1m")


# --- bounds, each with its code -----------------------------------------------------------------


@pytest.mark.parametrize("hours", [0, 8_785])
def test_hours_outside_one_to_a_leap_year_are_refused(alice, listing, hours):
    with pytest.raises(ApplicationError) as refused:
        create(alice, listing, "exact-0005", hours=hours)
    assert refused.value.code == "orders_bad_duration"
    assert str(refused.value) == "hours must be between 1 and 8784."
    assert not Order.objects.exists()


@pytest.mark.parametrize("hours", [1, 8_784])
def test_one_hour_and_a_leap_year_are_accepted(alice, listing, hours):
    made, created = create(alice, listing, "exact-0006", hours=hours)
    assert created and made.duration_seconds == hours * 3_600


def test_a_bid_at_the_floor_is_taken_one_step_below_is_refused(alice, listing):
    floor = listing.interruptible_floor_per_hour  # 1,000,800
    with pytest.raises(ApplicationError) as refused:
        create(alice, listing, "exact-0007", pricing_mode="interruptible", bid_per_hour=997_200)
    assert refused.value.code == "orders_bid_below_floor"
    assert refused.value.extra == {"floor_per_hour": 1_000_800}
    made, created = create(
        alice, listing, "exact-0008", pricing_mode="interruptible", bid_per_hour=floor
    )
    assert created and made.rate_per_second == 278  # 1,000,800 / 3,600


def test_all_the_listings_accelerators_can_be_ordered_one_more_cannot(alice, listing):
    with pytest.raises(ApplicationError) as refused:
        create(alice, listing, "exact-0009", accelerators=9)
    assert refused.value.code == "orders_too_many_accelerators"
    assert str(refused.value) == "This listing has 8 accelerators; 9 requested."
    made, created = create(alice, listing, "exact-0010", accelerators=8)
    assert created and made.accelerators == 8


# --- idempotency: every field of the request is in the fingerprint --------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"accelerators": 2},
        {"hours": 2},
        {"pricing_mode": "interruptible", "bid_per_hour": 1_000_800},
    ],
)
def test_a_key_reused_for_a_different_request_is_refused(alice, listing, change):
    first, _ = create(alice, listing, "reuse-0001")
    with pytest.raises(ApplicationError) as refused:
        create(alice, listing, "reuse-0001", **change)
    assert (refused.value.code, refused.value.status_code) == ("orders_idempotency_key_reused", 422)
    assert refused.value.extra == {"order_id": first.pk}
    assert Order.objects.count() == 1


def test_a_key_reused_for_the_same_request_on_another_listing_is_refused(
    alice, listing, bob_provider
):
    # Same renter, key, mode, accelerators and hours; only the listing differs. Without the
    # listing in the fingerprint the retry would silently return the order on the first listing.
    other = ListingFactory(machine__provider=bob_provider)
    first, _ = create(alice, listing, "reuse-0002")
    with pytest.raises(ApplicationError) as refused:
        create(alice, other, "reuse-0002")
    assert refused.value.code == "orders_idempotency_key_reused"
    assert refused.value.extra == {"order_id": first.pk}
    assert list(Order.objects.values_list("listing_id", flat=True)) == [listing.pk]


def test_a_reserved_key_reused_for_another_term_is_refused(alice, listing):
    ReservedPrice.objects.create(listing=listing, term="1m", price_per_hour=1_800_000)
    ReservedPrice.objects.create(listing=listing, term="1y", price_per_hour=1_440_000)
    first, _ = create(alice, listing, "reuse-0003", pricing_mode="reserved", reserved_term="1m")
    with pytest.raises(ApplicationError) as refused:
        create(alice, listing, "reuse-0003", pricing_mode="reserved", reserved_term="1y")
    assert refused.value.extra == {"order_id": first.pk}


def test_the_same_request_again_returns_the_first_order(alice, listing):
    first, created = create(alice, listing, "reuse-0004", accelerators=2, hours=3)
    again, created_again = create(alice, listing, "reuse-0004", accelerators=2, hours=3)
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk


# --- pre-emption: which lease goes ----------------------------------------------------------------


def test_funding_preempts_the_lowest_bid_and_among_equal_bids_the_newest(alice, carol, listing):
    # Three 2-accelerator interruptible leases and a 2-accelerator on-demand lease fill the 8.
    # A new 2-accelerator on-demand order needs one lease's worth: the lowest bid goes.
    older = running(
        alice,
        listing,
        "pre-0001",
        accelerators=2,
        pricing_mode="interruptible",
        bid_per_hour=1_000_800,
    )
    newer = running(
        alice,
        listing,
        "pre-0002",
        accelerators=2,
        pricing_mode="interruptible",
        bid_per_hour=1_000_800,
    )
    higher = running(
        alice,
        listing,
        "pre-0003",
        accelerators=2,
        pricing_mode="interruptible",
        bid_per_hour=1_004_400,
    )
    running(alice, listing, "pre-0004", accelerators=2)
    new = order(carol, listing, "pre-carol-1", accelerators=2)
    funded = services.order_mark_funded(order_id=new.pk)
    assert funded.state == State.FUNDED
    states = {o.pk: (o.state, o.end_reason, o.preempted_by_id) for o in Order.objects.all()}
    # Equal bids: the newer lease is pre-empted (it came last), the older one keeps running.
    assert states[newer.pk] == (State.COMPLETED, "preempted", new.pk)
    assert states[older.pk][0] == State.ACTIVE
    assert states[higher.pk][0] == State.ACTIVE


def test_a_bid_one_step_below_the_price_is_preempted_an_equal_one_is_not(alice, carol, listing):
    # The on-demand price is 2,498,400: a lease bidding 2,494,800 (one 3,600 step below) is
    # outbid by it; test_an_equal_bid_is_not_outbid covers the equal bid.
    below = running(
        alice,
        listing,
        "pre-0005",
        accelerators=8,
        pricing_mode="interruptible",
        bid_per_hour=2_494_800,
    )
    new = order(carol, listing, "pre-carol-2", accelerators=1)
    services.order_mark_funded(order_id=new.pk)
    below.refresh_from_db()
    assert (below.state, below.preempted_by_id) == (State.COMPLETED, new.pk)


def test_an_unfunded_order_preempts_nothing_and_is_refused_when_nothing_is_below(
    alice, carol, listing
):
    running(alice, listing, "pre-0006", accelerators=8)
    with pytest.raises(ConflictError) as refused:
        order(carol, listing, "pre-carol-3", accelerators=1)
    assert refused.value.code == "orders_capacity_exhausted"
    assert refused.value.extra == {"requested": 1}
    assert str(refused.value) == "0 accelerators of 8 are free on this listing; 1 requested."
