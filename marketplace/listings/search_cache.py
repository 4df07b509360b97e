"""A short-lived cache of rendered search pages, in the shared Redis cache.

A search page is the same for every caller (search is public and shows nothing per user), so a
rendered page is kept for SEARCH_CACHE_SECONDS under a key made of the full request URL. Every
write that can change what search shows (a listing's fields or status, a machine's state, a
verified figure, an order taking or releasing capacity) bumps one generation counter; an entry
stored under an older generation is a miss. So a change is visible to the next request, and the
TTL bounds staleness only where no write happens: an unfunded hold that lapses by the clock. For
that, a page is kept no longer than until the earliest live hold it depends on expires.

The generation is read before the queries run and stored with the entry: a write that commits
while a page is being built bumps past it, and the page is a miss from then on.

Redis trouble never fails a search: a cache error is a miss, and a failed bump is logged (the TTL
then bounds staleness).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

GENERATION_KEY = "listings-search:generation"


@dataclass(frozen=True)
class Lookup:
    generation: int | None  # None: the cache is unavailable, do not store
    body: bytes | None


def ttl_seconds() -> int:
    return int(getattr(settings, "SEARCH_CACHE_SECONDS", 0))


def key_for(request, *, params: frozenset[str] | None = None) -> str:
    # Host and scheme are part of the page (its next/previous links are absolute URLs). The
    # query is sorted so that the same search spelled in another order shares one entry, and
    # parameters search does not read are left out, so `?junk=1`, `?junk=2`, ... cannot make an
    # entry each.
    query = urlencode(
        sorted(
            (k, v)
            for k, values in request.GET.lists()
            if params is None or k in params
            for v in values
        )
    )
    raw = f"{request.scheme}://{request.get_host()}{request.path}?{query}"
    return "listings-search:page:" + hashlib.sha256(raw.encode()).hexdigest()


def lookup(key: str) -> Lookup:
    if ttl_seconds() <= 0:
        return Lookup(None, None)
    try:
        found = cache.get_many([GENERATION_KEY, key])
    except Exception:  # noqa: BLE001 - any Redis failure is a miss, never a failed search
        logger.warning("search cache unavailable", exc_info=True)
        return Lookup(None, None)
    generation = found.get(GENERATION_KEY, 0)
    entry = found.get(key)
    if entry is not None and entry[0] == generation:
        return Lookup(generation, entry[1])
    return Lookup(generation, None)


def store(key: str, *, generation: int | None, body: bytes, seconds: float) -> None:
    seconds = int(min(seconds, ttl_seconds()))
    if generation is None or seconds < 1:
        return
    try:
        cache.set(key, (generation, body), timeout=seconds)
    except Exception:  # noqa: BLE001
        logger.warning("search cache unavailable", exc_info=True)


def _bump() -> None:
    try:
        cache.add(GENERATION_KEY, 0, timeout=None)
        cache.incr(GENERATION_KEY)
    except Exception:  # noqa: BLE001 - the write has committed; the TTL bounds staleness
        logger.warning("search cache invalidation failed", exc_info=True)


def invalidate_on_commit() -> None:
    """Called by every write that changes what search shows. The bump runs once the write has
    committed (at once outside a transaction), never inside it: it is a Redis call, and the
    writers (order transitions, verification) hold row locks. A page built from the old rows
    carries the generation read before its queries, which this bump leaves behind."""
    if ttl_seconds() <= 0:
        return
    transaction.on_commit(_bump)
