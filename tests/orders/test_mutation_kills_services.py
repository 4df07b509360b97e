"""Order services at exact, hand-worked values, for the mutants the orders scope's other tests let
through (mutation testing, issue 14): the words and codes of each refused transition, the event
row a transition writes, what a pre-empted unstarted order is closed with, the beat sweeps'
boundaries and their `now`, and who may stop whose lease. Every expected value is written out
here, not read from the code under test."""

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.core.errors import InvalidTransition, NotFoundError, PermissionDeniedError
from marketplace.orders import services
from marketplace.orders.models import Order, OrderEvent
from tests.factories import ListingFactory
from tests.orders_capacity.conftest import order, running

pytestmark = pytest.mark.django_db
State = Order.State


def refusal(call) -> InvalidTransition:
    with pytest.raises(InvalidTransition) as caught:
        call()
    return caught.value


# --- refused transitions: the words a renter acts on -------------------------------------------


def test_stopping_an_unstarted_order_says_cancel_it_instead(alice, listing):
    made = order(alice, listing, "kill-0001")
    error = refusal(lambda: services.order_complete(order_id=made.pk))
    assert error.message == f"Order {made.pk} has not started (it is created); cancel it instead."
    assert error.args == (error.message,)
    assert error.code == "order_invalid_transition"
    assert error.extra == {"current_state": "created", "requested_state": "completed"}


def test_stopping_a_stopped_lease_says_already_stopped(alice, listing):
    lease = running(alice, listing, "kill-0002")
    services.order_complete(order_id=lease.pk)
    error = refusal(lambda: services.order_complete(order_id=lease.pk))
    assert error.message == f"Order {lease.pk} is already stopped (it is completed)."
    assert error.code == "order_invalid_transition"


def test_cancelling_a_cancelled_order_says_already_cancelled(alice, listing):
    made = order(alice, listing, "kill-0003")
    services.order_cancel(order_id=made.pk)
    error = refusal(lambda: services.order_cancel(order_id=made.pk))
    assert error.message == f"Order {made.pk} is already cancelled."
    assert error.extra == {"current_state": "cancelled", "requested_state": "cancelled"}


def test_cancelling_a_completed_lease_says_it_has_ended(alice, listing):
    lease = running(alice, listing, "kill-0004")
    services.order_complete(order_id=lease.pk)
    error = refusal(lambda: services.order_cancel(order_id=lease.pk))
    assert error.message == f"Order {lease.pk} has already ended (it is completed)."


def test_cancelling_a_running_lease_says_stop_it_instead(alice, listing):
    lease = running(alice, listing, "kill-0005")
    error = refusal(lambda: services.order_cancel(order_id=lease.pk))
    assert error.message == f"Order {lease.pk} is running; stop it instead."
    assert error.extra == {"current_state": "active", "requested_state": "cancelled"}


def test_a_refusal_with_no_plainer_words_keeps_the_generic_sentence(alice, listing):
    # Settling an order that is still created: neither 'completed' nor 'cancelled' is asked
    # for, so the message stays InvalidTransition's own, naming the entity and its id.
    made = order(alice, listing, "kill-0006")
    error = refusal(lambda: services.order_mark_settled(order_id=made.pk))
    assert error.message == f"Order {made.pk} cannot go from 'created' to 'settled'."
    assert error.code == "order_invalid_transition"


def test_activating_a_created_order_is_refused_with_both_states(alice, listing):
    made = order(alice, listing, "kill-0007")
    error = refusal(lambda: services.order_activate(order_id=made.pk))
    assert error.message == f"Order {made.pk} cannot go from 'created' to 'active'."
    assert error.extra == {"current_state": "created", "requested_state": "active"}


# --- the event row of a transition -------------------------------------------------------------


def test_a_cancellation_event_gives_from_to_and_the_end_reason(alice, listing):
    made = order(alice, listing, "kill-0010")
    services.order_cancel(order_id=made.pk, reason="renter changed plans")
    event = OrderEvent.objects.get(order=made)
    assert (event.from_state, event.to_state) == ("created", "cancelled")
    assert event.reason == "renter changed plans"


def test_a_transition_with_a_why_records_the_why(alice, listing):
    made = order(alice, listing, "kill-0011")
    services.order_mark_funded(order_id=made.pk)
    event = OrderEvent.objects.get(order=made)
    assert (event.from_state, event.to_state, event.reason) == (
        "created",
        "funded",
        "deposit final on chain",
    )


def test_an_event_reason_is_cut_at_200_characters(alice, listing):
    # Both columns hold 200 characters: on PostgreSQL a longer end_reason was a DataError (a
    # 500 from the admin's cancel with a long typed reason); SQLite never checked the length.
    made = order(alice, listing, "kill-0012")
    services.order_cancel(order_id=made.pk, reason="x" * 250)
    assert OrderEvent.objects.get(order=made).reason == "x" * 200
    made.refresh_from_db()
    assert made.end_reason == "x" * 200


