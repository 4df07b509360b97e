"""The cache: Django's Redis backend, on the Redis the stack already runs.

Throttle counters live here, so every gunicorn worker counts against the same limit and a restart
does not reset it. Celery's broker may share the Redis database: Django's RedisCache.clear() is a
FLUSHDB, which would also delete Celery's queued tasks, so clear() here deletes only the keys
under this cache's KEY_PREFIX."""

from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured


class PrefixedRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        if not self.key_prefix:
            # Without a prefix, "this cache's keys" would be every key in the database.
            raise ImproperlyConfigured("PrefixedRedisCache needs a KEY_PREFIX")

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
