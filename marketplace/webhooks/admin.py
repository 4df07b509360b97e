"""The delivery log for operators: read-only, as every record of something that happened is
(marketplace/core/admin.ReadOnlyAdmin). Secrets never appear."""

from django.contrib import admin
from django.utils.html import format_html_join

from marketplace.core import display
from marketplace.core.admin import ReadOnlyAdmin
from marketplace.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

# Payload fields that are token amounts, and what each is priced per ("" for a plain amount).
_MONEY = {
    "price_per_hour": "accelerator-hour",
    "escrow_amount": "",
    "amount_owed": "",
    "refund_amount": "",
    "amount": "",
}
_SECONDS = {"duration_seconds", "billable_seconds"}


def payload_readable(payload: dict) -> list[tuple[str, str]]:
    rows = []
    for key, value in (payload.get("data") or {}).items():
        if key in _MONEY and value is not None:
            value = display.money(int(value), _MONEY[key])
        elif key in _SECONDS:
            value = display.duration(value)
        rows.append((key, "–" if value is None or value == "" else str(value)))
    return rows


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "url", "is_active", "created_at", "secret_rotated_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "user__username"]
    hidden_fields = ("secret",)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["number", "started_at", "duration_text", "status_code", "error", "response_excerpt"]
    readonly_fields = fields

    @admin.display(description="duration")
    def duration_text(self, obj):
        return f"{obj.duration_ms:,} ms"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "event_type",
        "event_key",
        "endpoint",
        "state",
        "attempts",
        "last_status_code",
        "occurred_at",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["state", "event_type", "created_at"]
    search_fields = ["event_key", "endpoint__url", "endpoint__user__username"]
    list_select_related = ["endpoint"]
    inlines = [WebhookAttemptInline]

    def get_fields(self, request, obj=None):
        return [*super().get_fields(request, obj), "payload_text"]

    @admin.display(description="payload (amounts in USD)")
    def payload_text(self, obj):
        return format_html_join("", "<div><b>{}</b>: {}</div>", payload_readable(obj.payload))
