"""Delivery signatures: `X-Marketplace-Signature: t=<unix seconds>,v1=<hex>` where
v1 = HMAC-SHA256(secret, f"{t}." + body bytes). A receiver recomputes it over the raw body it
received (not a re-serialisation), compares in constant time, and refuses a `t` further than
its replay window (SIGNATURE_TOLERANCE_SECONDS) from its own clock. `verify` is the reference
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


def header_value(*, secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret=secret, timestamp=timestamp, body=body)}"


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
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, parts.get("v1", ""))
