"""Real local nodes for the chain integration tests: Anvil (and Ganache behind -m ganache),
each started on a free port for a test module, with the same public dev mnemonic."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = REPO_ROOT / "node_modules" / ".bin"
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def anvil_binary() -> Path:
    """The platform's Anvil binary itself, not the npm wrapper in node_modules/.bin: the wrapper
    exits on SIGTERM while Anvil is still writing its --state file, so a restart could start a
    new node before the old one has saved (or has stopped writing to) that file."""
    for binary in sorted(REPO_ROOT.glob("node_modules/@foundry-rs/anvil-*/bin/anvil")):
        if os.access(binary, os.X_OK):
            return binary
    return BIN / "anvil"


class Node:
    """A node process we started (and only ever stop by its own pid)."""

    def __init__(self, kind: str, state_dir: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_file = state_dir / "anvil-state.json"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        if self.kind == "anvil":
            return [
                str(anvil_binary()),
                "--port",
                str(self.port),
                "--chain-id",
                "31337",
                "--mnemonic",
                DEV_MNEMONIC,
                # State survives a restart: the restart test kills and reloads the node.
                "--state",
                str(self.state_file),
                "--silent",
            ]
        return [
            str(BIN / "ganache"),
            "--server.port",
            str(self.port),
            "--chain.chainId",
            "1337",
            "--wallet.mnemonic",
            DEV_MNEMONIC,
            "--logging.quiet",
        ]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT
        )
        w3 = Web3(HTTPProvider(self.url))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}")
            try:
                if w3.is_connected():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not answer on {self.url}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Anvil writes its --state file on the way out
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _wanted(config, kind: str) -> bool:
    # Ganache runs only in its own marked run (`pytest -m ganache`), as CI does it.
    return kind != "ganache" or "ganache" in (config.getoption("-m") or "")


@pytest.fixture(
    scope="module", params=["anvil", pytest.param("ganache", marks=pytest.mark.ganache)]
)
def node(request, tmp_path_factory):
    kind = request.param
    if not _wanted(request.config, kind):
        pytest.skip("Ganache runs in the separate `pytest -m ganache` run")
    if not (BIN / kind).exists() or shutil.which("node") is None:
        pytest.fail(f"{BIN / kind} is missing: run `npm ci`")
    node = Node(kind, tmp_path_factory.mktemp(kind))
    node.start()
    yield node
    node.stop()


def chain_point_at(settings, node):
    """Points the chain client at a test node and returns its Web3."""
    from marketplace.payments import chain

    settings.CHAIN_RPC_URL = node.url
    settings.CHAIN_CONFIRMATIONS = 1  # automine: every transaction gets its own block
    chain.set_web3(None)
    return chain.get_web3()


@pytest.fixture
def live_chain(node, settings):
    os.environ.pop("CHAIN_OPERATOR_PRIVATE_KEY", None)
    yield chain_point_at(settings, node)
