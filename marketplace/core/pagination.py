import re

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

# ASCII digits only: str.isdigit() and int() also accept "²", "①" or Arabic-Indic digits, and
# int("²") raises, which made `?page=²` a 500. Seven digits bound the number before int() runs.
_NUMBER = re.compile(r"[0-9]{1,7}")


def _positive_int(raw: str) -> int | None:
    return int(raw) if _NUMBER.fullmatch(raw) else None


class DefaultPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request):
        # DRF silently falls back to the default for a bad page_size; a caller who asked for
        # something we will not do should be told so.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        size = _positive_int(raw)
        if size is None or not 1 <= size <= self.max_page_size:
            raise ValidationError(
                {"page_size": [f"Must be an integer from 1 to {self.max_page_size}."]}
            )
        return size


class CappedCountPagination(DefaultPagination):
    """Page-number pagination that counts at most COUNT_CAP matches. An exact COUNT(*) scans
    every matching row on every page; past a thousand results nobody needs the exact figure, and
    search stays fast on a large market. `count_is_exact` says which kind of figure `count` is;
    `next` comes from fetching one row more than the page, so deep pages still work."""

    COUNT_CAP = 1000

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.page_size_value = self.get_page_size(request)
        raw_page = request.query_params.get(self.page_query_param, "1")
        page = _positive_int(raw_page)
        if page is None or not 1 <= page <= 10**6:
            raise NotFound("Invalid page.")
        self.page_number = page
        offset = (self.page_number - 1) * self.page_size_value
        rows = list(queryset[offset : offset + self.page_size_value + 1])
        if not rows and self.page_number > 1:
            raise NotFound("Invalid page.")
        self.has_next = len(rows) > self.page_size_value
        counted = queryset.order_by()[: self.COUNT_CAP + 1].count()
        self.count = min(counted, self.COUNT_CAP)
        self.count_is_exact = counted <= self.COUNT_CAP
        return rows[: self.page_size_value]

    def get_next_link(self):
        if not self.has_next:
            return None
        url = self.request.build_absolute_uri()
        return replace_query_param(url, self.page_query_param, self.page_number + 1)

    def get_previous_link(self):
        if self.page_number <= 1:
            return None
        url = self.request.build_absolute_uri()
        if self.page_number == 2:
            return remove_query_param(url, self.page_query_param)
        return replace_query_param(url, self.page_query_param, self.page_number - 1)

    def get_paginated_response(self, data):
        return Response(
            {
                "count": self.count,
                "count_is_exact": self.count_is_exact,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["count_is_exact"] = {"type": "boolean"}
        schema["required"] = [*schema.get("required", []), "count_is_exact"]
        return schema
