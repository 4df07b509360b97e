import django_filters

from marketplace.listings import selectors
from marketplace.listings.models import Interconnect, Listing, Precision
from marketplace.providers.models import Machine

# Ties break on id in the direction of the sort, so each order is one (sort key, id) index walked
# forwards or backwards, and a cursor is a single seek into it.
SORTS = {
    "price": ("price_per_hour", "id"),
    "-price": ("-price_per_hour", "-id"),
    "tflops": ("verified_tflops", "id"),
    "-tflops": ("-verified_tflops", "-id"),
    "price_per_tflop_hour": ("price_per_tflop_hour", "id"),
    "-price_per_tflop_hour": ("-price_per_tflop_hour", "-id"),
}


class ListingSearchFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(
        field_name="accelerator_kind", choices=Machine.AcceleratorKind.choices
    )
    # Part of a model name, any case ("h100"); see filter_model.
    model = django_filters.CharFilter(method="filter_model", max_length=100)
    min_count = django_filters.NumberFilter(
        field_name="accelerator_count", lookup_expr="gte", min_value=1, max_value=10**6
    )
    min_memory = django_filters.NumberFilter(
        field_name="memory_per_accelerator_gb", lookup_expr="gte", min_value=0, max_value=10**6
    )
    max_price = django_filters.NumberFilter(
        field_name="price_per_hour", lookup_expr="lte", min_value=0, max_value=10**18
    )
    region = django_filters.CharFilter(method="filter_region", max_length=40)
    interconnect = django_filters.ChoiceFilter(choices=Interconnect.choices)
    precision = django_filters.ChoiceFilter(choices=Precision.choices, method="filter_precision")
    # At least this many accelerators free for an order right now.
    min_free = django_filters.NumberFilter(method="filter_min_free", min_value=1, max_value=10**6)
    min_tflops = django_filters.NumberFilter(
        field_name="verified_tflops", lookup_expr="gte", min_value=0, max_value=10**9
    )
    sort = django_filters.ChoiceFilter(
        choices=[(k, k) for k in SORTS], method="filter_sort", empty_label=None
    )

    class Meta:
        model = Listing
        fields: list[str] = []

    def filter_region(self, queryset, name, value):
        # Regions are stored in lower case (publishing accepts only [a-z0-9-]), so an exact match
        # on the lowered value finds what iexact did, and can use the (is_searchable, region)
        # index, which iexact's LIKE (SQLite) and UPPER() (PostgreSQL) cannot.
        return queryset.filter(region=value.lower())

    def filter_model(self, queryset, name, value):
        # A LIKE '%h100%' cannot use an index, and with a sort it is tested row by row along the
        # sort's index until a page is found: on a large market, most of the table when the
        # model sorts late. The market has few distinct model names (read by an index skip
        # scan), so the substring is matched against those and the search filters on equality,
        # which walks the (model, price) index for the default order.
        return queryset.filter(model__in=selectors.listing_models_matching(value))

    def filter_min_free(self, queryset, name, value):
        return selectors.listings_with_free_at_least(queryset, free=int(value))

    def filter_precision(self, queryset, name, value):
        return queryset.filter(precisions__contains=f",{value},")

    def filter_sort(self, queryset, name, value):
        # Listings without a verified figure sort last whichever way the figure is ordered.
        key = SORTS[value][0].lstrip("-")
        if key in ("verified_tflops", "price_per_tflop_hour"):
            queryset = queryset.filter(**{f"{key}__isnull": False})
        return queryset.order_by(*SORTS[value])
