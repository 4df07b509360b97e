"""alice's active lease on a machine of bob's with a registered agent: the ground every workload
test stands on."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from marketplace.orders.models import Order
from marketplace.orders.services import (
    order_activate,
    order_create,
    order_mark_funded,
    order_mark_starting,
)
from marketplace.providers.models import Machine
from marketplace.providers.services import machine_register, registration_token_create
from tests.conftest import payments_receivers_detached
from tests.factories import ListingFactory

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _no_chain():
    """Ending a lease in these tests must not enqueue settlements: there is no chain here."""
    with payments_receivers_detached():
        yield


@pytest.fixture
def bob_box(bob_provider, agent_of):
    """(machine, agent client) of bob's registered 2-GPU box, listed."""
    machine, agent = agent_of(bob_provider)
    Machine.objects.filter(pk=machine.pk).update(
        state=Machine.State.LISTED,
        verified_devices=[{"index": 0, "uuid": "GPU-a"}, {"index": 1, "uuid": "GPU-b"}],
        verified_device_count=2,
    )
    machine.refresh_from_db()
    listing = ListingFactory(machine=machine, provider=bob_provider, accelerator_count=2)
    return machine, agent, listing


def active_order(renter, listing, *, key: str, accelerators: int = 1, hours: int = 2) -> Order:
    order, _ = order_create(
        renter=renter,
        listing_id=listing.pk,
        pricing_mode=Order.PricingMode.ON_DEMAND,
        accelerators=accelerators,
        hours=hours,
        idempotency_key=key,
    )
    order_mark_funded(order_id=order.pk)
    order_mark_starting(order_id=order.pk)
    return order_activate(order_id=order.pk)


@pytest.fixture
def alice_lease(alice, bob_box):
    return active_order(alice, bob_box[2], key="alice-lease-0001")


@pytest.fixture
def work_root():
    path = Path(tempfile.mkdtemp(prefix="agent-workloads-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(live_server, bob_provider, tmp_path, work_root):
    """bob's agent process, registered for a listed 2-GPU machine; yields (machine, config
    path, process)."""
    _, token = registration_token_create(provider=bob_provider, user=bob_provider.owner)
    machine, credential = machine_register(
        registration_token=token, name="sandbox-box", hardware={"accelerators": [], "cpu": {}}
    )
    Machine.objects.filter(pk=machine.pk).update(
        state=Machine.State.LISTED,
        verified_devices=[{"index": 0, "uuid": "GPU-a"}, {"index": 1, "uuid": "GPU-b"}],
        verified_device_count=2,
    )
    config = tmp_path / "home" / "agent.json"
    config.parent.mkdir()
    config.write_text(
        json.dumps(
            {
                "url": live_server.url,
                "credential": credential,
                "workload_dir": str(work_root),
                "workload_poll_seconds": 0.5,
                "workload_limits": {
                    "max_processes": 64,
                    "output_cap_bytes": 2**20,
                    "disk_bytes": 50 * 2**20,
                    "max_file_bytes": 20 * 2**20,
                    "memory_bytes": 2**30,
                },
            }
        )
    )
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
    env |= {"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "agent.log", "w+")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workers.agent",
            "run",
            "--config",
            str(config),
            "--poll-wait",
            "2",
            "--no-progress",
            "--heartbeat-seconds",
            "0.5",
        ],  # fmt: skip
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    machine.refresh_from_db()
    yield machine, config, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    log.seek(0)
    print(log.read()[-5000:])
    log.close()
