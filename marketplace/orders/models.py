from django.conf import settings
from django.db import models
from django.db.models import Q

from marketplace.core.models import TimestampedModel
from marketplace.listings.models import Listing, ReservedTerm
from marketplace.providers.models import Machine, Provider


class Order(TimestampedModel):
    """A lease. Amounts are integer token units (6 decimals); times are UTC."""

    class State(models.TextChoices):
        CREATED = "created"
        FUNDED = "funded"
        # Funded, and the escrow's `start` sent but not yet final on chain: not served, not
        # billed. Active only once the indexer sees LeaseStarted final (issue 10, point 7).
        STARTING = "starting"
        ACTIVE = "active"
        COMPLETED = "completed"
        CANCELLED = "cancelled"
        FAILED = "failed"
        SETTLED = "settled"

    class PricingMode(models.TextChoices):
        ON_DEMAND = "on_demand"
        RESERVED = "reserved"
        INTERRUPTIBLE = "interruptible"

    # States of an order that has not ended: a machine going offline cancels or fails these.
    OPEN = (State.CREATED, State.FUNDED, State.STARTING, State.ACTIVE)
    # Paid-for leases: they hold their accelerators until they end. An unfunded (created) order
    # holds its accelerators only until hold_expires_at; see holds_capacity.
    COMMITTED = (State.FUNDED, State.STARTING, State.ACTIVE)
    # States from which a settlement transaction is due.
    AWAITS_SETTLEMENT = (State.COMPLETED, State.CANCELLED, State.FAILED)

    renter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    listing = models.ForeignKey(Listing, on_delete=models.PROTECT, related_name="orders")
    machine = models.ForeignKey(Machine, on_delete=models.PROTECT, related_name="orders")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="orders")
    state = models.CharField(
        max_length=12, choices=State.choices, default=State.CREATED, db_index=True
    )

    pricing_mode = models.CharField(max_length=16, choices=PricingMode.choices)
    reserved_term = models.CharField(max_length=4, choices=ReservedTerm.choices, blank=True)
    accelerators = models.PositiveIntegerField()
    # Per accelerator-hour, fixed when ordered (the bid, for an interruptible order).
    price_per_hour = models.PositiveBigIntegerField()
    rate_per_second = models.PositiveBigIntegerField()
    duration_seconds = models.PositiveBigIntegerField()
    escrow_amount = models.PositiveBigIntegerField()

    # bytes32 lease id used on chain, as 0x-prefixed hex.
    lease_id = models.CharField(max_length=66, unique=True)
    idempotency_key = models.CharField(max_length=100)
    request_fingerprint = models.CharField(max_length=64)

    # Until when an unfunded order keeps its accelerators; past it, the order stops counting
    # against the listing at once, and beat cancels it. Null for orders made before holds.
    hold_expires_at = models.DateTimeField(null=True, blank=True)
    funded_at = models.DateTimeField(null=True, blank=True)
    # A starting order whose `start` is not final by then is cancelled (0 seconds, full refund).
    start_deadline_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)
    # Fixed when the lease ends: what the provider earned (before the platform fee).
    billable_seconds = models.PositiveBigIntegerField(null=True, blank=True)
    amount_owed = models.PositiveBigIntegerField(null=True, blank=True)
    # The order whose funding took this interruptible lease's accelerators (end_reason
    # "preempted"): the operator's answer to "why did my lease stop?".
    preempted_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="preempted_orders"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["renter", "idempotency_key"], name="one_order_per_idempotency_key"
            ),
        ]
        indexes = [models.Index(fields=["listing", "state"])]

    def __str__(self) -> str:
        return f"Order #{self.pk} ({self.state})"

    @classmethod
    def holds_capacity(cls, *, now) -> Q:
        """The orders that hold accelerators of their listing at `now`: funded and running leases,
        and unfunded orders inside their short hold. The one definition of it: order_create,
        order_mark_funded, the unfunded caps and the listings' free_accelerators all use it."""
        return Q(state__in=cls.COMMITTED) | Q(state=cls.State.CREATED, hold_expires_at__gt=now)

    @property
    def refund_amount(self) -> int | None:
        return None if self.amount_owed is None else self.escrow_amount - self.amount_owed


class OrderEvent(models.Model):
    """One row per order transition, written in the transaction that decides it: what the order
    was, what it became and why (the lease's own history, beside the chain's)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=12, choices=Order.State.choices)
    to_state = models.CharField(max_length=12, choices=Order.State.choices)
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"order {self.order_id}: {self.from_state} → {self.to_state}"
