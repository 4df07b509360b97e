from marketplace.core.throttles import CountingRateThrottle


class AuthRateThrottle(CountingRateThrottle):
    """Per client address on sign-up, login and agent registration: slows password and token
    guessing. The address is the socket's unless NUM_PROXIES trusted proxies are in front (see
    settings): a client-sent X-Forwarded-For would otherwise give every guess a fresh count."""

    scope = "auth"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
