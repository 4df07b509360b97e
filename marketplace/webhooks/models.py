"""Webhooks: endpoints people register, and the outbox of deliveries to them.

The app sits above every other one: it reads the rows the others write with each decision
(orders' transition timestamps, staff actions on machines, verdicts, slashes) and never writes
to them; nothing below imports it."""

from django.conf import settings
from django.db import models

from marketplace.core.models import TimestampedModel


class EventType(models.TextChoices):
    LEASE_ACTIVE = "lease.active", "Lease active (escrow started on chain)"
    LEASE_PREEMPTED = "lease.preempted", "Lease pre-empted by a higher bid"
    LEASE_ENDED = "lease.ended", "Lease ended (completed, stopped, cancelled or failed)"
    LEASE_SETTLED = "lease.settled", "Lease settled on chain"
    MACHINE_SUSPENDED = "machine.suspended", "Machine suspended"
    MACHINE_REINSTATED = "machine.reinstated", "Machine reinstated"
    PROVIDER_SLASHED = "provider.slashed", "Provider's stake slashed"


class WebhookEndpoint(TimestampedModel):
    """Where one user wants events POSTed. The signing secret is kept as it is, not hashed: the
    server needs it to sign every delivery. The API shows it once, at creation and at rotation."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500)
    # EventType values this endpoint wants.
    event_types = models.JSONField(default=list)
    secret = models.CharField(max_length=80)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    # After a rotation the old secret also signs, until this time, so a receiver can switch
    # without losing deliveries in between (each carries one v1 per secret).
    previous_secret = models.CharField(max_length=80, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"webhook {self.pk} → {self.url}"


class WebhookCursor(models.Model):
    """How far the scan of one source has read (a time: rows changed at or after
    `position - WEBHOOK_SCAN_OVERLAP_SECONDS` are read again on the next scan, so a transaction
    that committed late is not skipped; the unique (endpoint, event_key) makes re-reading free)."""

    source = models.CharField(max_length=40, unique=True)
    position = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.source} up to {self.position:%Y-%m-%d %H:%M:%S}"


class WebhookDelivery(models.Model):
    """One event for one endpoint: the outbox row. Its payload is frozen when it is created, so a
    retry sends the same bytes' content whatever happened to the order since."""

    class State(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # gave up after WEBHOOK_MAX_ATTEMPTS tries

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    # Names the event, not the delivery: "order:12:active", "slash:4". Also the payload's "id",
    # so a receiver can deduplicate a delivery that was sent twice (a worker died after POSTing).
    event_key = models.CharField(max_length=100)
    event_type = models.CharField(max_length=30, choices=EventType.choices)
    occurred_at = models.DateTimeField()
    payload = models.JSONField()
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    # When the next try may start; a worker claims a delivery by moving this forward.
    next_attempt_at = models.DateTimeField(db_index=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            # A re-scan of rows already seen creates nothing: idempotency is this constraint.
            models.UniqueConstraint(
                fields=["endpoint", "event_key"], name="one_delivery_per_endpoint_event"
            ),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_key} → endpoint {self.endpoint_id} ({self.state})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: the delivery log a person reads when a receiver says it got
    nothing."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="tries")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    # The first bytes of the receiver's answer, or why there was none (refused address, timeout).
    error = models.CharField(max_length=300, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="one_row_per_attempt"),
        ]
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.status_code}"
