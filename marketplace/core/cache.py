"""The cache: Django's Redis backend, on the Redis the stack already runs.

Throttle counters live here, so every gunicorn worker counts against the same limit and a restart
does not reset it. Celery's broker may share the Redis database: Django's RedisCache.clear() is a
FLUSHDB, which would also delete Celery's queued tasks, so clear() here deletes only the keys
under this cache's KEY_PREFIX."""

from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured

# KEYS[1]: the counter; ARGV[1]: the window's length in seconds.
_INCR_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class PrefixedRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        if not self.key_prefix:
            # Without a prefix, "this cache's keys" would be every key in the database.
            raise ImproperlyConfigured("PrefixedRedisCache needs a KEY_PREFIX")

    def incr_in_window(self, key: str, *, seconds: int) -> int:
        """Adds one to the counter `key` and returns it; the first increment of a window (the
        counter absent) gives it `seconds` to live. One round trip, atomic in Redis. The counter
        is a plain integer under the cache's own key, so get() reads it like any value."""
        full_key = self.make_and_validate_key(key)
        client = self._cache.get_client(full_key, write=True)
        return int(client.eval(_INCR_IN_WINDOW, 1, full_key, seconds))

    def clear(self):
        client = self._cache.get_client(None, write=True)
        deleted = 0
        batch = []
        # SCAN, not KEYS: it never blocks Redis for long, however many keys the database holds.
        for key in client.scan_iter(match=f"{self.key_prefix}:*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
        return bool(deleted)
