"""Rate limits, counted in the shared cache (Redis): every worker and every restart sees the same
count.

DRF's SimpleRateThrottle keeps a list of timestamps that it reads, extends and writes back. Two
requests served at the same moment (two threads, or two workers on one Redis) read the same list
and one write is lost, so a burst passes several times the limit. CountingRateThrottle counts with
one INCR in Redis instead (with the window's expiry set atomically by whoever opens it): no count
is lost.

The window opens at a key's first request and lasts the rate's period; within it at most N
requests pass. That is a fixed window, so a client may get N at the end of one window and N at the
start of the next (2N within one period at worst), but never more than N per window, on any
number of workers."""

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class CountingRateThrottle(SimpleRateThrottle):
    def get_rate(self):
        # From the settings at each request, not from the copy DRF takes at import (its
        # THROTTLE_RATES class attribute), so a settings override (a test's) is the rate in force.
        try:
            return api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        except KeyError:
            raise ImproperlyConfigured(
                f"No throttle rate set for the {self.scope!r} scope"
            ) from None

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        if self._count() > self.num_requests:
            return self.throttle_failure()
        return True

    def _count(self) -> int:
        # One round trip: INCR, and the window's expiry set by whoever opens it, atomically in
        # Redis. (It was SET NX, EXISTS, INCR, and EXPIRE on a window's first request: a
        # quarter of the agent channel's CPU at 5,000 agents.)
        count = self.cache.incr_in_window(self.key, seconds=int(self.duration))
        if count == 1:
            self.cache.set(f"{self.key}:opened", self.now, timeout=self.duration)
        return count

    def wait(self):
        opened = self.cache.get(f"{self.key}:opened")
        if opened is None:
            return self.duration
        return max(0.0, opened + self.duration - self.now)


class UserWriteRateThrottle(CountingRateThrottle):
    """Per signed-in user, on writes (POST, PUT, PATCH, DELETE) only: one account cannot flood
    the write paths (orders, listings, providers, tokens) whatever address it comes from. Reads
    are not counted. Sign-up, login and agent registration have the per-address "auth" scope and
    agent routes the per-machine "agent" scope (their views set their own throttle_classes)."""

    scope = "user_write"

    def get_cache_key(self, request, view):
        if request.method in SAFE_METHODS or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
