from django.contrib import admin

from marketplace.core import display
from marketplace.core.admin import MarketplaceAdmin
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
class ListingAdmin(MarketplaceAdmin):
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
    # Prices and verified figures change only through services that keep derived fields in step;
    # the machine and provider a listing belongs to never change.
    exclude = [
        "price_per_hour",
        "interruptible_floor_per_hour",
        "price_per_tflop_hour",
    ]
    readonly_fields = [
        "machine",
        "provider",
        "status",
        "is_searchable",
        "price_per_hour_usd",
        "interruptible_floor_per_hour_usd",
        "verified_tflops",
        "price_per_tflop_hour_usd",
        "created_at",
        "updated_at",
    ]
    inlines = [ReservedPriceInline]

    def has_add_permission(self, request):
        # A listing is published by its provider through the API (listing_publish).
        return False
