import hashlib
import json
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.core.errors import (
    ApplicationError,
    ConflictError,
    InvalidTransition,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.listings.models import (
    RESERVED_TERM_SECONDS,
    SECONDS_PER_HOUR,
    Listing,
    ReservedPrice,
)
from marketplace.listings.services import price_validate
from marketplace.orders import selectors
from marketplace.orders.models import Order
from marketplace.orders.signals import order_ended

State = Order.State
Mode = Order.PricingMode

MAX_ON_DEMAND_HOURS = 24 * 366
# Above this a single lease is a mistake, not a purchase: one billion USD.
MAX_ESCROW_AMOUNT = 10**15

# The order state machine of ARCHITECTURE.md.
ORDER_TRANSITIONS: dict[str, set[str]] = {
    State.CREATED: {State.FUNDED, State.CANCELLED},
    State.FUNDED: {State.ACTIVE, State.CANCELLED},
    State.ACTIVE: {State.COMPLETED, State.FAILED},
    State.COMPLETED: {State.SETTLED},
    State.CANCELLED: {State.SETTLED},
    State.FAILED: {State.SETTLED},
    State.SETTLED: set(),
}


def _fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _existing_for_key(*, renter: User, idempotency_key: str, fingerprint: str) -> Order | None:
    order = Order.objects.filter(renter=renter, idempotency_key=idempotency_key).first()
    if order is not None and order.request_fingerprint != fingerprint:
        raise ApplicationError(
            "This Idempotency-Key was already used for a different order request.",
            code="orders_idempotency_key_reused",
            status_code=422,
            extra={"order_id": order.pk},
        )
    return order


def _price_for_mode(
    listing: Listing,
    *,
    pricing_mode: str,
    hours: int | None,
    reserved_term: str | None,
    bid_per_hour: int | None,
) -> tuple[int, int]:
    """Returns (price per accelerator-hour, duration in seconds) for the chosen pricing mode."""
    if pricing_mode == Mode.RESERVED:
        if not reserved_term or hours is not None or bid_per_hour is not None:
            raise ApplicationError(
                "A reserved order gives reserved_term and neither hours nor bid_per_hour.",
                code="orders_bad_pricing",
            )
        price = ReservedPrice.objects.filter(listing=listing, term=reserved_term).first()
        if price is None:
            raise ApplicationError(
                f"This listing offers no reserved term '{reserved_term}'.",
                code="orders_term_not_offered",
            )
        return price.price_per_hour, RESERVED_TERM_SECONDS[reserved_term]

    if reserved_term or hours is None:
        raise ApplicationError(
            f"An {pricing_mode} order gives hours and no reserved_term.", code="orders_bad_pricing"
        )
    if not 1 <= hours <= MAX_ON_DEMAND_HOURS:
        raise ApplicationError(
            f"hours must be between 1 and {MAX_ON_DEMAND_HOURS}.", code="orders_bad_duration"
        )
    if pricing_mode == Mode.ON_DEMAND:
        if bid_per_hour is not None:
            raise ApplicationError(
                "bid_per_hour is only for interruptible orders.", code="orders_bad_pricing"
            )
        return listing.price_per_hour, hours * SECONDS_PER_HOUR

    if listing.interruptible_floor_per_hour is None:
        raise ApplicationError(
            "This listing takes no interruptible bids.", code="orders_interruptible_not_offered"
        )
    if bid_per_hour is None:
        raise ApplicationError(
            "An interruptible order gives bid_per_hour.", code="orders_bad_pricing"
        )
    price_validate(bid_per_hour, field="bid_per_hour")
    if bid_per_hour < listing.interruptible_floor_per_hour:
        raise ApplicationError(
            f"The bid is below the listing's floor of {listing.interruptible_floor_per_hour}.",
            code="orders_bid_below_floor",
            extra={"floor_per_hour": listing.interruptible_floor_per_hour},
        )
    return bid_per_hour, hours * SECONDS_PER_HOUR


def _preemption_plan(listing: Listing, *, accelerators: int, price_per_hour: int) -> list[Order]:
    """The interruptible leases to pre-empt so that `accelerators` fit, lowest bid first; refuses
    the order when even pre-empting every lower bid would not make room."""
    holding = list(
        Order.objects.filter(listing=listing, state__in=Order.HOLDS_CAPACITY).order_by("pk")
    )
    free = listing.accelerator_count - sum(o.accelerators for o in holding)
    if free >= accelerators:
        return []
    outbid = sorted(
        (
            o
            for o in holding
            if o.pricing_mode == Mode.INTERRUPTIBLE and o.price_per_hour < price_per_hour
        ),
        key=lambda o: (o.price_per_hour, -o.pk),
    )
    plan = []
    for order in outbid:
        if free >= accelerators:
            break
        plan.append(order)
        free += order.accelerators
    if free < accelerators:
        raise ConflictError(
            f"Only {listing.accelerator_count - sum(o.accelerators for o in holding)} of "
            f"{listing.accelerator_count} accelerators are free on this listing.",
            code="orders_capacity_exhausted",
            extra={"requested": accelerators},
        )
    return plan


def order_create(
    *,
    renter: User,
    listing_id: int,
    pricing_mode: str,
    accelerators: int,
    idempotency_key: str,
    hours: int | None = None,
    reserved_term: str | None = None,
    bid_per_hour: int | None = None,
) -> tuple[Order, bool]:
    """Creates a lease; returns (order, created). A retried request with the same
    Idempotency-Key returns the first order: the unique constraint, not a read, guarantees it."""
    if not (renter.is_renter or renter.is_staff):
        raise PermissionDeniedError("Only renters can order.", code="orders_not_renter")
    fingerprint = _fingerprint(
        {
            "listing_id": listing_id,
            "pricing_mode": pricing_mode,
            "accelerators": accelerators,
            "hours": hours,
            "reserved_term": reserved_term,
            "bid_per_hour": bid_per_hour,
        }
    )
    existing = _existing_for_key(
        renter=renter, idempotency_key=idempotency_key, fingerprint=fingerprint
    )
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            # The listing lock serialises orders for one listing, so capacity cannot be oversold.
            listing = (
                Listing.objects.select_for_update()
                .filter(pk=listing_id, is_searchable=True)
                .first()
            )
            if listing is None:
                raise NotFoundError(
                    "No such listing open for orders.", code="orders_listing_not_found"
                )
            existing = _existing_for_key(
                renter=renter, idempotency_key=idempotency_key, fingerprint=fingerprint
            )
            if existing is not None:
                return existing, False
            if accelerators > listing.accelerator_count:
                raise ApplicationError(
                    f"This listing has {listing.accelerator_count} accelerators.",
                    code="orders_too_many_accelerators",
                )
            price, duration = _price_for_mode(
                listing,
                pricing_mode=pricing_mode,
                hours=hours,
                reserved_term=reserved_term,
                bid_per_hour=bid_per_hour,
            )
            rate_per_second = price * accelerators // SECONDS_PER_HOUR
            escrow_amount = rate_per_second * duration
            if escrow_amount > MAX_ESCROW_AMOUNT:
                raise ApplicationError(
                    f"The lease would cost {escrow_amount} units, above the {MAX_ESCROW_AMOUNT} "
                    "limit for one order.",
                    code="orders_amount_too_large",
                )
            for preempted in _preemption_plan(
                listing, accelerators=accelerators, price_per_hour=price
            ):
                _preempt(preempted.pk)
            order = Order.objects.create(
                renter=renter,
                listing=listing,
                machine_id=listing.machine_id,
                provider_id=listing.provider_id,
                pricing_mode=pricing_mode,
                reserved_term=reserved_term or "",
                accelerators=accelerators,
                price_per_hour=price,
                rate_per_second=rate_per_second,
                duration_seconds=duration,
                escrow_amount=escrow_amount,
                lease_id="0x" + secrets.token_hex(32),
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
            )
    except IntegrityError:
        # A concurrent request with the same key won the insert; answer with its order.
        existing = _existing_for_key(
            renter=renter, idempotency_key=idempotency_key, fingerprint=fingerprint
        )
        if existing is None:
            raise
        return existing, False
    return order, True


def _lock(order_id: int) -> Order:
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        raise NotFoundError("No such order.", code="orders_not_found")
    return order


def _transition(order: Order, target: str, **fields) -> Order:
    """Writes a transition on a locked order, refusing what the state machine does not allow."""
    if target not in ORDER_TRANSITIONS[order.state]:
        raise InvalidTransition(
            entity="Order", entity_id=order.pk, current=order.state, target=target
        )
    order.state = target
    for name, value in fields.items():
        setattr(order, name, value)
    order.save(update_fields=["state", "updated_at", *fields])
    if target in Order.AWAITS_SETTLEMENT:
        order_pk = order.pk
        transaction.on_commit(lambda: order_ended.send(sender=Order, order_id=order_pk))
    return order


def _close_fields(order: Order, *, reason: str, now: datetime) -> dict:
    """Fixes what a lease ending now is billed: to the second, except that a reserved term is a
    commitment a renter who stops early still pays; a lease the provider broke pays only the
    seconds it ran."""
    billable = selectors.order_used_seconds(order=order, at=now)
    if order.pricing_mode == Mode.RESERVED and reason == "stopped_by_renter":
        billable = order.duration_seconds
    return {
        "ended_at": now,
        "end_reason": reason,
        "billable_seconds": billable,
        "amount_owed": billable * order.rate_per_second,
    }


def _preempt(order_id: int) -> Order:
    order = _lock(order_id)
    if order.state == State.ACTIVE:
        fields = _close_fields(order, reason="preempted", now=timezone.now())
        return _transition(order, State.COMPLETED, **fields)
    return _transition(
        order,
        State.CANCELLED,
        ended_at=timezone.now(),
        end_reason="preempted",
        billable_seconds=0,
        amount_owed=0,
    )


@transaction.atomic
def order_mark_funded(*, order_id: int, funded_at: datetime | None = None) -> Order:
    """The escrow deposit was seen on chain (the indexer is the only caller in production)."""
    order = _lock(order_id)
    return _transition(order, State.FUNDED, funded_at=funded_at or timezone.now())


@transaction.atomic
def order_activate(*, order_id: int) -> Order:
    order = _lock(order_id)
    return _transition(order, State.ACTIVE, started_at=timezone.now())


@transaction.atomic
def order_complete(*, order_id: int, reason: str = "duration_elapsed") -> Order:
    order = _lock(order_id)
    if order.state != State.ACTIVE:
        raise InvalidTransition(
            entity="Order", entity_id=order.pk, current=order.state, target=State.COMPLETED
        )
    fields = _close_fields(order, reason=reason, now=timezone.now())
    return _transition(order, State.COMPLETED, **fields)


def order_stop_by_renter(*, order_id: int, user: User) -> Order:
    order = selectors.order_get_for(user=user, order_id=order_id)
    if order.renter_id != user.pk and not user.is_staff:
        raise PermissionDeniedError("Only the renter can stop a lease.", code="orders_not_renter")
    return order_complete(order_id=order.pk, reason="stopped_by_renter")


@transaction.atomic
def order_cancel(*, order_id: int, user: User | None = None, reason: str = "cancelled") -> Order:
    if user is not None:
        visible = selectors.order_get_for(user=user, order_id=order_id)
        if visible.renter_id != user.pk and not user.is_staff:
            raise PermissionDeniedError(
                "Only the renter or staff can cancel an order.", code="orders_not_renter"
            )
    order = _lock(order_id)
    return _transition(
        order,
        State.CANCELLED,
        ended_at=timezone.now(),
        end_reason=reason,
        billable_seconds=0,
        amount_owed=0,
    )


@transaction.atomic
def order_fail(*, order_id: int, reason: str) -> Order:
    """The provider broke the lease (machine offline, failed re-verification): the renter pays
    only for the seconds it ran and gets the rest back; a slash follows."""
    order = _lock(order_id)
    if order.state != State.ACTIVE:
        raise InvalidTransition(
            entity="Order", entity_id=order.pk, current=order.state, target=State.FAILED
        )
    fields = _close_fields(order, reason=reason, now=timezone.now())
    return _transition(order, State.FAILED, **fields)


@transaction.atomic
def order_mark_settled(*, order_id: int) -> Order:
    """The settlement transaction was confirmed on chain."""
    order = _lock(order_id)
    return _transition(order, State.SETTLED, settled_at=timezone.now())


def orders_complete_elapsed(*, now: datetime | None = None) -> list[int]:
    """Metering (beat): ends every active lease whose paid duration has run out."""
    now = now or timezone.now()
    done = []
    for order in selectors.orders_past_duration():
        if order.started_at + timedelta(seconds=order.duration_seconds) <= now:
            try:
                order_complete(order_id=order.pk, reason="duration_elapsed")
                done.append(order.pk)
            except InvalidTransition:
                pass  # ended concurrently by another path; nothing to do
    return done


def orders_end_for_machine(*, machine_id: int, reason: str) -> list[int]:
    """A machine went offline or was suspended: its active leases fail, unstarted ones cancel."""
    ended = []
    ids = Order.objects.filter(machine_id=machine_id, state__in=Order.HOLDS_CAPACITY).values_list(
        "pk", "state"
    )
    for order_id, state in sorted(ids):
        try:
            if state == State.ACTIVE:
                order_fail(order_id=order_id, reason=reason)
            else:
                order_cancel(order_id=order_id, reason=reason)
            ended.append(order_id)
        except InvalidTransition:
            pass
    return ended


def orders_cancel_unfunded(*, now: datetime | None = None) -> list[int]:
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.ORDER_FUNDING_TIMEOUT_SECONDS)
    cancelled = []
    for order_id in Order.objects.filter(state=State.CREATED, created_at__lt=cutoff).values_list(
        "pk", flat=True
    ):
        try:
            order_cancel(order_id=order_id, reason="not funded in time")
            cancelled.append(order_id)
        except InvalidTransition:
            pass
    return cancelled
