"""A real bubblewrap sandbox against hostile workloads: each attack is contained, the machine
is left as it was, and the agent's process (this one) keeps working throughout."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from workers.agent.sandbox import BWRAP_MISSING, BubblewrapRuntime, SandboxSpec, runtime_for


@pytest.fixture
def tmp_path():
    """A directory the sandbox's unprivileged uid can reach (pytest's own are 0700 root): the
    agent keeps workload directories under such a path too."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-test-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(tmp_path: Path, script: str, **limits):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    out: list[tuple[str, bytes]] = []
    spec = SandboxSpec(
        argv=["/bin/sh", "-c", script],
        work_dir=work,
        time_limit_seconds=limits.pop("time_limit_seconds", 30),
        **limits,
    )
    result = BubblewrapRuntime().run(spec, lambda s, d: out.append((s, d)), lambda: None)
    text = b"".join(d for _, d in out).decode(errors="replace")
    return result, text


def _alive(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if marker in line and "ps -eo" not in line]


def test_the_workload_cannot_read_the_agents_credential(tmp_path):
    home = tmp_path / "home" / ".config" / "gpu-marketplace"
    home.mkdir(parents=True)
    secret = "agt_" + "s3cret" * 6
    (home / "agent.json").write_text(json.dumps({"url": "http://x", "credential": secret}))
    result, text = run(
        tmp_path,
        f"cat {home}/agent.json; cat ~/.config/gpu-marketplace/agent.json; "
        "cat /proc/1/environ; ls /root /home; "
        "grep -rs agt_ /etc /tmp /work /proc/self/environ | head -1; true",
    )
    assert result.outcome == "exited"
    assert secret not in text and "s3cret" not in text
    assert "No such file or directory" in text


def test_the_workload_writes_only_inside_its_work_dir(tmp_path):
    outside = tmp_path / "outside.txt"
    result, text = run(
        tmp_path,
        f"echo x > {outside}; echo x > /usr/pwned; echo x > /etc/pwned; "
        "echo inside > /work/ok.txt; echo tmp > /tmp/t && cat /tmp/t",
    )
    assert not outside.exists() and not Path("/usr/pwned").exists()
    assert not Path("/etc/pwned").exists()
    assert (tmp_path / "work" / "ok.txt").read_text() == "inside\n"
    assert "tmp" in text and "Read-only file system" in text


def _listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(15)
    seen = []

    def accept():
        try:
            conn, _ = server.accept()
            seen.append(conn)
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return server, thread, seen


@pytest.mark.parametrize("network", [False, True])
def test_the_network_is_reachable_only_when_the_lease_allows_it(tmp_path, network):
    server, thread, seen = _listener()
    port = server.getsockname()[1]
    script = (
        f'{sys.base_prefix}/bin/python3 -c "import socket; socket.create_connection('
        f"('127.0.0.1', {port}), 3); print('connected')\" || "
        '/usr/bin/python3 -c "import socket; socket.create_connection('
        f"('127.0.0.1', {port}), 3); print('connected')\""
    )
    result, text = run(tmp_path, script, network=network)
    server.close()
    thread.join(timeout=20)
    if network:
        assert "connected" in text and seen
    else:
        assert "connected" not in text and not seen
        assert result.exit_code != 0


def test_a_fork_bomb_is_contained_and_killed_whole(tmp_path):
    result, _ = run(
        tmp_path,
        "bomb() { bomb | bomb & }; bomb; sleep 1003.5",
        max_processes=64,
        time_limit_seconds=4,
    )
    assert result.outcome in ("timed_out", "exited")
    assert _alive("sleep 1003.5") == []
    assert subprocess.run(["true"]).returncode == 0  # the agent can still start processes


def test_one_huge_file_stops_at_the_file_size_limit(tmp_path):
    result, text = run(
        tmp_path,
        "head -c 50000000 /dev/zero > /work/big; echo status=$?",
        max_file_bytes=4 * 2**20,
    )
    assert (tmp_path / "work" / "big").stat().st_size <= 4 * 2**20
    assert "status=0" not in text


