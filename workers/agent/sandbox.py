"""Runs a renter's workload in a sandbox on the provider's machine (no Django).

The default runtime is bubblewrap (`bwrap`): the workload sees a read-only system (/usr and a
few files of /etc), a private writable work directory at /work, a size-capped tmpfs at /tmp, and
nothing of the agent's home or credential file, which are simply not mounted. It gets its own
PID, IPC, UTS, cgroup and user namespaces, and its own empty network namespace unless the lease
allows network. Limits: address space, processes, file size and open files by setrlimit in the
child before bwrap starts (inherited by everything inside); the work directory's total size by a
watchdog; wall-clock time by killing bwrap, whose PID namespace takes every process of the
workload with it. When the agent runs as root the sandbox runs as an unprivileged uid
(`sandbox_uid`), so RLIMIT_NPROC counts the workload's processes alone and root's exemption
from it does not apply.

Only the leased accelerators are visible: their /dev/nvidia* nodes (and the control nodes) are
bound, no others, and CUDA_VISIBLE_DEVICES names them by UUID.

A container runtime (Docker or Podman, `--gpus device=…`) implements the same interface, chosen
by the provider's config; it is used only where installed, and the agent installs nothing."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

GIB = 2**30
MIB = 2**20

BWRAP_MISSING = (
    "bubblewrap (bwrap) is not installed, so this agent cannot run renters' workloads. "
    "Install it with `sudo apt-get install bubblewrap` (Debian/Ubuntu), "
    "`sudo dnf install bubblewrap` (Fedora/RHEL) or your distribution's package, "
    "or choose the docker/podman runtime in the agent config (`workload_runtime`)."
)

# What of /etc a program needs to start (dynamic linker, users, time zone, TLS roots). The rest
# of /etc (hostnames of the provider's network, service configs, secrets) stays outside.
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "hosts",
    "mime.types",
)
NETWORK_ETC_FILES = ("resolv.conf", "gai.conf")
# The NVIDIA control nodes a CUDA program opens besides its own /dev/nvidiaN.
NVIDIA_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")

OUTPUT_CHUNK = 64 * 2**10


@dataclass
class SandboxSpec:
    argv: list[str]
    work_dir: Path
    time_limit_seconds: float
    env: dict[str, str] = field(default_factory=dict)
    # The leased devices: [{"index": 0, "uuid": "GPU-…"}]; only these are visible.
    devices: list[dict] = field(default_factory=list)
    network: bool = False
    memory_bytes: int = 16 * GIB
    max_processes: int = 512
    max_file_bytes: int = 8 * GIB
    max_open_files: int = 4096
    disk_bytes: int = 20 * GIB
    tmp_bytes: int = 1 * GIB
    output_cap_bytes: int = 16 * MIB
    # Extra read-only paths the provider offers to workloads (a Python environment, CUDA).
    ro_paths: tuple[str, ...] = ()
    # The uid/gid the workload runs as when the agent is root.
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534


@dataclass
class SandboxResult:
    # exited | timed_out | cancelled | killed (a limit the watchdog enforces) | error
    outcome: str
    exit_code: int | None
    reason: str = ""
    output_bytes: int = 0
    dropped_bytes: int = 0


OnOutput = Callable[[str, bytes], None]
# Polled about once a second; a reason (str) stops the workload as cancelled.
ShouldStop = Callable[[], str | None]


class Runtime(Protocol):
    name: str

    def missing(self) -> str | None:
        """None when the runtime can run workloads here; else what to install, in words."""

    def run(self, spec: SandboxSpec, on_output: OnOutput, should_stop: ShouldStop) -> SandboxResult:
        """Runs the workload to its end and reports how it ended."""


def _dir_size(path: Path, cap: int) -> int:
    """Bytes under `path` (allocated blocks, so sparse files count what they use), stopping
    once past `cap`."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
                    if total > cap:
                        return total
        except OSError:
            continue
    return total


def _untraversable_ancestor(path: Path) -> str | None:
    """The first parent of `path` that other users cannot enter (the sandbox runs as one)."""
    for parent in reversed(Path(path).resolve().parents):
        if not os.stat(parent).st_mode & 0o001:
            return str(parent)
    return None


class _Output:
    """Forwards a stream's bytes until the shared cap, then drains and drops the rest (so the
    workload never blocks on a full pipe) after one marker line."""

    def __init__(self, cap: int, on_output: OnOutput) -> None:
        self.cap, self.on_output = cap, on_output
        self.sent = self.dropped = 0
        self.lock = threading.Lock()
        self.marked = False

    def pump(self, stream: str, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, OUTPUT_CHUNK)
            except OSError:
                break
            if not data:
                break
            with self.lock:
                room = self.cap - self.sent
                keep, drop = data[: max(0, room)], data[max(0, room) :]
                self.sent += len(keep)
                self.dropped += len(drop)
                marker = bool(drop) and not self.marked
                self.marked = self.marked or marker
            if keep:
                self.on_output(stream, keep)
            if marker:
                self.on_output(
                    stream,
                    f"\n[sandbox: output cap of {self.cap} bytes reached; "
                    "the rest is dropped]\n".encode(),
                )
        os.close(fd)


