from django.contrib import admin

from marketplace.core import display
from marketplace.core.admin import ReadOnlyAdmin
from marketplace.listings.models import Listing, ReservedPrice


class ReservedPriceInline(admin.TabularInline):
    model = ReservedPrice
    extra = 0
    fields = readonly_fields = ["term", "price"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="price (USD)")
    def price(self, obj):
        return display.money(obj.price_per_hour, "accelerator-hour")


@admin.register(Listing)
class ListingAdmin(ReadOnlyAdmin):
    money_fields = {
        "price_per_hour": "accelerator-hour",
        "interruptible_floor_per_hour": "accelerator-hour",
        "price_per_tflop_hour": "verified TFLOP-hour",
    }
    list_display = [
        "id",
        "model",
        "accelerator_count",
        "region",
        "price_per_hour_usd",
        "verified_tflops",
        "status",
        "is_searchable",
        "updated_at",
    ]
    list_filter = ["status", "is_searchable", "accelerator_kind", "interconnect", "region"]
    search_fields = ["model", "vendor", "region", "provider__name"]
    list_select_related = ["machine", "provider"]
    # A listing changes only through its services (publish, pause, close, verified figures),
    # which keep the derived search fields and the search cache in step: read-only here.
    inlines = [ReservedPriceInline]
