"""The channel's worker processes collect garbage as docs/design/agent-channel.md says: the
import's objects frozen out of the scans, a full collection after 100 of the middle generation
(CPython's 10 paused every worker for ~0.5 s every ~12 s at 5,000 agents)."""

import os
import subprocess
import sys

from tests.integration.conftest import REPO_ROOT


def test_the_channel_process_freezes_its_import_and_collects_the_old_generation_rarely():
    probe = (
        "import gc, marketplace.asgi; "
        "print(*gc.get_threshold(), gc.get_freeze_count() > 50_000, gc.isenabled())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "marketplace.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split() == ["700", "10", "100", "True", "True"], done.stderr[-2000:]
