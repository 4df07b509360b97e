"""The agent's config file: server URL and credential, readable by its owner only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DEFAULT_PATH = Path("~/.config/gpu-marketplace/agent.json")


class ConfigError(Exception):
    pass


def config_path(explicit: str | None) -> Path:
    raw = explicit or os.environ.get("AGENT_CONFIG") or str(DEFAULT_PATH)
    return Path(raw).expanduser()


def url_normalize(url: str) -> str:
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{url!r} is not a server URL; expected http(s)://host[:port]")
    if parsed.path not in ("", "/") or parsed.query:
        raise ConfigError(f"{url!r}: give the server's base URL only, without a path")
    return f"{parsed.scheme}://{parsed.netloc}"


def config_save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 from the start: the credential must never be readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed


def config_load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no agent config at {path}; run `register` first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read agent config {path}: {exc}") from None
    if not isinstance(data, dict) or not {"url", "credential"} <= set(data):
        raise ConfigError(f"agent config {path} lacks url/credential; run `register` again")
    return data
