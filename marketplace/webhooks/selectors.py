"""Reads of the webhooks app. A user sees only their own endpoints and deliveries: another
user's endpoint is a 404, never a 403, so ids reveal nothing."""

from django.db.models import QuerySet

from marketplace.accounts.models import User
from marketplace.core.errors import NotFoundError
from marketplace.webhooks.models import WebhookDelivery, WebhookEndpoint


def endpoint_list_for(*, user: User) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(user=user).order_by("pk")


def endpoint_get_for(*, user: User, endpoint_id: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(user=user, pk=endpoint_id).first()
    if endpoint is None:
        raise NotFoundError("No such webhook endpoint.", code="webhooks_not_found")
    return endpoint


def delivery_list_for(*, user: User, endpoint_id: int) -> QuerySet[WebhookDelivery]:
    endpoint = endpoint_get_for(user=user, endpoint_id=endpoint_id)
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .prefetch_related("tries")
        .order_by("-created_at", "-pk")
    )
