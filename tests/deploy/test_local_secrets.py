"""Secrets a local run writes to disk are readable by their owner only: the demo credentials
(`make run` writes passwords and API tokens to .run/demo-credentials.txt) and the per-checkout
DJANGO_SECRET_KEY that local runs sign with."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
from contextlib import contextmanager

import pytest
from django.core.management import call_command

from tests.integration.conftest import REPO_ROOT


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.django_db
def test_demo_credentials_file_is_created_owner_only_under_a_permissive_umask(tmp_path):
    path = tmp_path / "demo-credentials.txt"

    with umask(0o000):
        call_command("demo_users", output=str(path), stdout=io.StringIO())

    assert mode(path) == 0o600
    assert "API token: mkt_" in path.read_text()


@pytest.mark.django_db
def test_demo_credentials_file_left_world_readable_by_an_older_run_is_narrowed(tmp_path):
    path = tmp_path / "demo-credentials.txt"
    path.write_text("old passwords\n")
    path.chmod(0o644)

    with umask(0o022):
        call_command("demo_users", output=str(path), stdout=io.StringIO())

    assert mode(path) == 0o600
    assert "old passwords" not in path.read_text()


def test_local_secret_key_is_made_once_owner_only_and_strong_enough_for_the_settings(tmp_path):
    """scripts/local_secret_key.sh works relative to its own folder: run a copy in a scratch
    checkout so the real .run/ is not touched."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "local_secret_key.sh"
    shutil.copy(REPO_ROOT / "scripts" / "local_secret_key.sh", script)

    with umask(0o000):
        first = subprocess.run(["bash", script], capture_output=True, text=True, check=True)
    again = subprocess.run(["bash", script], capture_output=True, text=True, check=True)

    key = first.stdout.strip()
    assert again.stdout.strip() == key
    assert mode(tmp_path / ".run" / "secret-key") == 0o600
    check = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env={**os.environ, "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
