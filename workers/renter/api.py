"""The marketplace API as the renter CLI uses it: one requests session, every error shape turned
into one exception with a readable message."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import requests

DEFAULT_CONFIG = Path("~/.config/gpu-marketplace/renter.json")


class CliError(Exception):
    """Something the user should read; the CLI prints it and exits 2."""


class ApiError(CliError):
    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        self.status, self.code, self.message, self.detail = status, code, message, detail
        super().__init__(describe(status, code, message, detail))


def describe(status: int, code: str, message: str, detail: Any) -> str:
    """One line (or a few) for any {"error": {code, message, detail}}: field errors listed by
    field, a throttle with its wait, the rest as the server worded them."""
    text = f"{message} [{code}, HTTP {status}]"
    if isinstance(detail, dict) and detail:
        if code == "throttled" and "retry_after_seconds" in detail:
            return f"{text}: retry in {detail['retry_after_seconds']} s"
        lines = []
        for field, problems in detail.items():
            if isinstance(problems, list):
                problems = "; ".join(str(p) for p in problems)
            lines.append(f"  {field}: {problems}")
        text += "\n" + "\n".join(lines)
    return text


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("RENTER_CONFIG") or DEFAULT_CONFIG).expanduser()


def config_load(path: Path) -> dict:
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read {path}: {exc}") from None
    if os.environ.get("RENTER_URL"):
        data["url"] = os.environ["RENTER_URL"]
    if os.environ.get("RENTER_TOKEN"):
        data["token"] = os.environ["RENTER_TOKEN"]
    return data


def config_save(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(path, 0o600)


class Api:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60) -> None:
        if not url:
            raise CliError("no server URL: run `login --url …` or set RENTER_URL")
        self.base = url.rstrip("/") + "/api/v1"
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Token {token}"
        self.timeout = timeout

    def request(self, method: str, path: str, *, stream: bool = False, **kwargs) -> Any:
        try:
            response = self.session.request(
                method, self.base + path, timeout=self.timeout, stream=stream, **kwargs
            )
        except requests.RequestException as exc:
            raise CliError(f"cannot reach {self.base}: {exc}") from None
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            raise ApiError(
                response.status_code,
                error.get("code", "error"),
                error.get("message", response.reason or f"HTTP {response.status_code}"),
                error.get("detail"),
            )
        if stream:
            return response
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"{self.base}{path} did not answer JSON: is it the marketplace?"
            ) from None

    def get(self, path: str, **kwargs) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> Any:
        return self.request("POST", path, **kwargs)