def test_many_files_past_the_disk_quota_are_killed(tmp_path):
    result, _ = run(
        tmp_path,
        "i=0; while true; do head -c 1000000 /dev/zero > /work/f$i; i=$((i+1)); done",
        disk_bytes=20 * 2**20,
        max_file_bytes=2 * 2**20,
    )
    assert result.outcome == "killed" and "quota" in result.reason


def test_tmp_is_a_small_private_tmpfs(tmp_path):
    result, text = run(
        tmp_path, "head -c 20000000 /dev/zero > /tmp/fill; echo status=$?", tmp_bytes=4 * 2**20
    )
    assert "No space left on device" in text


def test_a_gigabyte_of_output_is_capped_with_a_marker(tmp_path):
    result, text = run(tmp_path, "head -c 1000000000 /dev/zero", output_cap_bytes=2**20)
    assert result.outcome == "exited" and result.exit_code == 0
    assert result.output_bytes == 2**20
    assert result.output_bytes + result.dropped_bytes == 1_000_000_000
    assert "output cap of 1048576 bytes reached" in text


def test_a_workload_outliving_its_time_limit_is_killed_with_its_children(tmp_path):
    result, _ = run(
        tmp_path,
        "sleep 1001.5 & setsid sleep 1002.5 & nohup sleep 1001.5 & sleep 1001.5",
        time_limit_seconds=2,
    )
    assert result.outcome == "timed_out" and result.exit_code is None
    assert _alive("sleep 1001.5") == [] and _alive("sleep 1002.5") == []


def test_cancellation_stops_the_workload(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    spec = SandboxSpec(argv=["sleep", "1004.5"], work_dir=work, time_limit_seconds=60)
    result = BubblewrapRuntime().run(spec, lambda s, d: None, lambda: "lease ended")
    assert result.outcome == "cancelled" and result.reason == "lease ended"
    assert _alive("sleep 1004.5") == []


def test_each_workload_can_run_as_its_own_uid(tmp_path):
    result, text = run(
        tmp_path,
        "id -u; touch /work/mine; stat -c %u /work/mine",
        sandbox_uid=2_000_042,
        sandbox_gid=2_000_042,
    )
    if os.geteuid() == 0:
        assert text.split() == ["2000042", "2000042"]
    assert result.exit_code == 0


def test_memory_is_limited(tmp_path):
    result, text = run(
        tmp_path,
        "/usr/bin/python3 -c \"b = bytearray(600 * 2**20); print('allocated')\"",
        memory_bytes=256 * 2**20,
    )
    assert "allocated" not in text and "MemoryError" in text


def test_only_the_leased_devices_are_named(tmp_path):
    spec = SandboxSpec(
        argv=["true"],
        work_dir=tmp_path,
        time_limit_seconds=1,
        devices=[{"index": 1, "uuid": "GPU-b"}],
    )
    command = BubblewrapRuntime().command(spec)
    env = dict(zip(command[1::1], command[2::1], strict=False))
    assert command[command.index("CUDA_VISIBLE_DEVICES") + 1] == "GPU-b"
    nodes = [command[i + 1] for i, a in enumerate(command) if a == "--dev-bind"]
    expected = ["/dev/nvidia1"] if os.path.exists("/dev/nvidia1") else []
    assert [n for n in nodes if n[len("/dev/nvidia") :].isdigit()] == expected
    assert env  # the command names its environment explicitly (--clearenv first)
    assert "--clearenv" in command and "--unshare-all" in command


def test_a_missing_bwrap_is_said_clearly(tmp_path):
    runtime = BubblewrapRuntime(bwrap=str(tmp_path / "no-bwrap"))
    assert runtime.missing() == BWRAP_MISSING and "apt-get install bubblewrap" in BWRAP_MISSING
    spec = SandboxSpec(argv=["true"], work_dir=tmp_path, time_limit_seconds=1)
    result = runtime.run(spec, lambda s, d: None, lambda: None)
    assert result.outcome == "error" and result.reason == BWRAP_MISSING
    with pytest.raises(ValueError):
        runtime_for("lxc")


@pytest.fixture(autouse=True)
def _bwrap_installed():
    """A missing sandbox fails these tests (scripts/ensure_bwrap.sh, run by make test, installs
    it); it never skips them."""
    problem = BubblewrapRuntime().missing()
    if problem:
        pytest.fail(problem)
