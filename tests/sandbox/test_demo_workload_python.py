"""The sandbox as `make demo` runs the renter's training example in it: bob's agent keeps its
credential in the repository (.run/demo/bob.json, 0600), the example runs on the system's
python3 (Debian's python3-numpy, seen through the read-only /usr) and nothing else of the machine
is bound. A workload that hunts for the credential finds nothing, even if a provider binds the
whole repository read-only (the tempting way to offer its .venv) while the agent is root."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from workers.agent.config import config_save
from workers.agent.sandbox import BubblewrapRuntime, SandboxSpec
from workers.agent.workloads import SANDBOX_UID_BASE, WorkloadSettings

SECRET = "agt_" + "demo-credential-" * 3

# Runs inside the sandbox: the credential by its host path and under ~, then every readable
# regular file of the sandbox's tree (but /usr, /proc, /sys, /dev) searched for the secret.
PROBE = r"""
import os, stat, sys
targets = sys.argv[1:]
for path in targets:
    try:
        with open(path) as fh:
            print("READ", path, fh.read())
    except OSError as exc:
        print("DENIED", path, type(exc).__name__)
needle = b"agt_demo-" + b"credential-"  # not a literal: this file is in /work
for root, dirs, files in os.walk("/"):
    # /usr is the system's read-only tree; /proc, /sys and /dev the kernel's.
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/usr", "/proc", "/sys", "/dev")]
    for name in files:
        path = os.path.join(root, name)
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_size > 2**20:
                continue
            if needle in open(path, "rb").read():
                print("FOUND", path)
        except OSError:
            pass
print("PROBE DONE")
"""


@pytest.fixture
def layout():
    """A repository-like tree under a path every user may traverse (as the agent's workload
    directories are), holding the demo agent's credential where the demo keeps it."""
    # Not under /tmp: the sandbox's own tmpfs at /tmp would cover a bind of something there.
    root = Path(tempfile.mkdtemp(prefix="demo-sandbox-", dir="/var/tmp"))
    root.chmod(0o711)
    repo = root / "repo"
    credential = repo / ".run" / "demo" / "bob.json"
    config_save(credential, {"url": "http://127.0.0.1:1", "credential": SECRET})
    (repo / ".run").chmod(0o755)
    (repo / ".run" / "demo").chmod(0o755)
    public = repo / ".run" / "demo" / "public.txt"
    public.write_text("not a secret\n")
    public.chmod(0o644)
    work = root / "work"
    work.mkdir()
    (work / "probe.py").write_text(PROBE)
    yield repo, credential, public, work
    shutil.rmtree(root, ignore_errors=True)


def _run(work: Path, settings: WorkloadSettings, *targets: Path) -> str:
    """The spec the agent builds for workload 7 (its uid, the provider's ro_paths)."""
    spec = SandboxSpec(
        argv=["/usr/bin/python3", "probe.py", *map(str, targets)],
        work_dir=work,
        time_limit_seconds=60,
        ro_paths=settings.ro_paths,
        sandbox_uid=SANDBOX_UID_BASE + 7,
        sandbox_gid=SANDBOX_UID_BASE + 7,
    )
    out: list[bytes] = []
    result = settings.runtime.run(spec, lambda _s, data: out.append(data), lambda: None)
    text = b"".join(out).decode(errors="replace")
    assert result.outcome == "exited" and result.exit_code == 0, (result, text)
    assert "PROBE DONE" in text
    return text


def test_the_demo_agents_sandbox_shows_no_credential(layout):
    repo, credential, public, work = layout
    # The demo agent's config: what `register` wrote, with no workload options.
    config = json.loads(credential.read_text())
    settings = WorkloadSettings.from_config(config)
    assert isinstance(settings.runtime, BubblewrapRuntime) and settings.ro_paths == ()
    text = _run(work, settings, credential, public, Path("/work/../root/.config/agent.json"))
    assert SECRET not in text and "FOUND" not in text
    assert f"DENIED {credential} FileNotFoundError" in text
    # The repository is simply not there, so neither is its .venv or .run/.
    assert f"DENIED {public} FileNotFoundError" in text


def test_binding_the_repository_read_only_still_hides_the_credential(layout):
    repo, credential, public, work = layout
    settings = WorkloadSettings.from_config(
        {"url": "http://x", "credential": SECRET, "workload_ro_paths": [str(repo)]}
    )
    text = _run(work, settings, credential, public)
    # The bind works (the public file next to the credential is read), so what stops the
    # credential is its mode against the workload's own uid, not a missing mount.
    assert f"READ {public} not a secret" in text
    if os.geteuid() == 0:
        assert f"DENIED {credential} PermissionError" in text
        assert SECRET not in text and "FOUND" not in text
    else:
        # An agent that is not root runs workloads as itself (the documented limit): the
        # credential's directory must then never be offered, which the demo does not do.
        assert f"READ {credential}" in text