def _supervise(
    proc: subprocess.Popen,
    spec: SandboxSpec,
    should_stop: ShouldStop,
    kill: Callable[[], None],
) -> tuple[str, str]:
    """Waits for the process, enforcing the deadline, the disk quota and cancellation; returns
    (outcome, reason) for a stopped workload, ("exited", "") otherwise."""
    deadline = time.monotonic() + spec.time_limit_seconds
    while True:
        try:
            proc.wait(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
            return "exited", ""
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            kill()
            return "timed_out", f"time limit of {spec.time_limit_seconds:.0f} s reached; killed"
        if _dir_size(spec.work_dir, spec.disk_bytes) > spec.disk_bytes:
            kill()
            return "killed", f"the work directory passed its {spec.disk_bytes} byte quota; killed"
        reason = should_stop()
        if reason:
            kill()
            return "cancelled", reason


def _run_process(
    command: list[str],
    spec: SandboxSpec,
    on_output: OnOutput,
    should_stop: ShouldStop,
    *,
    preexec: Callable[[], None] | None,
    env: dict[str, str] | None = None,
    kill_extra: Callable[[], None] | None = None,
) -> SandboxResult:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            preexec_fn=preexec,
            start_new_session=True,
            env=env if env is not None else {"PATH": "/usr/bin:/bin"},
            close_fds=True,
        )
    except OSError as exc:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        return SandboxResult("error", None, f"could not start the sandbox: {exc}")
    os.close(out_w)
    os.close(err_w)
    output = _Output(spec.output_cap_bytes, on_output)
    pumps = [
        threading.Thread(target=output.pump, args=("stdout", out_r), daemon=True),
        threading.Thread(target=output.pump, args=("stderr", err_r), daemon=True),
    ]
    for pump in pumps:
        pump.start()

    def kill() -> None:
        # The whole session, then bwrap itself: its PID namespace dies with it, taking along
        # anything inside that left the session (setsid) or daemonised.
        for target in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                target()
        if kill_extra is not None:
            kill_extra()

    outcome, reason = _supervise(proc, spec, should_stop, kill)
    proc.wait()
    for pump in pumps:
        # A process that escaped both the session and the namespace could hold the pipe open;
        # do not wait on it forever.
        pump.join(timeout=10)
    code = proc.returncode
    if outcome == "exited":
        reason = f"exited with code {code}"
    return SandboxResult(
        outcome,
        code if outcome == "exited" else None,
        reason,
        output_bytes=output.sent,
        dropped_bytes=output.dropped,
    )


