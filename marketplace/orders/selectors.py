from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.core.errors import NotFoundError
from marketplace.orders.models import Order


def order_list_for(*, user: User) -> QuerySet[Order]:
    """Renters see their leases; provider owners the leases on their machines; staff all."""
    qs = Order.objects.select_related("listing", "machine").order_by("-pk")
    if user.is_staff:
        return qs
    return qs.filter(Q(renter=user) | Q(provider__owner=user))


def order_get_for(*, user: User, order_id: int) -> Order:
    order = order_list_for(user=user).filter(pk=order_id).first()
    if order is None:
        raise NotFoundError("No such order.", code="orders_not_found")
    return order


def order_used_seconds(*, order: Order, at: datetime | None = None) -> int:
    if order.started_at is None:
        return 0
    end = order.ended_at or at or timezone.now()
    elapsed = int((end - order.started_at).total_seconds())
    return max(0, min(elapsed, order.duration_seconds))


def order_billable_seconds(*, order: Order, at: datetime | None = None) -> int:
    """Fixed when the lease ends (see orders.services); until then, the seconds run so far."""
    if order.billable_seconds is not None:
        return order.billable_seconds
    return order_used_seconds(order=order, at=at)


def order_amount_owed(*, order: Order, at: datetime | None = None) -> int:
    return order.rate_per_second * order_billable_seconds(order=order, at=at)


def orders_past_duration() -> QuerySet[Order]:
    return Order.objects.filter(state=Order.State.ACTIVE).order_by("pk")


def order_served_until(*, order: Order, now: datetime) -> datetime:
    """How far a lease the provider broke was provably served: the earlier of its machine's
    last heartbeat (the freshest of Redis and the row) and, when a lease check it owes did not
    pass, the last check it passed before that one (or the start). A renter never pays for
    time nobody could show was served."""
    # Upward read inside the function, as listings reads benchmarks' figures: never a write.
    from marketplace.benchmarks.selectors import order_lease_checks_proven_until
    from marketplace.providers.heartbeats import machines_last_seen
    from marketplace.providers.models import Machine

    until = now
    row = Machine.objects.filter(pk=order.machine_id).values_list("last_heartbeat_at", flat=True)
    seen = [
        at
        for at in (
            row.first(),
            machines_last_seen(machine_ids=[order.machine_id]).get(order.machine_id),
        )
        if at is not None
    ]
    if seen:
        until = min(until, max(seen))
    proven = order_lease_checks_proven_until(order_id=order.pk)
    if proven is not None:
        until = min(until, proven)
    return max(until, order.started_at) if order.started_at else until
