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
