"""HTTP to the marketplace API. A Transport moves bytes; AgentApi knows the endpoints."""

from __future__ import annotations

import json
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from workers.verification import safe_json

GZIP_MAGIC = b"\x1f\x8b"
BACKOFF_BASE, BACKOFF_MAX = 1.0, 60.0
# A server that does not accept the connection within this is unreachable; the read timeout
# (the Transport's `timeout`) must outlast the longest long poll (25 s) instead.
CONNECT_TIMEOUT = 10.0
# TCP keepalives on every connection to the server: a long poll is a silent connection for up
# to 25 s, and NATs and proxies drop silent connections. Probes after 15 s of silence every
# 5 s, and a peer that misses 3 counts as gone (the request then fails and is retried with
# backoff) instead of the agent waiting on a dead socket until its read timeout.
KEEPALIVE_OPTIONS = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)] + [
    (socket.IPPROTO_TCP, getattr(socket, name), value)
    for name, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
]


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: agents that lost the server together do not all
    come back in the same second."""
    rng = rng or random.Random()
    return rng.uniform(0, min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt))


class ApiError(Exception):
    """The server answered with a 4xx: not worth retrying as is."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status, self.code, self.message, self.detail = status, code, message, detail


class ServerUnreachable(Exception):
    """Connection refused, timeout or a 5xx: retry with backoff."""


class Transport(Protocol):
    def request(
        self, method: str, path: str, *, params: dict | None = None, body: bytes | None = None
    ) -> tuple[int, Any]: ...


def _keepalive_adapter():
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection

    class KeepAliveAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["socket_options"] = [*HTTPConnection.default_socket_options, *KEEPALIVE_OPTIONS]
            super().init_poolmanager(*args, **kwargs)

    return KeepAliveAdapter()


class RequestsTransport:
    """One keep-alive session (the connection is reused between polls). A connection that a
    proxy or a restarted server dropped fails its request as ServerUnreachable; callers retry
    with backoff and jitter, and the server hands a dispatched job out again, so nothing the
    agent was given is lost with the connection."""

    def __init__(self, base_url: str, credential: str | None = None, timeout: float = 60) -> None:
        import requests

        self._requests = requests
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        adapter = _keepalive_adapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Content-Type"] = "application/json"
        if credential:
            self.session.headers["Authorization"] = f"Token {credential}"
        self.timeout = timeout

    def request(self, method, path, *, params=None, body=None):
        # A gzip body (the challenge answer) says so: the server also sniffs the magic bytes,
        # but proxies and logs should see the encoding.
        headers = {"Content-Encoding": "gzip"} if body and body[:2] == GZIP_MAGIC else None
        try:
            response = self.session.request(
                method,
                self.base_url + path,
                params=params,
                data=body,
                headers=headers,
                timeout=(CONNECT_TIMEOUT, self.timeout),
            )
        except self._requests.exceptions.InvalidURL as exc:
            raise ApiError(0, "bad_url", f"invalid server URL: {exc}") from None
        except self._requests.exceptions.RequestException as exc:
            raise ServerUnreachable(f"{self.base_url} unreachable: {exc}") from None
        if response.status_code == 204 or not response.content:
            return response.status_code, None
        try:
            # Depth-bounded: a hostile or broken server's deeply nested reply fails this call
            # with ApiError instead of overflowing the agent's stack.
            return response.status_code, safe_json.loads(response.content)
        except ValueError as exc:
            if response.status_code >= 500:
                return response.status_code, None
            raise ApiError(
                response.status_code,
                "not_json",
                f"{self.base_url} did not answer with usable JSON ({exc}): "
                "is it the marketplace API?",
            ) from None


def _check(status: int, data: Any) -> Any:
    if status >= 500:
        raise ServerUnreachable(f"server error HTTP {status}")
    if status >= 400 or status == 0:
        error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
        raise ApiError(
            status,
            error.get("code", "error"),
            error.get("message", f"HTTP {status}"),
            error.get("detail"),
        )
    return data


@dataclass
class AgentApi:
    transport: Transport
    prefix: str = "/api/v1"
    # When (time.monotonic()) the server last recorded this machine as alive: when the last
    # heartbeat was sent, or when the last poll for work was answered (the server records a poll
    # as a heartbeat at its start and, if it found nothing, again at its end).
    server_saw_at: float = field(default=float("-inf"), compare=False)

    def _seen_since(self, sent: float) -> None:
        self.server_saw_at = max(self.server_saw_at, sent)

    def _call(self, method: str, path: str, *, params=None, payload=None, body=None) -> Any:
        if payload is not None:
            body = json.dumps(payload).encode()
        status, data = self.transport.request(method, self.prefix + path, params=params, body=body)
        return _check(status, data)

    def register(self, token: str, name: str, hardware: dict, version: str) -> dict:
        payload = {
            "registration_token": token,
            "name": name,
            "hardware": hardware,
            "agent_version": version,
        }
        return self._call("POST", "/agent/register", payload=payload)

    def heartbeat(self) -> dict:
        sent = time.monotonic()
        answer = self._call("POST", "/agent/heartbeat", body=b"")
        self._seen_since(sent)
        return answer

    def next_job(self, wait: int) -> dict | None:
        answer = self._call("GET", "/agent/jobs/next", params={"wait": wait})
        self._seen_since(time.monotonic())
        return answer

    def commit(self, job_id: int, body: bytes) -> dict:
        return self._call("POST", f"/agent/jobs/{job_id}/commitment", body=body)

    def sketch(self, job_id: int, body: bytes) -> dict:
        return self._call("POST", f"/agent/jobs/{job_id}/sketch", body=body)

    def challenge(self, job_id: int, wait: int) -> dict | None:
        return self._call("GET", f"/agent/jobs/{job_id}/challenge", params={"wait": wait})

    def answer(self, job_id: int, body: bytes) -> dict:
        return self._call("POST", f"/agent/jobs/{job_id}/answer", body=body)

    def job(self, job_id: int) -> dict:
        return self._call("GET", f"/agent/jobs/{job_id}")
