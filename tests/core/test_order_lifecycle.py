from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.core.errors import ApplicationError, ConflictError, InvalidTransition
from marketplace.listings.models import ReservedPrice
from marketplace.orders import selectors, services
from marketplace.orders.models import Order
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
State = Order.State


def make_order(alice, listing, *, key="key-0001", accelerators=2, hours=3, **kw):
    kw.setdefault("pricing_mode", "on_demand")
    order, created = services.order_create(
        renter=alice,
        listing_id=listing.pk,
        accelerators=accelerators,
        hours=hours if kw["pricing_mode"] != "reserved" else None,
        idempotency_key=key,
        **kw,
    )
    assert created
    return order


def drive_to(order: Order, state: str) -> Order:
    """Walks an order along the allowed path to `state` with the real services."""
    path = {
        State.CREATED: [],
        State.FUNDED: [services.order_mark_funded],
        State.STARTING: [services.order_mark_funded, services.order_mark_starting],
        State.ACTIVE: [
            services.order_mark_funded,
            services.order_mark_starting,
            services.order_activate,
        ],
        State.COMPLETED: [
            services.order_mark_funded,
            services.order_mark_starting,
            services.order_activate,
            services.order_complete,
        ],
        State.CANCELLED: [lambda order_id: services.order_cancel(order_id=order_id)],
        State.FAILED: [
            services.order_mark_funded,
            services.order_mark_starting,
            services.order_activate,
            lambda order_id: services.order_fail(order_id=order_id, reason="machine offline"),
        ],
        State.SETTLED: [
            services.order_mark_funded,
            services.order_mark_starting,
            services.order_activate,
            services.order_complete,
            services.order_mark_settled,
        ],
    }[state]
    for step in path:
        step(order_id=order.pk)
    order.refresh_from_db()
    assert order.state == state
    return order


TRANSITION_CALLS = {
    State.FUNDED: lambda pk: services.order_mark_funded(order_id=pk),
    State.STARTING: lambda pk: services.order_mark_starting(order_id=pk),
    State.ACTIVE: lambda pk: services.order_activate(order_id=pk),
    State.COMPLETED: lambda pk: services.order_complete(order_id=pk),
    State.CANCELLED: lambda pk: services.order_cancel(order_id=pk),
    State.FAILED: lambda pk: services.order_fail(order_id=pk, reason="test"),
    State.SETTLED: lambda pk: services.order_mark_settled(order_id=pk),
}

ALL_PAIRS = [(src, dst) for src in State.values for dst in TRANSITION_CALLS]


# The order state machine, written out by hand (not read from the code under test, so a changed
# ORDER_TRANSITIONS fails here): what each state may move to.
ALLOWED = {
    State.CREATED: {State.FUNDED, State.CANCELLED},
    State.FUNDED: {State.STARTING, State.CANCELLED},
    State.STARTING: {State.ACTIVE, State.CANCELLED},
    State.ACTIVE: {State.COMPLETED, State.FAILED},
    State.COMPLETED: {State.SETTLED},
    State.CANCELLED: {State.SETTLED},
    State.FAILED: {State.SETTLED},
    State.SETTLED: set(),
}


@pytest.mark.parametrize("source,target", ALL_PAIRS)
def test_order_transition_is_allowed_exactly_when_the_state_machine_says(
    alice, listing, source, target
):
    order = drive_to(make_order(alice, listing), source)
    if target in ALLOWED[source]:
        TRANSITION_CALLS[target](order.pk)
        order.refresh_from_db()
        assert order.state == target
    else:
        with pytest.raises(InvalidTransition) as refused:
            TRANSITION_CALLS[target](order.pk)
        assert refused.value.status_code == 409
        order.refresh_from_db()
        assert order.state == source


def test_refused_transition_is_a_409_with_current_and_requested_state(alice, listing):
    order = drive_to(make_order(alice, listing), State.CREATED)
    response = client_for(alice).post(f"/api/v1/orders/{order.pk}/stop")
    assert response.status_code == 409
    body = response.json()["error"]
    assert body["code"] == "order_invalid_transition"
    assert body["detail"] == {"current_state": "created", "requested_state": "completed"}


