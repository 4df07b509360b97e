"""Order selectors at exact, hand-worked values, for the mutants the orders scope's other tests
let through (mutation testing, issue 14): who sees which order, the metering read at a given
moment, and how far a lease the provider broke was provably served (heartbeats in the row and in
Redis, the lease checks, the start). Expected values are written out here."""

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.benchmarks.services import benchmark_job_create
from marketplace.core.errors import NotFoundError
from marketplace.orders import selectors, services
from marketplace.orders.models import Order
from marketplace.providers.heartbeats import heartbeat_record
from marketplace.providers.models import Machine
from tests.orders_capacity.conftest import order, running

pytestmark = pytest.mark.django_db
State = Order.State
SPEC = {"kind": "matmul", "n": 8, "precision": "fp32"}


# --- who sees which order ----------------------------------------------------------------------


def test_the_provider_owner_lists_the_leases_on_his_machines(alice, bob, listing):
    made = order(alice, listing, "sel-0001", accelerators=1)
    assert list(selectors.order_list_for(user=bob)) == [made]
    assert selectors.order_get_for(user=bob, order_id=made.pk) == made


def test_another_renter_is_told_there_is_no_such_order(alice, carol, listing):
    made = order(alice, listing, "sel-0002", accelerators=1)
    with pytest.raises(NotFoundError) as caught:
        selectors.order_get_for(user=carol, order_id=made.pk)
    assert caught.value.message == "No such order."
    assert caught.value.code == "orders_not_found"
    assert caught.value.status_code == 404


def test_listing_orders_reads_their_listing_and_machine_in_the_same_query(
    alice, listing, django_assert_num_queries
):
    order(alice, listing, "sel-0003", accelerators=1)
    order(alice, listing, "sel-0004", accelerators=1)
    with django_assert_num_queries(1):
        rows = [
            (o.listing.accelerator_count, o.machine.state)
            for o in selectors.order_list_for(user=alice)
        ]
    assert rows == [(8, "listed"), (8, "listed")]


# --- metering at a given moment ----------------------------------------------------------------


def test_an_order_not_started_has_used_nothing(alice, listing):
    made = order(alice, listing, "sel-0010", accelerators=1)
    assert selectors.order_used_seconds(order=made) == 0
    assert selectors.order_billable_seconds(order=made) == 0
    assert selectors.order_amount_owed(order=made) == 0


def test_the_seconds_used_and_owed_are_read_at_the_moment_given(alice, listing):
    # 1 accelerator at 2,498,400 an hour = 694 a second; 100 s after the start: 69,400.
    lease = running(alice, listing, "sel-0011", accelerators=1)
    started = lease.started_at
    at = started + timedelta(seconds=100)
    assert selectors.order_used_seconds(order=lease, at=at) == 100
    assert selectors.order_billable_seconds(order=lease, at=at) == 100
    assert selectors.order_amount_owed(order=lease, at=at) == 69_400


def test_a_moment_before_the_start_counts_zero_seconds(alice, listing):
    lease = running(alice, listing, "sel-0012", accelerators=1)
    assert selectors.order_used_seconds(order=lease, at=lease.started_at) == 0
    before = lease.started_at - timedelta(seconds=30)
    assert selectors.order_used_seconds(order=lease, at=before) == 0


# --- how far a broken lease was served ---------------------------------------------------------


def broken_lease(alice, listing, key, *, ran_seconds: int):
    """A lease that started `ran_seconds` before `now` (returned with it)."""
    now = timezone.now()
    lease = running(alice, listing, key, accelerators=1)
    Order.objects.filter(pk=lease.pk).update(started_at=now - timedelta(seconds=ran_seconds))
    lease.refresh_from_db()
    return lease, now


def test_served_until_is_the_machines_last_heartbeat_in_its_row(alice, listing):
    lease, now = broken_lease(alice, listing, "sel-0020", ran_seconds=1_000)
    seen = now - timedelta(seconds=400)
    Machine.objects.filter(pk=lease.machine_id).update(last_heartbeat_at=seen)
    assert selectors.order_served_until(order=lease, now=now) == seen


def test_served_until_takes_the_later_of_the_row_and_redis(alice, listing):
    lease, now = broken_lease(alice, listing, "sel-0021", ran_seconds=1_000)
    Machine.objects.filter(pk=lease.machine_id).update(
        last_heartbeat_at=now - timedelta(seconds=700)
    )
    # Redis holds float seconds: a whole second survives the round trip exactly.
    fresher = (now - timedelta(seconds=300)).replace(microsecond=0)
    heartbeat_record(machine_id=lease.machine_id, at=fresher)
    assert selectors.order_served_until(order=lease, now=now) == fresher


def test_served_until_never_passes_now(alice, listing):
    lease, now = broken_lease(alice, listing, "sel-0022", ran_seconds=1_000)
    Machine.objects.filter(pk=lease.machine_id).update(
        last_heartbeat_at=now + timedelta(seconds=60)
    )
    assert selectors.order_served_until(order=lease, now=now) == now


def test_an_owed_lease_check_never_passed_bounds_the_lease_at_its_start(alice, listing):
    lease, now = broken_lease(alice, listing, "sel-0023", ran_seconds=1_000)
    Machine.objects.filter(pk=lease.machine_id).update(
        last_heartbeat_at=now - timedelta(seconds=100)
    )
    benchmark_job_create(machine_id=lease.machine_id, purpose="lease", spec=SPEC, order_id=lease.pk)
    assert selectors.order_served_until(order=lease, now=now) == lease.started_at


def test_a_heartbeat_before_the_start_is_floored_at_the_start(alice, listing):
    lease, now = broken_lease(alice, listing, "sel-0024", ran_seconds=1_000)
    Machine.objects.filter(pk=lease.machine_id).update(
        last_heartbeat_at=now - timedelta(seconds=5_000)
    )
    assert selectors.order_served_until(order=lease, now=now) == lease.started_at


def test_an_unstarted_order_is_served_until_its_last_heartbeat(alice, listing):
    made = order(alice, listing, "sel-0025", accelerators=1)
    now = timezone.now()
    seen = now - timedelta(seconds=50)
    Machine.objects.filter(pk=made.machine_id).update(last_heartbeat_at=seen)
    assert selectors.order_served_until(order=made, now=now) == seen


def test_a_failed_lease_pays_up_to_the_last_heartbeat(alice, listing):
    # Started 1,000 s ago, last heard of 400 s ago: 600 s served, x 694 = 416,400 owed.
    lease, now = broken_lease(alice, listing, "sel-0030", ran_seconds=1_000)
    Machine.objects.filter(pk=lease.machine_id).update(
        last_heartbeat_at=now - timedelta(seconds=400)
    )
    failed = services.order_fail(order_id=lease.pk, reason="machine offline")
    assert (failed.billable_seconds, failed.amount_owed) == (600, 416_400)
    assert failed.state == State.FAILED
