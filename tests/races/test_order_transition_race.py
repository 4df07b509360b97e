"""Two paths end or start one order at the same moment (a renter stopping it while beat fails
it, two indexer workers activating it): exactly one transition wins, the other is refused, and
the order ends (and asks for settlement) once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.core.errors import InvalidTransition
from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.orders.signals import order_ended
from marketplace.payments import receivers
from tests.payments.helpers import make_order
from tests.races.conftest import race

pytestmark = pytest.mark.django_db(transaction=True)

State = Order.State


@pytest.fixture
def ended_signals():
    """Counts order_ended; the receiver that would send a chain transaction is detached."""
    sent = []
    order_ended.disconnect(dispatch_uid="payments_order_ended")
    order_ended.connect(
        lambda sender, **kw: sent.append(kw["order_id"]), weak=False, dispatch_uid="race-ended"
    )
    yield sent
    order_ended.disconnect(dispatch_uid="race-ended")
    order_ended.connect(receivers.on_order_ended, dispatch_uid="payments_order_ended")


def _activate(order_id):
    return lambda: order_services.order_activate(order_id=order_id)


def _complete(order_id):
    return lambda: order_services.order_complete(order_id=order_id)


def _fail(order_id):
    return lambda: order_services.order_fail(order_id=order_id, reason="machine offline")


def _stop(order_id, user):
    return lambda: order_services.order_stop_by_renter(order_id=order_id, user=user)


@pytest.mark.parametrize(
    "start, racers",
    [
        ("starting", ["activate", "activate"]),
        ("starting", ["activate", "activate", "activate", "activate"]),
        ("active", ["complete", "complete"]),
        ("active", ["fail", "fail"]),
        ("active", ["complete", "fail"]),
        ("active", ["stop", "fail", "complete"]),
    ],
)
def test_concurrent_transitions_of_one_order_have_one_winner(
    alice, listing, ended_signals, start, racers
):
    order = make_order(renter=alice, listing=listing, key=f"race-{start}-{'-'.join(racers)}")
    order_services.order_mark_funded(order_id=order.pk)
    order_services.order_mark_starting(order_id=order.pk)
    if start == "active":
        order_services.order_activate(order_id=order.pk)
        Order.objects.filter(pk=order.pk).update(started_at=timezone.now() - timedelta(seconds=600))
    make = {
        "activate": lambda: _activate(order.pk),
        "complete": lambda: _complete(order.pk),
        "fail": lambda: _fail(order.pk),
        "stop": lambda: _stop(order.pk, alice),
    }
    outcomes = race(*[make[name]() for name in racers])

    winners = [i for i, (kind, _) in enumerate(outcomes) if kind == "ok"]
    losers = [value for kind, value in outcomes if kind == "error"]
    assert len(winners) == 1, outcomes
    assert all(isinstance(exc, InvalidTransition) for exc in losers), losers
    order.refresh_from_db()
    won = racers[winners[0]]
    expected = {
        "activate": State.ACTIVE,
        "complete": State.COMPLETED,
        "stop": State.COMPLETED,
        "fail": State.FAILED,
    }[won]
    assert order.state == expected
    if start == "active":
        assert ended_signals == [order.pk]
        assert order.billable_seconds is not None and 600 <= order.billable_seconds <= 660
        assert order.amount_owed == order.billable_seconds * order.rate_per_second
    else:
        assert ended_signals == []
