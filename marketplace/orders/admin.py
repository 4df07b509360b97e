from django.contrib import admin, messages

from marketplace.core.errors import ApplicationError
from marketplace.orders import services
from marketplace.orders.models import Order


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "renter",
        "listing",
        "state",
        "pricing_mode",
        "accelerators",
        "escrow_amount",
        "amount_owed",
        "created_at",
    ]
    list_filter = ["state", "pricing_mode"]
    search_fields = ["lease_id", "renter__username", "idempotency_key"]
    readonly_fields = [f.name for f in Order._meta.fields]
    actions = ["cancel"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel selected orders (created or funded only)")
    def cancel(self, request, queryset):
        for order in queryset.order_by("pk"):
            try:
                services.order_cancel(
                    order_id=order.pk, reason=f"cancelled by staff ({request.user})"
                )
            except ApplicationError as exc:
                self.message_user(request, f"Order {order.pk}: {exc.message}", messages.WARNING)
