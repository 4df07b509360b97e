"""`make run`'s chain process (scripts/chain.sh) as honcho runs it: its own process group, stopped
with SIGTERM (Ctrl-C) or SIGKILL, started again on the same state file or on none."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.conftest import database_url
from tests.integration.conftest import REPO_ROOT, free_port
from tests.payments.helpers import ALICE, USDC

READY = "chain: Anvil ready"
NOT_OURS = "chain: NOT the chain this database belongs to"


class ChainScript:
    """scripts/chain.sh on a free port, with its state file under the test's tmp_path; only ever
    signalled through the process group it leads."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_file = tmp_path / "anvil-state.json"
        self.logdir = tmp_path
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "CHAIN_RPC_URL": self.url,
            "CHAIN_STATE_FILE": str(self.state_file),
            "CHAIN_CONFIRMATIONS": "1",
            # Four blocks a second: every step here waits for blocks, and none depends on pace.
            "CHAIN_BLOCK_SECONDS": "0.25",
            # alice plays the demo renter that chain.sh funds.
            "DEMO_RENTER_ADDRESS": ALICE,
            "DEMO_RENTER_FUNDS": str(100 * USDC),
            "PYTHONUNBUFFERED": "1",
        }
        for key in ("CHAIN_OPERATOR_PRIVATE_KEY", "CHAIN_DEPLOYER_PRIVATE_KEY"):
            self.env.pop(key, None)

    @property
    def log(self) -> Path:
        return self.logdir / f"chain-{self.starts}.log"

    def output(self) -> str:
        return self.log.read_text()

    def start(self, *, expect: str = READY) -> str:
        self.starts += 1
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["bash", "scripts/chain.sh"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # as honcho does: one group per Procfile process
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            out = self.output()
            if expect in out:
                return out
            if self.proc.poll() is not None:
                pytest.fail(f"chain.sh exited with {self.proc.returncode}:\n{out}")
            time.sleep(0.2)
        pytest.fail(f"chain.sh did not print {expect!r}:\n{self.output()}")

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        # The whole group, even once bash is gone: Anvil must not outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        pid, self.proc = self.proc.pid, None
        if sig == signal.SIGKILL:
            return
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        # chain.sh returned while Anvil still ran (writing its state file, perhaps): honcho
        # would call the process stopped and a quick `make run` would find the port taken.
        os.killpg(pid, signal.SIGKILL)
        pytest.fail("Anvil outlived chain.sh")

    def stop(self) -> None:
        """Ctrl-C under honcho: SIGTERM to the group; Anvil writes its state file on the way out."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


@pytest.fixture
def chain_script(tmp_path, settings):
    script = ChainScript(tmp_path)
    yield script
    script.kill()
