"""Writes of the webhooks app: endpoints, the outbox scan, and delivery attempts."""

import json
import random
import time
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.core.errors import ApplicationError, ConflictError
from marketplace.webhooks import signing, transport
from marketplace.webhooks.events import SOURCES, Event, Source, subscribed_users
from marketplace.webhooks.models import (
    EventType,
    WebhookAttempt,
    WebhookCursor,
    WebhookDelivery,
    WebhookEndpoint,
)
from marketplace.webhooks.selectors import endpoint_get_for

# A claimed delivery is not tried again by another worker for this long: more than one POST's
# timeout, so a worker that died mid-POST leaves it to be retried, and one that is merely slow
# finishes first.
CLAIM_SECONDS = 60


def _url_checked(url: str) -> str:
    try:
        transport.url_check(url)
    except transport.TargetRefused as exc:
        raise ApplicationError(str(exc), code="webhooks_url_refused") from exc
    return url


def endpoint_create(
    *, user: User, url: str, event_types: list[str], description: str = ""
) -> WebhookEndpoint:
    """Returns the endpoint with its secret; the caller shows the secret this once."""
    _url_checked(url)
    with transaction.atomic():
        # The user's row serialises two concurrent creations against the cap.
        User.objects.select_for_update().filter(pk=user.pk).first()
        count = WebhookEndpoint.objects.filter(user=user).count()
        if count >= settings.WEBHOOK_MAX_ENDPOINTS_PER_USER:
            raise ConflictError(
                f"You have {count} webhook endpoints; the limit is "
                f"{settings.WEBHOOK_MAX_ENDPOINTS_PER_USER}.",
                code="webhooks_too_many_endpoints",
            )
        return WebhookEndpoint.objects.create(
            user=user,
            url=url,
            event_types=sorted(set(event_types or EventType.values)),
            secret=signing.secret_new(),
            description=description,
        )


@transaction.atomic
def endpoint_rotate_secret(*, user: User, endpoint_id: int) -> WebhookEndpoint:
    """A new secret at once; for WEBHOOK_SECRET_ROLLOVER_SECONDS the old one signs too (two v1
    in the header), so a receiver switches over without losing deliveries. Rotating because the
    old secret leaked? Rotate twice: the second rotation ends the first one's rollover."""
    endpoint = endpoint_get_for(user=user, endpoint_id=endpoint_id)
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    now = timezone.now()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + timedelta(
        seconds=settings.WEBHOOK_SECRET_ROLLOVER_SECONDS
    )
    endpoint.secret = signing.secret_new()
    endpoint.secret_rotated_at = now
    endpoint.save(
        update_fields=[
            "secret",
            "secret_rotated_at",
            "previous_secret",
            "previous_secret_expires_at",
            "updated_at",
        ]
    )
    return endpoint


