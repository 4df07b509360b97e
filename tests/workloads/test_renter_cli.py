"""The renter CLI (`python -m workers.renter`, a real subprocess with no Django) against a live
server and a real agent: sign in, search, order (the idempotency key survives a failed try),
run a directory with logs and results, read the logs, stop the lease, read the receipt; and the
API's error shapes become readable errors."""

import json
import os
import subprocess
import sys

import pytest

from marketplace.orders.models import Order
from marketplace.orders.services import order_activate, order_mark_funded, order_mark_starting
from tests.factories import ListingFactory
from tests.integration.conftest import free_port
from tests.workloads.conftest import REPO_ROOT
from workers.agent.sandbox import BubblewrapRuntime

pytestmark = [
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def renter(tmp_path):
    config = tmp_path / "renter" / "renter.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "RENTER"))}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "RENTER_CONFIG": str(config),
        "PASS": "correct horse battery",
    }

    def cli(*args, url=None, timeout=180):
        extra = {"RENTER_URL": url} if url else {}
        done = subprocess.run(
            [sys.executable, "-m", "workers.renter", "--quiet", *args],
            cwd=tmp_path,
            env=env | extra,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done

    cli.config = config
    return cli


def test_a_renter_goes_from_search_to_results_with_the_cli(
    live_server, agent, alice, renter, tmp_path
):
    machine, _, _ = agent
    listing = ListingFactory(machine=machine, provider=machine.provider, accelerator_count=2)
    url = live_server.url

    done = renter("login", "--url", url, "--username", "alice", "--password-env", "PASS")
    assert done.returncode == 0, done.stderr
    assert json.loads(renter.config.read_text())["url"] == url
    assert renter.config.stat().st_mode & 0o077 == 0

    done = renter("search", "--min-free", "1", "--sort", "price")
    assert done.returncode == 0, done.stderr
    assert "PRICE/ACC-H" in done.stdout and f"\n{listing.pk} " in done.stdout

    # The first try fails (the server is unreachable); the retry reuses its idempotency key.
    dead = f"http://127.0.0.1:{free_port()}"
    failed = renter("order", str(listing.pk), "--hours", "1", url=dead)
    assert failed.returncode == 2 and "cannot reach" in failed.stderr
    pending = json.loads(renter.config.with_name("pending-orders.json").read_text())
    (key,) = pending.values()
    done = renter("order", str(listing.pk), "--hours", "1")
    assert done.returncode == 0, done.stderr
    order = Order.objects.get()
    assert order.idempotency_key == key and f"order {order.pk}: created" in done.stdout

    # Funding is on chain (`fund`); here the indexer's part is played by the services.
    order_mark_funded(order_id=order.pk)
    order_mark_starting(order_id=order.pk)
    order_activate(order_id=order.pk)

    project = tmp_path / "project"
    project.mkdir()
    (project / "job.sh").write_text(
        "echo step 1; echo step 2 >&2; mkdir -p out; echo trained > out/model.ckpt; exit 3\n"
    )
    (project / ".git").mkdir()
    (project / ".git" / "config").write_text("secret remote")
    os.symlink("/etc/passwd", project / "passwd-link")
    done = renter(
        "run", str(order.pk), "--dir", str(project), "--result", "out", "--out",
        str(tmp_path / "results"), "--", "/bin/sh", "-c", "ls -a; sh job.sh",
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # the workload's own exit code
    assert "step 1" in done.stdout and "step 2" in done.stdout
    assert ".git" not in done.stdout and "passwd-link" not in done.stdout
    assert "skipping passwd-link" in done.stderr
    assert (tmp_path / "results" / "out" / "model.ckpt").read_text() == "trained\n"
    workload_id = order.workloads.get().pk

    done = renter("logs", str(order.pk), str(workload_id))
    assert done.returncode == 0 and "step 1" in done.stdout

    done = renter("stop", str(order.pk))
    assert done.returncode == 0, done.stderr
    assert f"order {order.pk}: completed (stopped_by_renter)" in done.stdout

    done = renter("receipt", str(order.pk))
    assert done.returncode == 0, done.stderr
    order.refresh_from_db()
    assert f"billed    ${order.amount_owed / 10**6:,.4f}" in done.stdout
    assert f"refunded  ${order.refund_amount / 10**6:,.4f}" in done.stdout


def test_api_errors_read_as_errors(live_server, alice, carol, bob_box, renter):
    url = live_server.url
    assert (
        renter("login", "--url", url, "--username", "carol", "--password-env", "PASS").returncode
        == 0
    )
    done = renter("order", "999999", "--hours", "1")
    assert done.returncode == 2
    assert "error: No such listing open for orders. [orders_listing_not_found, HTTP 404]" in (
        done.stderr
    )
    done = renter("order", str(bob_box[2].pk), "--hours", "0")
    assert done.returncode == 2 and "[invalid_input, HTTP 400]" in done.stderr
    assert "hours:" in done.stderr
    done = renter("run", "999999", "--", "true")
    assert done.returncode == 2 and "orders_not_found" in done.stderr
    wrong = renter("login", "--url", url, "--username", "carol", "--password-env", "NOPE")
    assert wrong.returncode != 0


@pytest.fixture(autouse=True)
def _bwrap_installed():
    """A missing sandbox fails these tests (scripts/ensure_bwrap.sh, run by make test, installs
    it); it never skips them."""
    problem = BubblewrapRuntime().missing()
    if problem:
        pytest.fail(problem)
