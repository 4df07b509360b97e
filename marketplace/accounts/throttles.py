from rest_framework.throttling import AnonRateThrottle


class AuthRateThrottle(AnonRateThrottle):
    """Per client IP on sign-up, login and agent registration: slows password and token guessing."""

    scope = "auth"
