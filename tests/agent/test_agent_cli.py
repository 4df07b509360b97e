import json
import os
import stat
import subprocess
import sys
import threading

from workers.agent.cli import backoff_seconds, main, run_loop
from workers.agent.client import ServerUnreachable
from workers.agent.config import config_load, config_save


def test_agent_imports_no_django():
    code = (
        "import sys, workers.agent.cli, workers.agent.runner, workers.agent.hardware;"
        "assert not any(m == 'django' or m.startswith('django.') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_is_written_owner_only(tmp_path):
    path = tmp_path / "sub" / "agent.json"
    config_save(path, {"url": "http://x", "credential": "agt_secret"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert config_load(path)["credential"] == "agt_secret"


def test_register_rejects_a_bad_url_with_a_clear_message(tmp_path, capsys):
    code = main(
        [
            "register",
            "--url",
            "localhost:8000",
            "--token",
            "x",
            "--config",
            str(tmp_path / "a.json"),
        ]
    )
    assert code == 2
    assert "is not a server URL" in capsys.readouterr().err


def test_run_without_config_says_to_register(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "missing.json")]) == 2
    assert "run `register` first" in capsys.readouterr().err


def test_backoff_grows_and_is_capped():
    assert all(0 <= backoff_seconds(a) <= min(60, 2**a) for a in range(12) for _ in range(20))


def test_run_loop_reconnects_after_the_server_comes_back(monkeypatch):
    monkeypatch.setattr("workers.agent.cli.backoff_seconds", lambda attempt: 0)
    calls = []

    class FlakyRunner:
        def run_once(self, wait):
            calls.append(wait)
            if len(calls) < 3:
                raise ServerUnreachable("connection refused")
            return type(
                "R", (), {"job_id": 1, "state": "verified", "reason": "", "measured_tflops": 1.0}
            )()

    logs = []
    assert run_loop(FlakyRunner(), threading.Event(), max_jobs=1, poll_wait=0, log=logs.append) == 0
    assert len(calls) == 3 and "unreachable" in logs[0] and "verified" in logs[-1]


def test_config_file_is_json(tmp_path):
    path = tmp_path / "agent.json"
    config_save(path, {"url": "http://127.0.0.1:8000", "credential": "agt_x", "machine_id": 3})
    assert json.loads(path.read_text())["machine_id"] == 3
