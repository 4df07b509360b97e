"""One formatter for money and time, with examples worked out by hand: the token has 6 decimals,
so 1 unit = 1 micro-USD, and an amount is shown exactly, never rounded."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from marketplace.core import display
from marketplace.orders.models import Order
from marketplace.orders.services import order_create
from tests.factories import ListingFactory
from tests.payments.helpers import make_order


@pytest.mark.parametrize(
    "units,text",
    [
        (2_498_400, "$2.4984"),  # a listing's price per accelerator-hour
        (694, "$0.000694"),  # a rate per second: rounding to cents would show $0.00
        (1, "$0.000001"),
        (0, "$0.00"),
        (7_200_000, "$7.20"),
        (123_456_789_000, "$123,456.789"),
        (-1_500_000, "-$1.50"),
        (None, "–"),
    ],
)
def test_usd_is_exact_to_the_unit(units, text):
    assert display.usd(units) == text


def test_money_names_the_unit_and_shows_raw_units_beside_it():
    assert (
        display.money(2_498_400, "accelerator-hour")
        == "$2.4984 per accelerator-hour (2,498,400 units)"
    )
    assert display.money(25_914) == "$0.025914 (25,914 units)"


def test_rounded_usd_for_chart_labels():
    assert display.usd(123_456_789_000, 2) == "$123,456.79"


def test_times_to_the_second_in_utc():
    moment = datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)
    assert display.timestamp(moment) == "2026-03-01 12:00:07 UTC"
    # A chain time (Unix seconds), as a stake's unlock time is kept.
    assert display.timestamp(1_772_366_407) == "2026-03-01 12:00:07 UTC"
    assert display.timestamp(0) == "–"


def test_durations_in_seconds_with_a_reading():
    assert display.duration(1_234) == "1,234 s (0 h 20 min 34 s)"
    assert display.duration(90_061) == "90,061 s (1 day 1 h 1 min 1 s)"


@pytest.mark.django_db
def test_order_page_shows_money_in_usd_and_times_to_the_second(
    operator_client, alice, bob_provider, no_chain_receivers
):
    # 2,498,400 units per accelerator-hour = 694 per accelerator-second; 2 accelerators for
    # 4 hours escrow 2 × 4 × 2,498,400 = 19,987,200 units = $19.9872.
    listing = ListingFactory(machine__provider=bob_provider, price_per_hour=2_498_400)
    order, _ = order_create(
        renter=alice,
        listing_id=listing.pk,
        pricing_mode="on_demand",
        accelerators=2,
        hours=4,
        idempotency_key="fmt",
    )
    Order.objects.filter(pk=order.pk).update(created_at=datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC))
    page = operator_client.get(reverse("admin:orders_order_change", args=[order.pk])).content
    page = page.decode()
    assert "$19.9872 (19,987,200 units)" in page
    assert "$0.001388 per second (1,388 units)" in page  # 2 × 694
    assert "$2.4984 per accelerator-hour (2,498,400 units)" in page
    assert "14,400 s (4 h 0 min 0 s)" in page
    assert "2026-03-01 12:00:07 UTC" in page

    listing_page = operator_client.get(reverse("admin:orders_order_changelist")).content.decode()
    assert "$19.9872 (19,987,200 units)" in listing_page


@pytest.mark.django_db
def test_listing_list_shows_the_price_in_usd_per_accelerator_hour(operator_client, bob_provider):
    ListingFactory(machine__provider=bob_provider, price_per_hour=860_400)
    page = operator_client.get(reverse("admin:listings_listing_changelist")).content.decode()
    assert "$0.8604 per accelerator-hour (860,400 units)" in page


@pytest.mark.django_db
def test_money_column_of_an_unset_amount_is_a_dash(
    operator_client, alice, bob_provider, no_chain_receivers
):
    order = make_order(renter=alice, listing=ListingFactory(machine__provider=bob_provider))
    assert order.amount_owed is None
    page = operator_client.get(reverse("admin:orders_order_change", args=[order.pk])).content
    assert "Amount owed (USD)" in page.decode()
