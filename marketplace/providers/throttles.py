from marketplace.core.throttles import CountingRateThrottle


class AgentRateThrottle(CountingRateThrottle):
    """Per agent credential, so one misbehaving agent cannot starve the others."""

    scope = "agent"

    def get_cache_key(self, request, view):
        machine_id = getattr(request.user, "machine_id", None)
        ident = f"machine-{machine_id}" if machine_id else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
