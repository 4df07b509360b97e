from django.contrib import admin, messages

from marketplace.core.admin import ReadOnlyAdmin
from marketplace.core.errors import ApplicationError
from marketplace.orders import services
from marketplace.orders.models import Order


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    """An order is changed only by its state machine (the renter, the chain indexer, metering,
    verification). Its page is read-only and tells the money's story on chain below the fields."""

    money_fields = {
        "price_per_hour": "accelerator-hour",
        "rate_per_second": "second",
        "escrow_amount": "",
        "amount_owed": "",
    }
    seconds_fields = ("duration_seconds", "billable_seconds")
    list_display = [
        "id",
        "renter",
        "machine",
        "state",
        "pricing_mode",
        "accelerators",
        "escrow_amount_usd",
        "amount_owed_usd",
        "created_at",
        "ended_at",
    ]
    list_filter = ["state", "pricing_mode", "end_reason"]
    search_fields = ["lease_id", "renter__username", "idempotency_key"]
    list_select_related = ["renter", "machine"]
    change_form_template = "admin/orders/order/change_form.html"
    hidden_fields = ("request_fingerprint",)
    actions = ["cancel"]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Imported here: the story reads payments and benchmarks, which sit above orders.
        from marketplace.dashboard.selectors import order_chain_story

        extra_context = dict(extra_context or {})
        if str(object_id).isdigit() and Order.objects.filter(pk=object_id).exists():
            extra_context["story"] = order_chain_story(order_id=int(object_id))
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(
        description="Cancel selected orders (created or funded only)",
        permissions=["operate"],
    )
    def cancel(self, request, queryset):
        for order in queryset.order_by("pk"):
            try:
                services.order_cancel(
                    order_id=order.pk, reason=f"cancelled by staff ({request.user})"
                )
            except ApplicationError as exc:
                self.message_user(request, f"Order {order.pk}: {exc.message}", messages.WARNING)
