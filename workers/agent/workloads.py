"""The agent's side of renters' workloads (no Django): a thread that asks the platform for the
next workload of this machine every few seconds (a plain request, not a long poll), fetches and
safely unpacks its input, runs it in the sandbox (workers/agent/sandbox.py), streams its output
in ordered, resumable chunks, and uploads the exit and a size-capped archive of its result
paths. Heartbeats and benchmark jobs run on their own threads and never wait on a workload."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import secrets
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.agent.client import ApiError, ServerUnreachable, Transport, backoff_seconds
from workers.agent.sandbox import Runtime, SandboxSpec, runtime_for

LIVE = ("starting", "running")
CHUNK_BYTES = 60 * 2**10  # under the platform's 64 KiB chunk cap
FLUSH_SECONDS = 0.5
PING_SECONDS = 15.0
# Unused by any account on a normal system (Debian's dynamic and subuid ranges end far below).
SANDBOX_UID_BASE = 2_000_000
SANDBOX_UID_SPAN = 1_000_000


class WorkloadApi:
    """The agent's workload endpoints over the agent's Transport (workers/agent/client.py)."""

    def __init__(self, transport: Transport, prefix: str = "/api/v1") -> None:
        self.transport, self.prefix = transport, prefix

    def _call(self, method: str, path: str, *, params=None, payload=None, body=None) -> Any:
        from workers.agent.client import _check

        if payload is not None:
            import json

            body = json.dumps(payload).encode()
        status, data = self.transport.request(method, self.prefix + path, params=params, body=body)
        return _check(status, data)

    def next(self) -> dict | None:
        return self._call("POST", "/agent/workloads/next", body=b"")

    def start(self, workload_id: int) -> dict:
        return self._call("POST", f"/agent/workloads/{workload_id}/start", body=b"")

    def ping(self, workload_id: int) -> dict:
        return self._call("POST", f"/agent/workloads/{workload_id}/ping", body=b"")

    def log(self, workload_id: int, seq: int, stream: str, data: bytes) -> dict:
        payload = {"seq": seq, "stream": stream, "data_b64": base64.b64encode(data).decode()}
        return self._call("POST", f"/agent/workloads/{workload_id}/logs", payload=payload)

    def finish(
        self, workload_id: int, *, outcome: str, exit_code: int | None, reason: str, body: bytes
    ) -> dict:
        params = {"outcome": outcome, "reason": reason[:300]}
        if exit_code is not None:
            params["exit_code"] = str(exit_code)
        return self._call(
            "POST", f"/agent/workloads/{workload_id}/finish", params=params, body=body
        )

    def download_input(self, workload_id: int, dest: io.BufferedIOBase, max_bytes: int) -> int:
        """Streams the input archive into `dest`, refusing more than `max_bytes`. Binary, so it
        goes through the transport's HTTP session rather than its JSON request()."""
        session = getattr(self.transport, "session", None)
        base = getattr(self.transport, "base_url", None)
        if session is None or base is None:
            raise ApiError(0, "unsupported", "this transport cannot download files")
        url = f"{base}{self.prefix}/agent/workloads/{workload_id}/input"
        try:
            with session.get(url, stream=True, timeout=(10, 120)) as response:
                if response.status_code >= 500:
                    raise ServerUnreachable(f"server error HTTP {response.status_code}")
                if response.status_code >= 400:
                    raise ApiError(response.status_code, "input_unavailable", response.text[:200])
                size = 0
                for piece in response.iter_content(64 * 2**10):
                    size += len(piece)
                    if size > max_bytes:
                        raise ApiError(0, "input_too_large", f"input over {max_bytes} bytes")
                    dest.write(piece)
                return size
        except OSError as exc:
            raise ServerUnreachable(f"download failed: {exc}") from None
        except Exception as exc:
            if exc.__class__.__module__.startswith("requests"):
                raise ServerUnreachable(f"download failed: {exc}") from None
            raise


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpacks `archive` into `dest`, refusing anything that would land outside it: absolute
    names, `..`, links pointing out, device nodes (tarfile's "data" filter), and checking
    again after the platform's own check at submit time."""
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar:
            # The data filter would quietly make an absolute name relative; a renter's archive
            # with one is refused outright, as the platform refuses it at submit time.
            if member.name.startswith("/"):
                raise tarfile.AbsolutePathError(member)
            tarfile.data_filter(member, str(dest))  # raises FilterError on any other escape
        tar.extractall(dest, filter="data")


def result_archive(work: Path, paths: list[str], max_bytes: int) -> tuple[bytes, str]:
    """A tar.gz of the result paths inside `work`, symlinks kept as links (never followed out of
    the work directory), stopping at `max_bytes` of content; returns (archive, note)."""
    buffer = io.BytesIO()
    total, skipped = 0, []
    root = work.resolve()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for relative in paths:
            path = work / relative
            if not os.path.lexists(path):
                skipped.append(f"{relative} (missing)")
                continue
            parent = path.parent.resolve()
            if parent != root and root not in parent.parents:
                skipped.append(f"{relative} (outside the work directory)")
                continue
            candidates = [path]
            if path.is_dir() and not path.is_symlink():
                candidates = [path, *sorted(path.rglob("*"))]
            for item in candidates:
                info = tar.gettarinfo(str(item), arcname=str(item.relative_to(work)))
                if info.isfile():
                    if total + info.size > max_bytes:
                        skipped.append(f"{item.relative_to(work)} (over the result cap)")
                        continue
                    total += info.size
                    with open(item, "rb") as fh:
                        tar.addfile(info, fh)
                elif info.isdir() or info.issym():
                    tar.addfile(info)
    note = ("; not collected: " + ", ".join(skipped[:10])) if skipped else ""
    return buffer.getvalue(), note


class LogStreamer(threading.Thread):
    """Posts a workload's output in seq order. Unacknowledged chunks are kept and resent with
    the same seq after a failure (the platform stores a seq once), so a reconnect loses and
    duplicates nothing. Also pings when quiet, and records a cancellation it is told of."""

    def __init__(self, api: WorkloadApi, workload_id: int, *, start_seq: int = 0, log=print):
        super().__init__(daemon=True, name=f"workload-{workload_id}-logs")
        self.api, self.workload_id, self.log = api, workload_id, log
        self.next_seq = start_seq
        self.pending: deque[tuple[int, str, bytes]] = deque()
        self.buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.done = threading.Event()
        self.cancel_reason: str | None = None
        self.last_contact = time.monotonic()

    def write(self, stream: str, data: bytes) -> None:
        with self.lock:
            self.buffers[stream] += data

    def should_stop(self) -> str | None:
        return self.cancel_reason

    def _cut(self) -> None:
        with self.lock:
            for stream, buffer in self.buffers.items():
                while buffer:
                    piece = bytes(buffer[:CHUNK_BYTES])
                    del buffer[:CHUNK_BYTES]
                    self.pending.append((self.next_seq, stream, piece))
                    self.next_seq += 1

    def _seen(self, reply: dict) -> None:
        self.last_contact = time.monotonic()
        state = (reply or {}).get("state")
        if state and state not in LIVE and self.cancel_reason is None:
            self.cancel_reason = f"the workload is {state} on the platform"

    def _send_pending(self) -> bool:
        """Sends what is pending; False when the server could not be reached (retry later)."""
        while self.pending and self.cancel_reason is None:
            seq, stream, data = self.pending[0]
            try:
                reply = self.api.log(self.workload_id, seq, stream, data)
            except ServerUnreachable:
                return False
            except ApiError as exc:
                expected = (exc.detail or {}).get("expected_seq") if exc.status == 409 else None
                if expected is not None and expected > seq:
                    # Acknowledged before a reply was lost: drop what the server already has.
                    while self.pending and self.pending[0][0] < expected:
                        self.pending.popleft()
                    continue
                self.log(f"workload {self.workload_id}: log chunk {seq} refused: {exc}")
                self.pending.popleft()
                continue
            self.pending.popleft()
            self._seen(reply)
        return True

    def run(self) -> None:
        attempt = 0
        while True:
            closing = self.closing.is_set()
            self._cut()
            ok = self._send_pending()
            if ok and time.monotonic() - self.last_contact > PING_SECONDS:
                try:
                    self._seen(self.api.ping(self.workload_id))
                except (ServerUnreachable, ApiError):
                    ok = False
            if closing and (not self.pending or self.cancel_reason is not None):
                break
            if ok:
                attempt = 0
                self.closing.wait(FLUSH_SECONDS)
            else:
                time.sleep(min(backoff_seconds(attempt), 10))
                attempt += 1
        self.done.set()

    def close(self, timeout: float = 120) -> None:
        self.closing.set()
        self.done.wait(timeout)


@dataclass
class WorkloadSettings:
    runtime: Runtime
    work_root: Path
    poll_seconds: float = 5.0
    max_parallel: int = 4
    input_max_bytes: int = 64 * 2**20
    result_max_bytes: int = 256 * 2**20
    ro_paths: tuple[str, ...] = ()
    limits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict) -> WorkloadSettings:
        default_root = (
            "/var/tmp/gpu-marketplace-workloads"
            if os.geteuid() == 0
            else str(Path("~/.cache/gpu-marketplace/workloads").expanduser())
        )
        return cls(
            runtime=runtime_for(config.get("workload_runtime"), image=config.get("workload_image")),
            work_root=Path(config.get("workload_dir") or default_root),
            poll_seconds=float(config.get("workload_poll_seconds") or 5.0),
            ro_paths=tuple(config.get("workload_ro_paths") or ()),
            limits={
                k: int(v)
                for k, v in (config.get("workload_limits") or {}).items()
                if k
                in (
                    "memory_bytes",
                    "max_processes",
                    "max_file_bytes",
                    "disk_bytes",
                    "tmp_bytes",
                    "output_cap_bytes",
                )
            },
        )


