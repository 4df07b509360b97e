"""Delivery signatures: `X-Marketplace-Signature: t=<unix seconds>,v1=<hex>` where
v1 = HMAC-SHA256(secret, f"{t}." + body bytes), one v1 per signing secret (two during the
rollover after a rotation). A receiver recomputes it over the raw body it received (not a
re-serialisation), compares with each v1 in constant time, and refuses a `t` further than its
replay window (SIGNATURE_TOLERANCE_SECONDS) from its own clock. `verify` is the reference
implementation the docs point to; it imports nothing from Django."""

import hashlib
import hmac
import secrets
import time

HEADER = "X-Marketplace-Signature"
SECRET_PREFIX = "whsec_"
SIGNATURE_TOLERANCE_SECONDS = 300


def secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def header_value(*, secrets: list[str], timestamp: int, body: bytes) -> str:
    """One v1 per secret: the current one first, and during a rotation's rollover the previous
    one too, so a receiver holding either verifies."""
    signatures = ",".join(
        f"v1={signature(secret=secret, timestamp=timestamp, body=body)}" for secret in secrets
    )
    return f"t={timestamp},{signatures}"


def verify(
    *,
    secret: str,
    header: str,
    body: bytes,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """True when `header` signs `body` with `secret` and its time is within `tolerance` seconds
    of `now`: an old delivery captured on the way cannot be replayed later."""
    pairs = [item.split("=", 1) for item in header.split(",") if "=" in item]
    times = [value for key, value in pairs if key == "t"]
    try:
        timestamp = int(times[0]) if len(times) == 1 else None
    except ValueError:
        timestamp = None
    now = time.time() if now is None else now
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret=secret, timestamp=timestamp, body=body)
    # Any v1 may be the one signed with this secret (several during a rotation's rollover).
    return any(hmac.compare_digest(expected, value) for key, value in pairs if key == "v1")
