"""HTTP to the marketplace API. A Transport moves bytes; AgentApi knows the endpoints."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Protocol

from workers.verification import safe_json

GZIP_MAGIC = b"\x1f\x8b"
BACKOFF_BASE, BACKOFF_MAX = 1.0, 60.0


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


class RequestsTransport:
    def __init__(self, base_url: str, credential: str | None = None, timeout: float = 60) -> None:
        import requests

        self._requests = requests
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
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
                timeout=self.timeout,
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
        return self._call("POST", "/agent/heartbeat", body=b"")

    def next_job(self, wait: int) -> dict | None:
        return self._call("GET", "/agent/jobs/next", params={"wait": wait})

    def commit(self, job_id: int, body: bytes) -> dict:
        return self._call("POST", f"/agent/jobs/{job_id}/commitment", body=body)

    def challenge(self, job_id: int, wait: int) -> dict | None:
        return self._call("GET", f"/agent/jobs/{job_id}/challenge", params={"wait": wait})

    def answer(self, job_id: int, body: bytes) -> dict:
        return self._call("POST", f"/agent/jobs/{job_id}/answer", body=body)

    def job(self, job_id: int) -> dict:
        return self._call("GET", f"/agent/jobs/{job_id}")