class WorkloadLoop(threading.Thread):
    def __init__(self, api: WorkloadApi, stop: threading.Event, settings: WorkloadSettings, *,
                 log=print) -> None:  # fmt: skip
        super().__init__(daemon=True, name="workloads")
        self.api, self.stop, self.settings, self.log = api, stop, settings, log
        self.running: dict[int, threading.Thread] = {}

    def run(self) -> None:
        problem = self.settings.runtime.missing()
        if problem:
            # Claiming workloads it cannot run would fail renters' work: leave them queued.
            self.log(f"workloads disabled: {problem}")
            return
        self.settings.work_root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.settings.work_root.chmod(0o711)
        attempt = 0
        while not self.stop.is_set():
            self.running = {k: t for k, t in self.running.items() if t.is_alive()}
            if len(self.running) >= self.settings.max_parallel:
                self.stop.wait(self.settings.poll_seconds)
                continue
            try:
                workload = self.api.next()
                attempt = 0
            except ServerUnreachable as exc:
                delay = backoff_seconds(attempt)
                attempt += 1
                self.log(f"workloads: server unreachable ({exc}); retrying in {delay:.1f}s")
                self.stop.wait(delay)
                continue
            except ApiError as exc:
                self.log(f"workloads: {exc}")
                self.stop.wait(self.settings.poll_seconds)
                continue
            if workload is None:
                self.stop.wait(self.settings.poll_seconds)
                continue
            thread = threading.Thread(
                target=self._run_guarded, args=(workload,), daemon=True, name=f"w{workload['id']}"
            )
            self.running[workload["id"]] = thread
            thread.start()

    def _run_guarded(self, workload: dict) -> None:
        try:
            run_workload(self.api, workload, self.settings, log=self.log)
        except Exception as exc:  # noqa: BLE001 - one workload's failure must not stop the loop
            self.log(f"workload {workload.get('id')}: agent error {exc!r}")


