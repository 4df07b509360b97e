"""The one way out to a receiver: checks where a URL points before every connection.

A webhook URL is chosen by any user, so without a check the server would POST wherever it is
told, including to itself, the cloud metadata service (169.254.169.254) or the private network
behind it (SSRF). Every address the name resolves to must be public, unless
WEBHOOK_ALLOW_PRIVATE_TARGETS (tests, a local receiver). The name is resolved once per attempt
and the connection goes to the address that was checked, so a DNS answer that changes between
check and connect (rebinding) gains nothing. Redirects are not followed (http.client never does):
a 3xx is a failed attempt, not a hop to an address nobody checked. Timeouts are short."""

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

RESPONSE_EXCERPT_BYTES = 500


class TargetRefused(Exception):
    """The URL may not be used (scheme, credentials in it, or a non-public address)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    response_excerpt: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def target_parse(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("The URL must start with https:// (or http://).")
    if parts.username or parts.password:
        raise TargetRefused("The URL must not carry a user name or password.")
    if not parts.hostname:
        raise TargetRefused("The URL has no host.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused("The URL's port is not a number from 1 to 65535.") from exc
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=parts.scheme, host=parts.hostname, port=port, path=path)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def target_resolve(target: Target) -> str:
    """The address to connect to: the first the name resolves to, once every one of them has
    been checked (a name with one private address among public ones is refused outright)."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"The host {target.host!r} does not resolve.") from exc
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise TargetRefused(f"The host {target.host!r} does not resolve.")
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        for address in addresses:
            if not _public(address):
                raise TargetRefused(
                    f"The host {target.host!r} resolves to {address}, which is not a public "
                    "address."
                )
    return addresses[0]


def url_check(url: str) -> None:
    """Raises TargetRefused for a URL that could not be delivered to now."""
    target_resolve(target_parse(url))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, *, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, *, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # The certificate is checked against the name in the URL, not the pinned address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(*, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """POSTs once. Never raises for the receiver's faults: they are the outcome."""
    started = time.monotonic()

    def outcome(status_code=None, error="", excerpt="") -> Outcome:
        return Outcome(
            status_code=status_code,
            error=error[:300],
            response_excerpt=excerpt[:RESPONSE_EXCERPT_BYTES],
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    try:
        target = target_parse(url)
        address = target_resolve(target)
    except TargetRefused as exc:
        return outcome(error=f"refused: {exc}")
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(
        target.host, target.port, address=address, timeout=settings.WEBHOOK_TIMEOUT_SECONDS
    )
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        excerpt = response.read(RESPONSE_EXCERPT_BYTES).decode("utf-8", "replace")
        error = ""
        if 300 <= response.status < 400:
            error = "redirects are not followed"
        return outcome(response.status, error, excerpt)
    except (OSError, http.client.HTTPException) as exc:
        return outcome(error=f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()