class BubblewrapRuntime:
    name = "bubblewrap"

    def __init__(self, bwrap: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or ""

    def missing(self) -> str | None:
        return None if self.bwrap and os.access(self.bwrap, os.X_OK) else BWRAP_MISSING

    def command(self, spec: SandboxSpec) -> list[str]:
        args = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
        if spec.network:
            args.append("--share-net")
        args += ["--hostname", "sandbox", "--clearenv"]
        if os.geteuid() == 0:
            args += ["--cap-drop", "ALL"]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = Path("/") / top
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), f"/{top}"]
            elif path.is_dir():
                args += ["--ro-bind", str(path), f"/{top}"]
        etc = ETC_FILES + (NETWORK_ETC_FILES if spec.network else ())
        for name in etc:
            if os.path.lexists(f"/etc/{name}"):
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        for path in spec.ro_paths:
            if os.path.exists(path):
                args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--size", str(spec.tmp_bytes), "--tmpfs", "/tmp"]
        args += ["--bind", str(spec.work_dir), "/work", "--chdir", "/work"]
        args += self._device_args(spec.devices)
        environment = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            **spec.env,
            "HOME": "/work",
            "TMPDIR": "/tmp",
            "CUDA_VISIBLE_DEVICES": ",".join(
                str(d.get("uuid") or d.get("index")) for d in spec.devices
            ),
        }
        for name, value in environment.items():
            args += ["--setenv", name, value]
        return [*args, "--", *spec.argv]

    @staticmethod
    def _device_args(devices: list[dict]) -> list[str]:
        args = []
        nodes = [f"/dev/nvidia{int(d['index'])}" for d in devices if "index" in d]
        present = [node for node in nodes if os.path.exists(node)]
        if present:
            present += [f"/dev/{n}" for n in NVIDIA_CONTROL_NODES if os.path.exists(f"/dev/{n}")]
        for node in present:
            args += ["--dev-bind", node, node]
        return args

    def _preexec(self, spec: SandboxSpec) -> Callable[[], None]:
        limits = [
            (resource.RLIMIT_AS, spec.memory_bytes),
            (resource.RLIMIT_NPROC, spec.max_processes),
            (resource.RLIMIT_FSIZE, spec.max_file_bytes),
            (resource.RLIMIT_NOFILE, spec.max_open_files),
            (resource.RLIMIT_CORE, 0),
        ]
        as_root = os.geteuid() == 0

        def preexec() -> None:
            # Runs in the child between fork and exec: everything bwrap starts inherits these.
            for which, value in limits:
                resource.setrlimit(which, (value, value))
            if as_root:
                os.setgroups([])
                os.setgid(spec.sandbox_gid)
                os.setuid(spec.sandbox_uid)

        return preexec

    def run(self, spec: SandboxSpec, on_output: OnOutput, should_stop: ShouldStop) -> SandboxResult:
        problem = self.missing()
        if problem:
            return SandboxResult("error", None, problem)
        if os.geteuid() == 0:
            blocked = _untraversable_ancestor(spec.work_dir)
            if blocked:
                return SandboxResult(
                    "error",
                    None,
                    f"{blocked} is not searchable by the sandbox's uid {spec.sandbox_uid}: "
                    "keep workload directories under a path every user may traverse (0711)",
                )
            os.chown(spec.work_dir, spec.sandbox_uid, spec.sandbox_gid)
            for root, dirs, files in os.walk(spec.work_dir):
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), spec.sandbox_uid, spec.sandbox_gid)
        return _run_process(
            self.command(spec), spec, on_output, should_stop, preexec=self._preexec(spec)
        )


class ContainerRuntime:
    """Docker or Podman: the same guarantees from the container engine (read-only image root,
    the work directory bound at /work, no network unless allowed, memory/pids limits, only the
    leased GPUs by `--gpus device=…`). Used only where the provider chose it and it is
    installed; the image is the provider's choice (`workload_image`)."""

    def __init__(self, engine: str = "docker", image: str = "python:3.12-slim") -> None:
        self.name = engine
        self.engine = shutil.which(engine) or ""
        self.image = image

    def missing(self) -> str | None:
        if self.engine:
            return None
        return f"{self.name} is not installed; install it or use the bubblewrap runtime."

    def command(self, spec: SandboxSpec, container_name: str) -> list[str]:
        args = [
            self.engine,
            "run",
            "--rm",
            "--name",
            container_name,
            "--read-only",
            "--network",
            "bridge" if spec.network else "none",
            "--memory",
            str(spec.memory_bytes),
            "--pids-limit",
            str(spec.max_processes),
            "--ulimit",
            f"fsize={spec.max_file_bytes}",
            "--ulimit",
            f"nofile={spec.max_open_files}",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            f"{spec.sandbox_uid}:{spec.sandbox_gid}",
            "--tmpfs",
            f"/tmp:size={spec.tmp_bytes}",
            "-v",
            f"{spec.work_dir}:/work",
            "-w",
            "/work",
            "-e",
            "HOME=/work",
        ]
        if spec.devices:
            ids = ",".join(str(d.get("uuid") or d.get("index")) for d in spec.devices)
            args += ["--gpus", f'"device={ids}"']
        for name, value in spec.env.items():
            args += ["-e", f"{name}={value}"]
        return [*args, self.image, *spec.argv]

    def run(self, spec: SandboxSpec, on_output: OnOutput, should_stop: ShouldStop) -> SandboxResult:
        problem = self.missing()
        if problem:
            return SandboxResult("error", None, problem)
        if os.geteuid() == 0:
            os.chown(spec.work_dir, spec.sandbox_uid, spec.sandbox_gid)
        name = f"workload-{os.getpid()}-{time.monotonic_ns()}"

        def kill_container() -> None:
            subprocess.run(
                [self.engine, "kill", name], capture_output=True, timeout=30, check=False
            )

        return _run_process(
            self.command(spec, name),
            spec,
            on_output,
            should_stop,
            preexec=None,
            env=dict(os.environ),
            kill_extra=kill_container,
        )


def runtime_for(name: str | None, *, image: str | None = None) -> Runtime:
    """The provider's choice (`workload_runtime` in the agent config): bubblewrap by default."""
    if name in (None, "", "bubblewrap", "bwrap"):
        return BubblewrapRuntime()
    if name in ("docker", "podman"):
        return ContainerRuntime(name, image=image or "python:3.12-slim")
    raise ValueError(f"unknown workload runtime {name!r}: bubblewrap, docker or podman")