def _finish(api: WorkloadApi, workload_id: int, **kwargs) -> None:
    for attempt in range(8):
        try:
            api.finish(workload_id, **kwargs)
            return
        except ServerUnreachable:
            time.sleep(min(backoff_seconds(attempt), 30))
        except ApiError as exc:
            if exc.status == 413 and kwargs.get("body"):
                kwargs = {**kwargs, "body": b"", "reason": "result archive refused as too large"}
                continue
            raise


def run_workload(api: WorkloadApi, workload: dict, settings: WorkloadSettings, log=print) -> None:
    workload_id = workload["id"]
    work = settings.work_root / f"w{workload_id}-{secrets.token_hex(4)}"
    work.mkdir(mode=0o700)
    try:
        if workload.get("has_input"):
            problem = _fetch_input(api, workload, work, settings.input_max_bytes)
            if problem:
                _finish(api, workload_id, outcome="error", exit_code=None, reason=problem, body=b"")
                return
        state = api.start(workload_id).get("state")
        if state != "running":
            log(f"workload {workload_id}: {state} before it started; not run")
            return
        streamer = LogStreamer(api, workload_id, start_seq=workload.get("log_next_seq", 0), log=log)
        streamer.start()
        seconds = workload.get("seconds_left") or 0
        spec = SandboxSpec(
            argv=list(workload["argv"]),
            work_dir=work,
            time_limit_seconds=max(1, seconds),
            env=dict(workload.get("env") or {}),
            devices=list(workload.get("devices") or []),
            network=bool(workload.get("network")),
            ro_paths=settings.ro_paths,
            # A uid of its own per workload (when the agent is root): two leases' workloads
            # on one machine share no process count (RLIMIT_NPROC is per uid) and no files.
            sandbox_uid=SANDBOX_UID_BASE + workload_id % SANDBOX_UID_SPAN,
            sandbox_gid=SANDBOX_UID_BASE + workload_id % SANDBOX_UID_SPAN,
            **settings.limits,
        )
        log(f"workload {workload_id}: running {spec.argv[:3]} for at most {seconds}s")
        result = settings.runtime.run(spec, streamer.write, streamer.should_stop)
        streamer.close()
        if result.outcome == "cancelled":
            log(f"workload {workload_id}: stopped ({result.reason})")
            return
        body, note = b"", ""
        if result.outcome in ("exited", "timed_out") and workload.get("result_paths"):
            body, note = result_archive(work, workload["result_paths"], settings.result_max_bytes)
        outcome = result.outcome if result.outcome in ("exited", "timed_out") else "error"
        reason = (result.reason + note)[:300]
        _finish(api, workload_id, outcome=outcome, exit_code=result.exit_code, reason=reason,
                body=body)  # fmt: skip
        log(f"workload {workload_id}: {result.reason}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fetch_input(api: WorkloadApi, workload: dict, work: Path, max_bytes: int) -> str | None:
    """Downloads, checks and unpacks the input; returns why it could not, or None."""
    with tempfile.NamedTemporaryFile(suffix=".tar") as fh:
        for attempt in range(6):
            try:
                fh.seek(0)
                fh.truncate()
                api.download_input(workload["id"], fh, max_bytes)
                break
            except ServerUnreachable:
                time.sleep(min(backoff_seconds(attempt), 30))
        else:
            return "could not download the input archive"
        fh.flush()
        fh.seek(0)
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if workload.get("input_sha256") and digest != workload["input_sha256"]:
            return "the input archive does not match its checksum"
        try:
            safe_extract(Path(fh.name), work)
        except (tarfile.TarError, OSError, ValueError) as exc:
            return f"the input archive cannot be unpacked safely: {exc}"[:300]
    return None


def start_workload_loop(api_or_transport: Any, stop: threading.Event, config: dict) -> None:
    """Starts the workload thread beside the agent's heartbeat and job loop (called from
    workers/agent/cli.py). A provider opts out with "workloads": false in the agent config."""
    if config.get("workloads") is False:
        return
    transport = getattr(api_or_transport, "transport", api_or_transport)
    try:
        settings = WorkloadSettings.from_config(config)
    except ValueError as exc:
        print(f"workloads disabled: {exc}", file=sys.stderr)
        return

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with contextlib.suppress(RuntimeError):
        WorkloadLoop(WorkloadApi(transport), stop, settings, log=log).start()