def test_on_demand_escrow_is_rate_times_duration_in_token_units(alice, listing):
    order = make_order(alice, listing, accelerators=2, hours=3)
    assert order.rate_per_second == listing.price_per_hour * 2 // 3600
    assert order.escrow_amount == order.rate_per_second * 3 * 3600
    assert order.lease_id.startswith("0x") and len(order.lease_id) == 66


def test_metering_bills_each_second_and_refunds_the_rest(alice, listing):
    order = drive_to(make_order(alice, listing), State.ACTIVE)
    Order.objects.filter(pk=order.pk).update(started_at=timezone.now() - timedelta(seconds=125))
    order = services.order_complete(order_id=order.pk, reason="stopped_by_renter")
    assert order.billable_seconds in (125, 126)
    assert order.amount_owed == order.billable_seconds * order.rate_per_second
    assert order.refund_amount == order.escrow_amount - order.amount_owed


def test_metering_never_bills_past_the_paid_duration(alice, listing):
    order = drive_to(make_order(alice, listing, hours=1), State.ACTIVE)
    Order.objects.filter(pk=order.pk).update(started_at=timezone.now() - timedelta(hours=5))
    assert services.orders_complete_elapsed() == [order.pk]
    order.refresh_from_db()
    assert order.state == State.COMPLETED
    assert order.billable_seconds == 3600
    assert order.amount_owed == order.escrow_amount


def test_a_failed_lease_pays_only_the_seconds_it_ran(alice, listing):
    order = drive_to(make_order(alice, listing, hours=2), State.ACTIVE)
    Order.objects.filter(pk=order.pk).update(started_at=timezone.now() - timedelta(seconds=600))
    order = services.order_fail(order_id=order.pk, reason="failed re-verification")
    assert 600 <= order.billable_seconds <= 601
    assert (
        order.refund_amount == order.escrow_amount - order.billable_seconds * order.rate_per_second
    )


def test_a_reserved_term_is_owed_in_full_when_the_renter_stops_early(alice, listing):
    ReservedPrice.objects.create(listing=listing, term="1m", price_per_hour=1_800_000)
    order = make_order(alice, listing, pricing_mode="reserved", reserved_term="1m")
    assert order.duration_seconds == 30 * 86400
    drive_to(order, State.ACTIVE)
    order = services.order_stop_by_renter(order_id=order.pk, user=alice)
    assert order.amount_owed == order.escrow_amount


def test_reserved_order_refuses_a_term_the_listing_does_not_offer(alice, listing):
    with pytest.raises(ApplicationError) as refused:
        make_order(alice, listing, pricing_mode="reserved", reserved_term="3y")
    assert refused.value.code == "orders_term_not_offered"


def test_interruptible_bid_below_the_floor_is_refused(alice, listing):
    with pytest.raises(ApplicationError) as refused:
        make_order(alice, listing, pricing_mode="interruptible", bid_per_hour=3600)
    assert refused.value.code == "orders_bid_below_floor"


def test_a_higher_bid_preempts_the_lowest_interruptible_lease_once_it_is_funded(
    alice, carol, listing
):
    floor = listing.interruptible_floor_per_hour
    low = make_order(
        alice,
        listing,
        key="low-bid-1",
        accelerators=4,
        pricing_mode="interruptible",
        bid_per_hour=floor,
    )
    mid = make_order(
        alice,
        listing,
        key="mid-bid-1",
        accelerators=4,
        pricing_mode="interruptible",
        bid_per_hour=floor + 3600,
    )
    drive_to(low, State.ACTIVE)
    high = make_order(
        carol,
        listing,
        key="high-bid-1",
        accelerators=4,
        pricing_mode="interruptible",
        bid_per_hour=floor + 7200,
    )
    low.refresh_from_db()
    assert low.state == State.ACTIVE  # an unfunded order pre-empts nothing

    high = services.order_mark_funded(order_id=high.pk)

    low.refresh_from_db()
    mid.refresh_from_db()
    assert high.state == State.FUNDED
    assert low.state == State.COMPLETED and low.end_reason == "preempted"
    assert mid.state == State.CREATED  # a hold is not pre-empted either


