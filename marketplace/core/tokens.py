"""Secrets handed to people and agents. Only a SHA-256 hash is stored, so a database leak does
not leak working credentials; the prefix lets a user tell their tokens apart in lists."""

import hashlib
import secrets


def token_generate(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_display_prefix(raw: str) -> str:
    return raw[:12]


def bearer_token(request, *, malformed_message: str) -> str | None:
    """The key of an `Authorization: Token <key>` (or `Bearer <key>`) header; None when the
    request carries no such header, so another authentication class may try."""
    from rest_framework import authentication, exceptions

    header = authentication.get_authorization_header(request).decode("latin-1").split()
    if not header or header[0].lower() not in ("token", "bearer"):
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed(malformed_message)
    return header[1]


def last_used_touch(credential) -> None:
    """Records when a token or credential was last used, at most once a minute: a write on
    every request would serialise readers."""
    from django.utils import timezone

    now = timezone.now()
    if credential.last_used_at is None or (now - credential.last_used_at).total_seconds() > 60:
        type(credential).objects.filter(pk=credential.pk).update(last_used_at=now)