def endpoint_signing_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The current secret, and the previous one while its rollover lasts."""
    secrets = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and now < expires:
        secrets.append(endpoint.previous_secret)
    return secrets


def endpoint_delete(*, user: User, endpoint_id: int) -> None:
    endpoint_get_for(user=user, endpoint_id=endpoint_id).delete()


# --- the outbox scan -----------------------------------------------------------------------


def _deliveries_for(events: list[Event], *, now: datetime) -> list[WebhookDelivery]:
    users = set().union(*(event.recipients for event in events)) if events else set()
    endpoints_of = defaultdict(list)
    for endpoint in WebhookEndpoint.objects.filter(user_id__in=users, is_active=True):
        endpoints_of[endpoint.user_id].append(endpoint)
    wanted = []
    for event in events:
        for user_id in sorted(event.recipients):
            for endpoint in endpoints_of[user_id]:
                # An endpoint hears what happens after it exists, not the history a late scan
                # happens to read.
                if event.type in endpoint.event_types and event.occurred_at >= endpoint.created_at:
                    wanted.append((endpoint, event))
    if not wanted:
        return []
    existing = set(
        WebhookDelivery.objects.filter(
            endpoint_id__in={endpoint.pk for endpoint, _ in wanted},
            event_key__in={event.key for _, event in wanted},
        ).values_list("endpoint_id", "event_key")
    )
    return [
        WebhookDelivery(
            endpoint=endpoint,
            event_key=event.key,
            event_type=event.type,
            occurred_at=event.occurred_at,
            payload={
                "id": event.key,
                "type": str(event.type),
                "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
                "data": event.data,
            },
            next_attempt_at=now,
        )
        for endpoint, event in wanted
        if (endpoint.pk, event.key) not in existing
    ]


def _scan_source(source: Source, *, now: datetime) -> int:
    overlap = timedelta(seconds=settings.WEBHOOK_SCAN_OVERLAP_SECONDS)
    with transaction.atomic():
        # A first scan starts from now: turning webhooks on does not replay history.
        WebhookCursor.objects.get_or_create(source=source.name, defaults={"position": now})
        cursor = WebhookCursor.objects.select_for_update().get(source=source.name)
        # Rows are read from `overlap` before the cursor: a transaction that stamped its row
        # before the last scan but committed after it is read now. Re-reading is free: the
        # unique (endpoint, event_key) turns an event already queued into nothing.
        since = cursor.position - overlap
        rows = source.rows(since, subscribed_users())
        events = [event for row in rows for event in source.events(row)]
        new = _deliveries_for(events, now=now)
        WebhookDelivery.objects.bulk_create(new, ignore_conflicts=True)
        cursor.position = max(cursor.position, now)
        cursor.save(update_fields=["position"])
    return len(new)


def webhooks_scan(*, now: datetime | None = None) -> dict[str, int]:
    """Beat: queues one delivery per subscribed endpoint for every new event, each source in
    one transaction with the move of its cursor."""
    now = now or timezone.now()
    return {source.name: _scan_source(source, now=now) for source in SOURCES}


# --- delivery ------------------------------------------------------------------------------


def retry_delay_seconds(attempt: int) -> float:
    """Exponential backoff with jitter after the `attempt`-th failed try: base·2^(n-1) capped,
    then a random point in its upper half, so receivers that come back after an outage are not
    hit by every sender's retries in the same second."""
    ceiling = min(
        settings.WEBHOOK_RETRY_CAP_SECONDS,
        settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1),
    )
    return ceiling * random.uniform(0.5, 1.0)


def delivery_body(delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery | None:
    """One try of one delivery, or None when another worker holds it or it is not due. The POST
    runs outside any transaction; only the claim and the outcome are written."""
    now = now or timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id,
        state=WebhookDelivery.State.PENDING,
        next_attempt_at__lte=now,
    ).update(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        outcome = transport.Outcome(None, "endpoint disabled", "", 0)
    else:
        body = delivery_body(delivery)
        outcome = transport.post(
            url=endpoint.url,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "marketplace-webhooks/1",
                signing.HEADER: signing.header_value(
                    secrets=endpoint_signing_secrets(endpoint, now=timezone.now()),
                    timestamp=int(time.time()),
                    body=body,
                ),
                "X-Marketplace-Event": delivery.event_type,
                "X-Marketplace-Event-Id": delivery.event_key,
                "X-Marketplace-Delivery": str(delivery.pk),
            },
        )
    return _outcome_record(delivery_id, outcome, now=now, give_up=not endpoint.is_active)


@transaction.atomic
def _outcome_record(
    delivery_id: int, outcome: transport.Outcome, *, now: datetime, give_up: bool
) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
    number = delivery.attempts + 1
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=number,
        started_at=now,
        duration_ms=outcome.duration_ms,
        status_code=outcome.status_code,
        error=outcome.error,
        response_excerpt=outcome.response_excerpt,
    )
    delivery.attempts = number
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    if outcome.ok:
        delivery.state = WebhookDelivery.State.SUCCEEDED
        delivery.delivered_at = timezone.now()
    elif give_up or number >= settings.WEBHOOK_MAX_ATTEMPTS:
        delivery.state = WebhookDelivery.State.FAILED
    else:
        delivery.next_attempt_at = now + timedelta(seconds=retry_delay_seconds(number))
    delivery.save()
    return delivery


def deliveries_send_due(*, now: datetime | None = None, limit: int | None = None) -> list[int]:
    """Beat: tries the due deliveries, oldest due first; returns the ids it tried. Each POST
    is bounded by WEBHOOK_TIMEOUT_SECONDS, and a batch by `limit`, so one beat run ends well
    within its task's time limit however many receivers are down."""
    now = now or timezone.now()
    limit = limit or settings.WEBHOOK_DELIVERY_BATCH
    due = list(
        WebhookDelivery.objects.filter(
            state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now
        )
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return [pk for pk in due if delivery_attempt(delivery_id=pk, now=now) is not None]
