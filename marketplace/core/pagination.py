import base64
import binascii
import heapq
import itertools
import json
import math
import re
from functools import reduce
from operator import or_

from django.db.models import Q
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


_MAX_CURSOR_LENGTH = 512


def _ordering(queryset) -> list[tuple[str, bool]]:
    """The queryset's ORDER BY as (field, descending) pairs; `pk` is named by its column."""
    pk = queryset.model._meta.pk.attname
    fields = []
    for term in queryset.query.order_by:
        if not isinstance(term, str):
            raise TypeError("keyset pagination needs an ordering by field names")
        name = term.lstrip("-")
        fields.append((pk if name == "pk" else name, term.startswith("-")))
    return fields


def _row_value(row, field: str):
    return row[field] if isinstance(row, dict) else getattr(row, field)


def _names(ordering: list[tuple[str, bool]]) -> list[str]:
    return [f"-{name}" if descending else name for name, descending in ordering]


def cursor_encode(ordering: list[tuple[str, bool]], row) -> str:
    payload = {"k": _names(ordering), "v": [_row_value(row, name) for name, _ in ordering]}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_cursor(reason: str):
    return ValidationError({"cursor": [f"Invalid cursor: {reason}."]})


def cursor_decode(ordering: list[tuple[str, bool]], raw: str) -> list:
    """The sort-key values a cursor carries, checked against this search's ordering. Anything else
    (garbage, another sort's cursor, values of the wrong type) is a 400, never a query."""
    if not raw or len(raw) > _MAX_CURSOR_LENGTH or not raw.isascii():
        raise _bad_cursor("empty, too long or not ASCII")
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad_cursor("not a cursor this API issued") from None
    names = _names(ordering)
    if not isinstance(data, dict) or data.get("k") != names:
        raise _bad_cursor("it belongs to another sort order")
    values = data.get("v")
    if not isinstance(values, list) or len(values) != len(names):
        raise _bad_cursor("not a cursor this API issued")
    for value in values:
        # Sort keys are numbers (ids, prices, figures); rows with a null key are not sorted on it.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_cursor("not a cursor this API issued")
        if isinstance(value, float) and not math.isfinite(value):
            raise _bad_cursor("not a cursor this API issued")
        if isinstance(value, int) and abs(value) > 2**63 - 1:
            raise _bad_cursor("out of range")
    return values


def keyset_after(ordering: list[tuple[str, bool]], values: list) -> Q:
    """Rows strictly after the cursor in the ordering: (a, b) > (x, y) spelled out per direction,
    plus a bound on the leading key so the database can start its index scan at the cursor."""
    branches = []
    for i, (name, descending) in enumerate(ordering):
        q = Q(**{f"{n}": v for (n, _), v in zip(ordering[:i], values[:i], strict=True)})
        q &= Q(**{f"{name}__{'lt' if descending else 'gt'}": values[i]})
        branches.append(q)
    lead, descending = ordering[0]
    return Q(**{f"{lead}__{'lte' if descending else 'gte'}": values[0]}) & reduce(or_, branches)


class CappedCountPagination(DefaultPagination):
    """Page-number pagination that counts at most COUNT_CAP matches. An exact COUNT(*) scans
    every matching row on every page; past a thousand results nobody needs the exact figure, and
    search stays fast on a large market. `count_is_exact` says which kind of figure `count` is;
    `next` comes from fetching one row more than the page, so deep pages still work.

    Keyset pagination too: every page carries `next_cursor`; `?cursor=` (instead of `?page=`)
    returns the rows after it in the same order, found by an index seek however deep, and each
    row exactly once even while rows are added. In cursor mode `next` follows the cursor and
    `previous` is null (cursors go forwards)."""

    COUNT_CAP = 1000
    cursor_query_param = "cursor"

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.page_size_value = self.get_page_size(request)
        raw_cursor = request.query_params.get(self.cursor_query_param)
        raw_page = request.query_params.get(self.page_query_param)
        ordering = _ordering(queryset)
        self.ordering = ordering
        self.cursor_mode = raw_cursor is not None
        if self.cursor_mode:
            if raw_page is not None:
                raise ValidationError({"cursor": ["Give either page or cursor, not both."]})
            after = keyset_after(ordering, cursor_decode(ordering, raw_cursor))
            self.page_number = 1
            rows = self._fetch(queryset.filter(after), view, 0, self.page_size_value + 1)
        else:
            page = _positive_int(raw_page if raw_page is not None else "1")
            if page is None or not 1 <= page <= 10**6:
                raise NotFound("Invalid page.")
            self.page_number = page
            offset = (self.page_number - 1) * self.page_size_value
            rows = self._fetch(queryset, view, offset, self.page_size_value + 1)
            if not rows and self.page_number > 1:
                raise NotFound("Invalid page.")
        self.has_next = len(rows) > self.page_size_value
        rows = rows[: self.page_size_value]
        self.next_cursor = cursor_encode(ordering, rows[-1]) if self.has_next else None
        if not self.cursor_mode and self.page_number == 1 and not self.has_next:
            counted = len(rows)  # the whole result is on this page: no need to ask again
        else:
            # Only the key: a page read as values() would otherwise count through every column
            # (a heap fetch per row) where the index alone answers.
            counted = queryset.order_by().values("pk")[: self.COUNT_CAP + 1].count()
        self.count = min(counted, self.COUNT_CAP)
        self.count_is_exact = counted <= self.COUNT_CAP
        return rows

    MAX_PARTITIONS = 16

    def _fetch(self, queryset, view, offset: int, limit: int) -> list:
        """Rows offset..offset+limit in the queryset's order. A view may name a partition of the
        results, `page_partition = (field, [values])`: a filter that matches several values of
        an indexed column (say two model names) leaves them spread thin along the sort index,
        and the database walks most of it to fill a page. Then each value's rows are read
        apart, in order, along its own (field, sort key) index, and merged here."""
        field, values = getattr(view, "page_partition", None) or (None, ())
        directions = {descending for _, descending in self.ordering}
        if not 2 <= len(values) <= self.MAX_PARTITIONS or len(directions) != 1:
            return list(queryset[offset : offset + limit])

        def key(row):
            return tuple(_row_value(row, name) for name, _ in self.ordering)

        branches = [queryset.filter(**{field: value})[: offset + limit] for value in values]
        merged = heapq.merge(*branches, key=key, reverse=directions.pop())
        return list(itertools.islice(merged, offset, offset + limit))

    def get_next_link(self):
        if not self.has_next:
            return None
        url = self.request.build_absolute_uri()
        if self.cursor_mode:
            return replace_query_param(url, self.cursor_query_param, self.next_cursor)
        return replace_query_param(url, self.page_query_param, self.page_number + 1)

    def get_previous_link(self):
        if self.cursor_mode or self.page_number <= 1:
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
                "next_cursor": self.next_cursor,
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["count_is_exact"] = {"type": "boolean"}
        schema["properties"]["next_cursor"] = {"type": "string", "nullable": True}
        schema["required"] = [*schema.get("required", []), "count_is_exact"]
        return schema

    def get_schema_operation_parameters(self, view):
        return [
            *super().get_schema_operation_parameters(view),
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "The next_cursor of the previous page (instead of page).",
                "schema": {"type": "string"},
            },
        ]
