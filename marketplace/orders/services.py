import hashlib
import json
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.core import collateral
from marketplace.core.errors import (
    ApplicationError,
    ConflictError,
    InvalidTransition,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.core.text import plural
from marketplace.listings.models import (
    RESERVED_TERM_SECONDS,
    SECONDS_PER_HOUR,
    Listing,
    ReservedPrice,
)
from marketplace.listings.services import price_validate
from marketplace.orders import selectors
from marketplace.orders.models import Order, OrderEvent
from marketplace.orders.signals import order_ended

State = Order.State
Mode = Order.PricingMode

MAX_ON_DEMAND_HOURS = 24 * 366
# Above this a single lease is a mistake, not a purchase: one billion USD.
MAX_ESCROW_AMOUNT = 10**15

# The order state machine of docs/architecture.md.
ORDER_TRANSITIONS: dict[str, set[str]] = {
    State.CREATED: {State.FUNDED, State.CANCELLED},
    State.FUNDED: {State.STARTING, State.CANCELLED},
    # Active only on the indexed, final LeaseStarted; cancelled (nothing billed) if it never is.
    State.STARTING: {State.ACTIVE, State.CANCELLED},
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


def _capacity_plan(
    listing: Listing,
    *,
    accelerators: int,
    price_per_hour: int,
    now: datetime,
    exclude_pk: int | None = None,
) -> list[Order]:
    """The funded interruptible leases to pre-empt so that `accelerators` fit, lowest bid first;
    refuses when even pre-empting every lower bid would not make room. Unfunded orders inside
    their hold count against the free accelerators but are never pre-empted, and an expired hold
    counts for nothing. Called with the listing locked."""
    holding = list(
        Order.objects.filter(listing=listing)
        .filter(Order.holds_capacity(now=now))
        .exclude(pk=exclude_pk)
        .order_by("pk")
    )
    free = listing.accelerator_count - sum(o.accelerators for o in holding)
    if free >= accelerators:
        return []
    outbid = sorted(
        (
            o
            for o in holding
            if o.state in Order.COMMITTED
            and o.pricing_mode == Mode.INTERRUPTIBLE
            and o.price_per_hour < price_per_hour
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
        in_use = sum(o.accelerators for o in holding)
        free_now = max(0, listing.accelerator_count - in_use)
        raise ConflictError(
            f"{plural(free_now, 'accelerator')} of {listing.accelerator_count} "
            f"{'is' if free_now == 1 else 'are'} free on this listing; {accelerators} requested.",
            code="orders_capacity_exhausted",
            extra={"requested": accelerators},
        )
    return plan


def _check_unfunded_caps(*, renter: User, accelerators: int, now: datetime) -> None:
    """Refuses an order past the renter's limits on unfunded orders (a squatter's tool: an
    unfunded order costs nothing and holds accelerators until its hold expires)."""
    held = list(
        Order.objects.filter(renter=renter, state=State.CREATED)
        .filter(Order.holds_capacity(now=now))
        .order_by("pk")
        .values_list("pk", "accelerators")
    )
    held_accelerators = sum(n for _, n in held)
    max_orders = settings.ORDER_MAX_UNFUNDED_PER_RENTER
    max_accelerators = settings.ORDER_MAX_UNFUNDED_ACCELERATORS
    if len(held) + 1 > max_orders or held_accelerators + accelerators > max_accelerators:
        pks = [pk for pk, _ in held]
        which = f"order {pks[0]}" if len(pks) == 1 else "one of orders " + ", ".join(map(str, pks))
        raise ConflictError(
            f"You may hold at most {plural(max_orders, 'unfunded order')} and "
            f"{plural(max_accelerators, 'unfunded accelerator')} at once; fund or cancel "
            f"{which} first.",
            code="orders_too_many_unfunded",
            extra={
                "unfunded_orders": [pk for pk, _ in held],
                "unfunded_accelerators": held_accelerators,
                "max_unfunded_orders": max_orders,
                "max_unfunded_accelerators": max_accelerators,
            },
        )


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
            # The renter's row, locked first, serialises one renter's orders so that two at once
            # cannot both slip under the unfunded caps; then the listing lock serialises orders
            # for one listing, so capacity cannot be oversold. Always in this order.
            User.objects.select_for_update().filter(pk=renter.pk).first()
            listing = (
                Listing.objects.select_for_update()
                .filter(pk=listing_id, is_searchable=True)
                .first()
            )
            if listing is None:
                # Hidden because its provider's stake no longer covers it: say so, and how much
                # is missing, rather than pretend the listing is gone.
                hidden = (
                    Listing.objects.filter(
                        pk=listing_id, status=Listing.Status.ACTIVE, machine__state="listed"
                    )
                    .values_list("provider_id", flat=True)
                    .first()
                )
                if hidden is not None:
                    collateral.require(provider_id=hidden)
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
                    f"This listing has {plural(listing.accelerator_count, 'accelerator')}; "
                    f"{accelerators} requested.",
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
            # The provider's free stake must cover this lease's lock on top of its machines.
            collateral.require(
                provider_id=listing.provider_id,
                adding_lease={
                    "escrow_amount": escrow_amount,
                    "accelerators": accelerators,
                    "duration_seconds": duration,
                },
            )
            now = timezone.now()
            _check_unfunded_caps(renter=renter, accelerators=accelerators, now=now)
            # Only a check: an unfunded order pre-empts nothing. Its lower bids are pre-empted
            # when it is funded (order_mark_funded), if they are still in the way then.
            _capacity_plan(listing, accelerators=accelerators, price_per_hour=price, now=now)
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
                hold_expires_at=now + timedelta(seconds=settings.ORDER_UNFUNDED_HOLD_SECONDS),
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


def _refused(order: Order, target: str) -> InvalidTransition:
    """The 409 for a transition the order's state does not allow, in the words a renter acts on
    ("already stopped", "cancel it instead"); code and detail stay those of every refused
    transition, so clients that branch on them keep working."""
    error = InvalidTransition(
        entity="Order", entity_id=order.pk, current=order.state, target=target
    )
    ended = order.state in (*Order.AWAITS_SETTLEMENT, State.SETTLED)
    message = None
    if target == State.COMPLETED:
        message = (
            f"Order {order.pk} is already stopped (it is {order.state})."
            if ended
            else f"Order {order.pk} has not started (it is {order.state}); cancel it instead."
        )
    elif target == State.CANCELLED:
        if order.state == State.CANCELLED:
            message = f"Order {order.pk} is already cancelled."
        elif ended:
            message = f"Order {order.pk} has already ended (it is {order.state})."
        elif order.state == State.ACTIVE:
            message = f"Order {order.pk} is running; stop it instead."
    if message:
        error.message = message
        error.args = (message,)
    return error


# Order.end_reason and OrderEvent.reason both hold 200 characters.
REASON_MAX_LENGTH = 200


def _transition(order: Order, target: str, *, why: str = "", **fields) -> Order:
    """Writes a transition on a locked order, refusing what the state machine does not allow,
    and its event row (from, to, why) in the same transaction."""
    if target not in ORDER_TRANSITIONS[order.state]:
        raise _refused(order, target)
    if "end_reason" in fields:
        # The column holds 200 characters, as the event's reason does: a longer reason (a
        # staff-typed one, a failure's detail) is cut here, not refused by PostgreSQL mid-way.
        fields["end_reason"] = fields["end_reason"][:REASON_MAX_LENGTH]
    OrderEvent.objects.create(
        order=order,
        from_state=order.state,
        to_state=target,
        reason=(why or fields.get("end_reason") or "")[:REASON_MAX_LENGTH],
    )
    order.state = target
    for name, value in fields.items():
        setattr(order, name, value)
    order.save(update_fields=["state", "updated_at", *fields])
    if target in Order.AWAITS_SETTLEMENT:
        order_pk = order.pk
        transaction.on_commit(lambda: order_ended.send(sender=Order, order_id=order_pk))
    return order


def _close_fields(
    order: Order, *, reason: str, now: datetime, served_until: datetime | None = None
) -> dict:
    """Fixes what a lease ending now is billed: to the second, except that a reserved term is a
    commitment a renter who stops early still pays; a lease the provider broke pays only the
    seconds it provably served (`served_until`, see selectors.order_served_until)."""
    billable = selectors.order_used_seconds(order=order, at=min(now, served_until or now))
    if order.pricing_mode == Mode.RESERVED and reason == "stopped_by_renter":
        billable = order.duration_seconds
    return {
        "ended_at": now,
        "end_reason": reason,
        "billable_seconds": billable,
        "amount_owed": billable * order.rate_per_second,
    }


def _preempt(order_id: int, *, by: int) -> Order:
    order = _lock(order_id)
    if order.state == State.ACTIVE:
        fields = _close_fields(order, reason="preempted", now=timezone.now())
        return _transition(order, State.COMPLETED, preempted_by_id=by, **fields)
    return _transition(
        order,
        State.CANCELLED,
        ended_at=timezone.now(),
        end_reason="preempted",
        billable_seconds=0,
        amount_owed=0,
        preempted_by_id=by,
    )


@transaction.atomic
def order_mark_funded(*, order_id: int, funded_at: datetime | None = None) -> Order:
    """The escrow deposit was seen on chain (the indexer is the only caller in production).

    This is when an order takes its accelerators for good: under the listing lock it pre-empts
    the funded interruptible leases bidding below it that are in its way. If the accelerators
    went to others first (its hold expired and they were taken, or the bids it meant to pre-empt
    were outbid), the order is cancelled instead and returned CANCELLED: the money is already in
    escrow, and a cancelled order whose deposit is on chain is settled for 0 seconds, a full
    refund (payments.lease_settle, enqueued by the order_ended signal)."""
    listing_id = Order.objects.filter(pk=order_id).values_list("listing_id", flat=True).first()
    # The listing before the order: the order in which order_create locks them.
    listing = Listing.objects.select_for_update().filter(pk=listing_id).first()
    order = _lock(order_id)
    funded_at = funded_at or timezone.now()
    if order.state == State.CREATED:
        try:
            plan = _capacity_plan(
                listing,
                accelerators=order.accelerators,
                price_per_hour=order.price_per_hour,
                now=timezone.now(),
                exclude_pk=order.pk,
            )
        except ConflictError:
            return _transition(
                order,
                State.CANCELLED,
                funded_at=funded_at,
                ended_at=timezone.now(),
                end_reason="capacity taken before funding",
                billable_seconds=0,
                amount_owed=0,
            )
        try:
            # The provider may have unstaked since the order was made: then the deposit is
            # refunded in full rather than leased on stake that is no longer there.
            collateral.require(
                provider_id=order.provider_id,
                adding_lease={
                    "escrow_amount": order.escrow_amount,
                    "accelerators": order.accelerators,
                    "duration_seconds": order.duration_seconds,
                },
                excluding_order_id=order.pk,
            )
        except ConflictError:
            return _transition(
                order,
                State.CANCELLED,
                funded_at=funded_at,
                ended_at=timezone.now(),
                end_reason="collateral_insufficient",
                billable_seconds=0,
                amount_owed=0,
            )
        for preempted in sorted(plan, key=lambda o: o.pk):
            _preempt(preempted.pk, by=order.pk)
    return _transition(order, State.FUNDED, why="deposit final on chain", funded_at=funded_at)


@transaction.atomic
def order_mark_starting(*, order_id: int, now: datetime | None = None) -> Order:
    """The deposit is in and the accelerators are taken: the escrow's `start` is sent next
    (payments.lease_start, on commit). Until it is final the order is not served and not
    billed; if it is not final by `start_deadline_at` the order is cancelled for 0 seconds
    (order_expire_start)."""
    now = now or timezone.now()
    order = _lock(order_id)
    deadline = now + timedelta(seconds=settings.ORDER_START_DEADLINE_SECONDS)
    return _transition(
        order, State.STARTING, why="start sent to the escrow", start_deadline_at=deadline
    )


@transaction.atomic
def order_activate(*, order_id: int, started_at: datetime | None = None) -> Order:
    """The escrow's LeaseStarted is final (the indexer is the only caller in production): from
    now on the renter can no longer reclaim the deposit, so only now is the lease served and
    billed. `started_at` is when we learnt it, never earlier."""
    order = _lock(order_id)
    return _transition(
        order,
        State.ACTIVE,
        why="LeaseStarted final on chain",
        started_at=started_at or timezone.now(),
    )


@transaction.atomic
def order_expire_start(*, order_id: int, now: datetime | None = None) -> Order | None:
    """A starting order whose `start` never became final in time is cancelled: the renter was
    never served, so it pays nothing (the cancellation settles for 0 seconds, a full refund).
    None when it activated or ended meanwhile, or its deadline is still ahead."""
    now = now or timezone.now()
    order = _lock(order_id)
    if order.state != State.STARTING or (
        order.start_deadline_at is not None and order.start_deadline_at > now
    ):
        return None
    return _transition(
        order,
        State.CANCELLED,
        ended_at=now,
        end_reason="start not confirmed on chain in time",
        billable_seconds=0,
        amount_owed=0,
    )


def orders_expire_unstarted(*, now: datetime | None = None) -> list[int]:
    """Beat: cancels starting orders past their start deadline (see order_expire_start)."""
    now = now or timezone.now()
    due = Order.objects.filter(state=State.STARTING).filter(
        Q(start_deadline_at__lte=now) | Q(start_deadline_at__isnull=True)
    )
    return [
        order_id
        for order_id in due.order_by("pk").values_list("pk", flat=True)
        if order_expire_start(order_id=order_id, now=now) is not None
    ]


@transaction.atomic
def order_complete(*, order_id: int, reason: str = "duration_elapsed") -> Order:
    order = _lock(order_id)
    if order.state != State.ACTIVE:
        raise _refused(order, State.COMPLETED)
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
    """The provider broke the lease (machine offline, failed or dodged re-verification): the
    renter pays only for the seconds it provably served (selectors.order_served_until) and
    gets the rest back; a slash follows."""
    order = _lock(order_id)
    if order.state != State.ACTIVE:
        raise InvalidTransition(
            entity="Order", entity_id=order.pk, current=order.state, target=State.FAILED
        )
    now = timezone.now()
    served_until = selectors.order_served_until(order=order, now=now)
    fields = _close_fields(order, reason=reason, now=now, served_until=served_until)
    return _transition(order, State.FAILED, **fields)


@transaction.atomic
def order_mark_settled(*, order_id: int) -> Order:
    """The settlement transaction was confirmed on chain."""
    order = _lock(order_id)
    return _transition(
        order, State.SETTLED, why="settlement final on chain", settled_at=timezone.now()
    )


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
    ids = Order.objects.filter(machine_id=machine_id, state__in=Order.OPEN).values_list(
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


@transaction.atomic
def order_expire_hold(*, order_id: int, now: datetime | None = None) -> Order | None:
    """Cancels an unfunded order whose hold has expired; None when it was funded, cancelled or
    its hold renewed meanwhile (the locked re-check is what makes beat safe against funding)."""
    now = now or timezone.now()
    order = _lock(order_id)
    if order.state != State.CREATED or (
        order.hold_expires_at is not None and order.hold_expires_at > now
    ):
        return None
    return _transition(
        order,
        State.CANCELLED,
        ended_at=now,
        end_reason="not funded in time",
        billable_seconds=0,
        amount_owed=0,
    )


def orders_cancel_unfunded(*, now: datetime | None = None) -> list[int]:
    """Beat: cancels unfunded orders past their hold. Their accelerators were free already (an
    expired hold counts for nothing); this closes them so the renter sees why. A deposit seen
    after this is refunded in full (payments: funded after it was cancelled)."""
    now = now or timezone.now()
    expired = Order.objects.filter(state=State.CREATED).filter(
        Q(hold_expires_at__lte=now) | Q(hold_expires_at__isnull=True)
    )
    return [
        order_id
        for order_id in expired.order_by("pk").values_list("pk", flat=True)
        if order_expire_hold(order_id=order_id, now=now) is not None
    ]
