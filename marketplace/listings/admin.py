from django.contrib import admin

from marketplace.listings.models import Listing, ReservedPrice


class ReservedPriceInline(admin.TabularInline):
    model = ReservedPrice
    extra = 0
    readonly_fields = ["term", "price_per_hour"]
    can_delete = False


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "model",
        "accelerator_count",
        "region",
        "price_per_hour",
        "verified_tflops",
        "status",
        "is_searchable",
    ]
    list_filter = ["status", "is_searchable", "accelerator_kind", "interconnect", "region"]
    search_fields = ["model", "vendor", "region", "provider__name"]
    # Prices and verified figures change only through services that keep derived fields in step.
    readonly_fields = [
        "status",
        "is_searchable",
        "price_per_hour",
        "interruptible_floor_per_hour",
        "verified_tflops",
        "price_per_tflop_hour",
    ]
    inlines = [ReservedPriceInline]