# --- pre-emption of a funded order that has not started ----------------------------------------


def test_a_funded_unstarted_bid_preempted_is_cancelled_for_nothing(alice, carol, listing):
    # carol's funded interruptible bid for all 8 accelerators, not started: alice's on-demand
    # order for 8 needs them, so funding alice's cancels carol's, billing 0 seconds and 0 units.
    low = order(carol, listing, "kill-0020", pricing_mode="interruptible", bid_per_hour=1_004_400)
    services.order_mark_funded(order_id=low.pk)
    high = order(alice, listing, "kill-0021")
    before = timezone.now()
    services.order_mark_funded(order_id=high.pk)
    low.refresh_from_db()
    assert low.state == State.CANCELLED
    assert low.end_reason == "preempted"
    assert (low.billable_seconds, low.amount_owed) == (0, 0)
    assert low.preempted_by_id == high.pk
    assert low.ended_at is not None and low.ended_at >= before
    event = OrderEvent.objects.filter(order=low).order_by("pk").last()
    assert (event.from_state, event.to_state, event.reason) == ("funded", "cancelled", "preempted")


# --- beat: starting orders past their start deadline -------------------------------------------


def starting(renter, listing, key) -> Order:
    made = order(renter, listing, key, accelerators=1)
    services.order_mark_funded(order_id=made.pk)
    return services.order_mark_starting(order_id=made.pk)


def test_unstarted_orders_past_their_deadline_are_cancelled_at_the_given_now(alice, listing):
    # Deadlines one and three hours ahead of the real clock; the sweep is told it is two hours
    # ahead: only the first is due, whatever the real clock says.
    now = timezone.now()
    due = starting(alice, listing, "kill-0030")
    later = starting(alice, listing, "kill-0031")
    Order.objects.filter(pk=due.pk).update(start_deadline_at=now + timedelta(hours=1))
    Order.objects.filter(pk=later.pk).update(start_deadline_at=now + timedelta(hours=3))
    assert services.orders_expire_unstarted(now=now + timedelta(hours=2)) == [due.pk]
    due.refresh_from_db()
    later.refresh_from_db()
    assert (due.state, later.state) == (State.CANCELLED, State.STARTING)
    assert due.ended_at == now + timedelta(hours=2)
    assert due.end_reason == "start not confirmed on chain in time"
    assert (due.billable_seconds, due.amount_owed) == (0, 0)


def test_a_deadline_exactly_now_is_due_and_one_without_deadline_is_too(alice, listing):
    now = timezone.now()
    at_deadline = starting(alice, listing, "kill-0032")
    no_deadline = starting(alice, listing, "kill-0033")
    Order.objects.filter(pk=at_deadline.pk).update(start_deadline_at=now)
    Order.objects.filter(pk=no_deadline.pk).update(start_deadline_at=None)
    assert services.orders_expire_unstarted(now=now) == [at_deadline.pk, no_deadline.pk]
    assert set(Order.objects.values_list("state", flat=True)) == {State.CANCELLED}


def test_the_start_sweep_with_no_now_uses_the_clock_and_leaves_other_states(alice, listing):
    now = timezone.now()
    due = starting(alice, listing, "kill-0034")
    Order.objects.filter(pk=due.pk).update(start_deadline_at=now - timedelta(seconds=5))
    created = order(alice, listing, "kill-0035", accelerators=1)
    funded = order(alice, listing, "kill-0036", accelerators=1)
    services.order_mark_funded(order_id=funded.pk)
    Order.objects.filter(pk__in=[created.pk, funded.pk]).update(
        start_deadline_at=now - timedelta(hours=1)
    )
    assert services.orders_expire_unstarted() == [due.pk]
    states = dict(Order.objects.values_list("pk", "state"))
    assert states == {due.pk: "cancelled", created.pk: "created", funded.pk: "funded"}


# --- beat: unfunded orders past their hold -----------------------------------------------------


def test_unfunded_holds_expire_at_the_given_now_not_the_clock(alice, listing):
    now = timezone.now()
    due = order(alice, listing, "kill-0040", accelerators=1)
    later = order(alice, listing, "kill-0041", accelerators=1)
    Order.objects.filter(pk=due.pk).update(hold_expires_at=now + timedelta(hours=1))
    Order.objects.filter(pk=later.pk).update(hold_expires_at=now + timedelta(hours=3))
    assert services.orders_cancel_unfunded(now=now + timedelta(hours=2)) == [due.pk]
    due.refresh_from_db()
    assert due.state == State.CANCELLED
    assert due.ended_at == now + timedelta(hours=2)
    assert due.end_reason == "not funded in time"


def test_an_unfunded_order_with_no_hold_time_is_cancelled(alice, listing):
    made = order(alice, listing, "kill-0042", accelerators=1)
    kept = order(alice, listing, "kill-0043", accelerators=1)
    Order.objects.filter(pk=made.pk).update(hold_expires_at=None)
    assert services.orders_cancel_unfunded() == [made.pk]
    kept.refresh_from_db()
    assert kept.state == State.CREATED


