"""The squatting attack: a renter who signs up, orders every listing and never pays must not
keep anyone else from renting, and must never end someone's paid lease."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from marketplace.core.errors import ConflictError
from marketplace.orders import services
from marketplace.orders.models import Order
from tests.api.helpers import assert_error
from tests.conftest import client_for
from tests.orders_capacity.conftest import let_hold_expire, order, running

pytestmark = pytest.mark.django_db
State = Order.State


def _post(client, listing, key, accelerators=8):
    return client.post(
        "/api/v1/orders",
        {
            "listing_id": listing.pk,
            "pricing_mode": "on_demand",
            "accelerators": accelerators,
            "hours": 2,
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_a_squatter_ordering_every_listing_is_stopped_and_a_paying_renter_still_rents(
    mallet, alice, market
):
    squatter = client_for(mallet)
    answers = [_post(squatter, listing, f"squat-{i:04d}") for i, listing in enumerate(market)]

    assert [a.status_code for a in answers] == [201, 201, 201, 409]
    error = assert_error(answers[3], 409, "orders_too_many_unfunded")
    assert error["detail"]["unfunded_orders"] == [a.json()["id"] for a in answers[:3]]
    assert error["detail"]["max_unfunded_orders"] == 3
    assert Order.objects.filter(renter=mallet).count() == 3  # the refusal wrote nothing

    alices = _post(client_for(alice), market[3], "alice-0001")
    assert alices.status_code == 201
    funded = services.order_mark_funded(order_id=alices.json()["id"])
    assert funded.state == State.FUNDED


def test_the_cap_counts_unfunded_accelerators_too(mallet, market, settings):
    settings.ORDER_MAX_UNFUNDED_ACCELERATORS = 12
    order(mallet, market[0], "squat-acc-1", accelerators=8)
    with pytest.raises(ConflictError) as refused:
        order(mallet, market[1], "squat-acc-2", accelerators=8)
    assert refused.value.code == "orders_too_many_unfunded"
    assert refused.value.extra["unfunded_accelerators"] == 8
    order(mallet, market[1], "squat-acc-3", accelerators=4)  # 12: at the cap, not over it


def test_a_funded_or_expired_order_does_not_count_against_the_cap(alice, market):
    first = order(alice, market[0], "cap-0001", accelerators=1)
    order(alice, market[1], "cap-0002", accelerators=1)
    stale = order(alice, market[2], "cap-0003", accelerators=1)
    services.order_mark_funded(order_id=first.pk)
    let_hold_expire(stale)
    order(alice, market[3], "cap-0004", accelerators=1)
    order(alice, market[3], "cap-0005", accelerators=1)
    with pytest.raises(ConflictError) as refused:
        order(alice, market[3], "cap-0006", accelerators=1)
    assert refused.value.code == "orders_too_many_unfunded"


def test_a_retry_at_the_cap_still_returns_the_first_order(mallet, market):
    squatter = client_for(mallet)
    first = [_post(squatter, listing, f"retry-{i:04d}") for i, listing in enumerate(market[:3])]
    again = _post(squatter, market[0], "retry-0000")
    assert again.status_code == 200 and again.json()["id"] == first[0].json()["id"]


def test_an_unfunded_order_never_preempts_a_funded_interruptible_lease(alice, mallet, market):
    listing = market[0]
    lease = running(
        alice,
        listing,
        "alice-bid-1",
        pricing_mode="interruptible",
        bid_per_hour=listing.interruptible_floor_per_hour,
    )

    # mallet outbids alice with an on-demand order, and never pays for it.
    squat = order(mallet, listing, "squat-bid-1")

    lease.refresh_from_db()
    assert lease.state == State.ACTIVE and lease.end_reason == ""
    let_hold_expire(squat)
    assert services.orders_cancel_unfunded() == [squat.pk]
    lease.refresh_from_db()
    assert lease.state == State.ACTIVE
    squat.refresh_from_db()
    assert squat.state == State.CANCELLED and squat.end_reason == "not funded in time"


def test_an_expired_hold_frees_its_accelerators_before_beat_runs(alice, mallet, market):
    listing = market[0]
    squat = order(mallet, listing, "squat-exp-1")
    with pytest.raises(ConflictError) as refused:
        order(alice, listing, "alice-exp-1", accelerators=1)
    assert refused.value.code == "orders_capacity_exhausted"

    let_hold_expire(squat)

    alices = order(alice, listing, "alice-exp-2")
    assert alices.state == State.CREATED
    squat.refresh_from_db()
    assert squat.state == State.CREATED  # beat has not run; the expired hold counts for nothing


def test_beat_cancels_only_expired_holds(alice, mallet, market):
    expired = order(mallet, market[0], "beat-0001")
    live = order(mallet, market[1], "beat-0002")
    funded = order(alice, market[2], "beat-0003")
    services.order_mark_funded(order_id=funded.pk)
    Order.objects.filter(pk=funded.pk).update(hold_expires_at=timezone.now())
    let_hold_expire(expired)

    assert services.orders_cancel_unfunded() == [expired.pk]
    states = dict(Order.objects.values_list("pk", "state"))
    assert states == {expired.pk: State.CANCELLED, live.pk: State.CREATED, funded.pk: State.FUNDED}


def test_an_order_shows_how_long_it_holds_its_accelerators(alice, market, settings):
    settings.ORDER_UNFUNDED_HOLD_SECONDS = 600
    hold = timedelta(seconds=600)
    before = timezone.now()
    body = _post(client_for(alice), market[0], "deadline-1").json()
    after = timezone.now()
    deadline = Order.objects.get(pk=body["id"]).hold_expires_at
    assert before + hold <= deadline <= after + hold
    assert parse_datetime(body["hold_expires_at"]) == deadline