def test_on_demand_order_preempts_interruptible_but_never_on_demand(alice, carol, listing):
    drive_to(make_order(alice, listing, key="ondemand-1", accelerators=6), State.ACTIVE)
    bid = make_order(
        alice,
        listing,
        key="bid-00001",
        accelerators=2,
        pricing_mode="interruptible",
        bid_per_hour=listing.interruptible_floor_per_hour,
    )
    drive_to(bid, State.FUNDED)
    carols = make_order(carol, listing, key="ondemand-2", accelerators=2)
    services.order_mark_funded(order_id=carols.pk)
    bid.refresh_from_db()
    assert bid.state == State.CANCELLED and bid.end_reason == "preempted"
    with pytest.raises(ConflictError) as refused:
        make_order(carol, listing, key="ondemand-3", accelerators=1)
    assert refused.value.code == "orders_capacity_exhausted"


def test_a_refused_preemption_changes_nothing(alice, carol, listing):
    bid = make_order(
        alice,
        listing,
        key="bid-00002",
        accelerators=8,
        pricing_mode="interruptible",
        bid_per_hour=listing.price_per_hour + 3600,
    )
    drive_to(bid, State.FUNDED)
    with pytest.raises(ConflictError):
        make_order(carol, listing, key="ondemand-4", accelerators=1)
    bid.refresh_from_db()
    assert bid.state == State.FUNDED
    assert Order.objects.count() == 1


def test_retry_with_the_same_idempotency_key_returns_the_first_order(alice, listing):
    client = client_for(alice)
    body = {"listing_id": listing.pk, "pricing_mode": "on_demand", "accelerators": 1, "hours": 2}
    first = client.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="retry-key-1")
    second = client.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="retry-key-1")
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert Order.objects.count() == 1


def test_reusing_an_idempotency_key_for_another_request_is_422(alice, listing):
    client = client_for(alice)
    body = {"listing_id": listing.pk, "pricing_mode": "on_demand", "accelerators": 1, "hours": 2}
    client.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="retry-key-2")
    response = client.post(
        "/api/v1/orders", {**body, "hours": 3}, format="json", HTTP_IDEMPOTENCY_KEY="retry-key-2"
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "orders_idempotency_key_reused"
    assert Order.objects.count() == 1


def test_order_without_idempotency_key_is_refused(alice, listing):
    response = client_for(alice).post(
        "/api/v1/orders",
        {"listing_id": listing.pk, "pricing_mode": "on_demand", "accelerators": 1, "hours": 2},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "orders_idempotency_key_required"
    assert Order.objects.count() == 0


def test_orders_on_a_machine_that_went_offline_fail_or_cancel(alice, listing):
    active = drive_to(make_order(alice, listing, key="active-01"), State.ACTIVE)
    waiting = make_order(alice, listing, key="waiting-01")
    ended = services.orders_end_for_machine(machine_id=listing.machine_id, reason="machine offline")
    assert sorted(ended) == sorted([active.pk, waiting.pk])
    active.refresh_from_db()
    waiting.refresh_from_db()
    assert active.state == State.FAILED
    assert waiting.state == State.CANCELLED


def test_ending_a_lease_announces_it_after_commit(
    alice, listing, django_capture_on_commit_callbacks
):
    from marketplace.orders.signals import order_ended

    heard = []

    def listener(sender, order_id, **kwargs):
        heard.append(order_id)

    order_ended.connect(listener)
    try:
        order = make_order(alice, listing)
        with django_capture_on_commit_callbacks(execute=True):
            services.order_cancel(order_id=order.pk)
    finally:
        order_ended.disconnect(listener)
    assert heard == [order.pk]


def test_amount_owed_now_grows_while_active(alice, listing):
    order = drive_to(make_order(alice, listing), State.ACTIVE)
    Order.objects.filter(pk=order.pk).update(started_at=timezone.now() - timedelta(seconds=10))
    order.refresh_from_db()
    assert selectors.order_amount_owed(order=order) >= 10 * order.rate_per_second