# --- metering: leases whose paid time ran out --------------------------------------------------


def test_a_lease_ends_when_its_duration_is_exactly_used_up(alice, listing):
    # Two hours paid, started exactly two hours before `now`: due, at the boundary.
    now = timezone.now()
    lease = running(alice, listing, "kill-0050", hours=2)
    Order.objects.filter(pk=lease.pk).update(started_at=now - timedelta(hours=2))
    assert services.orders_complete_elapsed(now=now) == [lease.pk]
    lease.refresh_from_db()
    assert (lease.state, lease.end_reason) == (State.COMPLETED, "duration_elapsed")


def test_a_lease_with_paid_time_left_keeps_running(alice, listing):
    # Two hours paid, started one hour ago: one hour left. (Started minus duration would be
    # in the past and wrongly end it.)
    now = timezone.now()
    lease = running(alice, listing, "kill-0051", hours=2)
    Order.objects.filter(pk=lease.pk).update(started_at=now - timedelta(hours=1))
    assert services.orders_complete_elapsed(now=now) == []
    lease.refresh_from_db()
    assert lease.state == State.ACTIVE


# --- a machine that went away ------------------------------------------------------------------


def test_a_machine_going_offline_ends_only_its_own_orders_with_the_reason(
    alice, carol, listing, bob_provider
):
    other = ListingFactory(machine__provider=bob_provider)
    waiting = order(alice, listing, "kill-0060", accelerators=1)
    elsewhere = order(carol, other, "kill-0061", accelerators=1)
    ended = services.orders_end_for_machine(machine_id=listing.machine_id, reason="suspended")
    assert ended == [waiting.pk]
    waiting.refresh_from_db()
    elsewhere.refresh_from_db()
    assert (waiting.state, waiting.end_reason) == (State.CANCELLED, "suspended")
    assert elsewhere.state == State.CREATED


# --- who may stop a lease ----------------------------------------------------------------------


def test_the_provider_owner_sees_the_lease_but_may_not_stop_it(alice, bob, listing):
    lease = running(alice, listing, "kill-0070")
    with pytest.raises(PermissionDeniedError) as caught:
        services.order_stop_by_renter(order_id=lease.pk, user=bob)
    assert caught.value.message == "Only the renter can stop a lease."
    assert caught.value.code == "orders_not_renter"
    lease.refresh_from_db()
    assert lease.state == State.ACTIVE


def test_staff_may_stop_a_renters_lease(alice, staff, listing):
    lease = running(alice, listing, "kill-0071")
    stopped = services.order_stop_by_renter(order_id=lease.pk, user=staff)
    assert (stopped.state, stopped.end_reason) == (State.COMPLETED, "stopped_by_renter")


def test_an_empty_end_reason_records_an_empty_event_reason(alice, listing):
    made = order(alice, listing, "kill-0013")
    services.order_cancel(order_id=made.pk, reason="")
    assert OrderEvent.objects.get(order=made).reason == ""


def test_the_end_of_a_lease_is_announced_with_order_as_sender(
    alice, listing, django_capture_on_commit_callbacks
):
    from marketplace.orders.signals import order_ended

    heard = []

    def listener(sender, order_id, **kwargs):
        heard.append((sender, order_id))

    order_ended.connect(listener)
    try:
        made = order(alice, listing, "kill-0014")
        with django_capture_on_commit_callbacks(execute=True):
            services.order_cancel(order_id=made.pk)
    finally:
        order_ended.disconnect(listener)
    assert heard == [(Order, made.pk)]


@pytest.mark.parametrize(
    "call",
    [
        lambda: services.order_cancel(order_id=10**9),
        lambda: services.order_complete(order_id=10**9),
        lambda: services.order_mark_settled(order_id=10**9),
    ],
)
def test_an_unknown_order_is_not_found(db, call):
    with pytest.raises(NotFoundError) as caught:
        call()
    assert caught.value.message == "No such order."
    assert caught.value.code == "orders_not_found"


def test_preempting_adds_the_freed_accelerators_to_those_already_free(alice, carol, listing):
    # 8 accelerators: carol's funded bid holds 4, so 4 are free. alice's on-demand order for 6
    # fits only by adding carol's 4 to the 4 free (8 >= 6): it is taken, and funding it
    # pre-empts carol's bid.
    low = order(
        carol,
        listing,
        "kill-0022",
        pricing_mode="interruptible",
        accelerators=4,
        bid_per_hour=1_004_400,
    )
    services.order_mark_funded(order_id=low.pk)
    high = order(alice, listing, "kill-0023", accelerators=6)
    services.order_mark_funded(order_id=high.pk)
    low.refresh_from_db()
    high.refresh_from_db()
    assert (high.state, low.state, low.preempted_by_id) == (State.FUNDED, State.CANCELLED, high.pk)
