"""A real agent process (`python -m workers.agent run`) against a live server, running renters'
workloads in a real bubblewrap sandbox: a hostile workload is contained while the agent keeps
heartbeating, the next workload still runs and returns its results, and stopping the lease kills
a running one."""

import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import requests

from marketplace.accounts.services import api_token_create
from marketplace.orders.services import order_stop_by_renter
from marketplace.providers.heartbeats import machines_last_seen
from marketplace.workloads.models import Workload
from tests.factories import ListingFactory
from tests.workloads.conftest import active_order
from workers.agent.sandbox import BubblewrapRuntime

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.django_db(transaction=True),
]


def _wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def _renter(live_server, user):
    session = requests.Session()
    _, token = api_token_create(user=user)
    session.headers["Authorization"] = f"Token {token}"
    session.base = live_server.url
    return session


def _submit(http, order, spec, files=None):
    url = f"{http.base}/api/v1/orders/{order.pk}/workloads"
    if files:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        response = http.post(
            url,
            data={"spec": json.dumps(spec)},
            files={"archive": ("in.tar.gz", buffer.getvalue())},
            timeout=30,
        )
    else:
        response = http.post(url, json=spec, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _all_logs(http, order, workload_id) -> str:
    """Reads the whole log the way `logs -f` does: from offset 0 until the reads come back empty."""
    data, offset = [], 0
    while True:
        page = http.get(
            f"{http.base}/api/v1/orders/{order.pk}/workloads/{workload_id}/logs",
            params={"offset": offset},
            timeout=30,
        ).json()
        if page["next_offset"] == offset:
            return "".join(data)
        data.append(page["data"])
        offset = page["next_offset"]


def _state(workload_id):
    return Workload.objects.get(pk=workload_id).state


def test_a_hostile_workload_is_contained_and_the_agent_carries_on(
    live_server, agent, alice, tmp_path, work_root
):
    machine, config, proc = agent
    listing = ListingFactory(machine=machine, provider=machine.provider, accelerator_count=2)
    lease = active_order(alice, listing, key="alice-real-agent-1")
    http = _renter(live_server, alice)
    outside = tmp_path / "outside.txt"
    port = live_server.url.rsplit(":", 1)[1]
    hostile = (
        f"cat {config}; cat ~/.config/gpu-marketplace/agent.json; echo pwned > {outside}; "
        "/usr/bin/python3 -c \"import socket; socket.create_connection(('127.0.0.1', "
        f"{port}), 3); print('CONNECTED')\"; "
        "head -c 50000000 /dev/zero > /work/big; "
        "head -c 3000000 /dev/urandom | od -An -tx1; "
        # The fork bomb in a subshell, then exec (no fork): with the sandbox's process limit
        # reached, a shell that still had to fork would die of it ("Cannot fork", exit 2)
        # instead of running into the workload's time limit, depending on the machine's load.
        "( bomb() { bomb | bomb & }; bomb ); exec sleep 1000"
    )
    hostile_id = _submit(
        http,
        lease,
        {"argv": ["/bin/sh", "-c", hostile], "time_limit_seconds": 15},
    )
    _wait_for(lambda: _state(hostile_id) == "running", 60, "the hostile workload to start")
    beats = set()
    while _state(hostile_id) == "running":
        beats |= set(machines_last_seen(machine_ids=[machine.pk]).values())
        time.sleep(0.5)
    workload = Workload.objects.get(pk=hostile_id)
    assert workload.state == "timed_out", workload.reason
    assert proc.poll() is None  # the agent is alive
    assert len(beats) >= 5  # and heartbeated all through the hostile run
    logs = _all_logs(http, lease, hostile_id)
    assert "agt_" not in logs and "CONNECTED" not in logs
    assert "Network is unreachable" in logs or "Connection refused" in logs
    assert not outside.exists()
    assert "output cap of 1048576 bytes reached" in logs
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 1000" not in ps

    # The next workload runs, with its input and its results.
    good_id = _submit(
        http,
        lease,
        {
            "argv": ["/bin/sh", "-c", "cat in.txt; mkdir -p out; wc -c < in.txt > out/n.txt"],
            "result_paths": ["out"],
            "time_limit_seconds": 60,
        },
        files={"in.txt": b"hello sandbox\n"},
    )
    _wait_for(lambda: _state(good_id) == "succeeded", 60, "the second workload to succeed")
    base = f"{http.base}/api/v1/orders/{lease.pk}/workloads/{good_id}"
    logs = http.get(f"{base}/logs?offset=0", timeout=30).json()
    assert logs["data"] == "hello sandbox\n" and logs["finished"] is True
    results = http.get(f"{base}/results", timeout=30)
    with tarfile.open(fileobj=io.BytesIO(results.content), mode="r:gz") as tar:
        assert tar.extractfile("out/n.txt").read().strip() == b"14"

    # Stopping the lease kills a running workload.
    sleeper_id = _submit(http, lease, {"argv": ["/bin/sh", "-c", "echo started; sleep 1005.5"]})
    _wait_for(lambda: _state(sleeper_id) == "running", 60, "the sleeper to start")
    order_stop_by_renter(order_id=lease.pk, user=alice)
    assert _state(sleeper_id) == "cancelled"
    _wait_for(
        lambda: (
            "sleep 1005.5"
            not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        ),
        60,
        "the agent to kill the cancelled workload",
    )
    assert proc.poll() is None
    # Work directories are removed: the agent removes the last one after the kill it waits
    # for, so on a loaded machine that can come a moment after the process is gone.
    _wait_for(lambda: list(work_root.iterdir()) == [], 60, "the work directories' removal")


@pytest.fixture(autouse=True)
def _bwrap_installed():
    """A missing sandbox fails these tests (scripts/ensure_bwrap.sh, run by make test, installs
    it); it never skips them."""
    problem = BubblewrapRuntime().missing()
    if problem:
        pytest.fail(problem)
