"""`fund` on a real node (Anvil): the CLI signs approve + fund from the calldata the API hands
out, with the renter's key from the environment, and waits while the indexer activates the
lease. No chain mocks."""

import os
import subprocess
import sys
import time

import pytest

from marketplace.orders.models import Order
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent
from marketplace.payments.services.deployment import contracts_deploy
from marketplace.payments.services.faucet import demo_renter_fund
from tests.factories import ListingFactory
from tests.integration.conftest import live_chain, node  # noqa: F401 - fixtures
from tests.payments.helpers import ALICE, ALICE_KEY, USDC, make_order
from tests.workloads.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_fund_signs_the_deposit_and_waits_for_the_lease(
    live_server,
    live_chain,  # noqa: F811 - the fixture imported above
    node,  # noqa: F811
    alice,
    bob_provider,
    tmp_path,
    eager,  # noqa: F811
):
    contracts_deploy(reward_pool=0)
    demo_renter_fund(address=ALICE, amount=100 * USDC)
    order = make_order(renter=alice, listing=ListingFactory(machine__provider=bob_provider))
    from marketplace.accounts.services import api_token_create

    _, token = api_token_create(user=alice)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "RENTER"))}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "RENTER_CONFIG": str(tmp_path / "renter.json"),
        "RENTER_URL": live_server.url,
        "RENTER_TOKEN": token,
        "RENTER_PRIVATE_KEY": ALICE_KEY,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workers.renter",
            "--quiet",
            "fund",
            str(order.pk),
            "--rpc",
            node.url,
            "--timeout",
            "120",
        ],  # fmt: skip
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The indexer's part, as beat runs it every few seconds.
        while proc.poll() is None:
            index()
            time.sleep(0.5)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    order.refresh_from_db()
    assert order.state == Order.State.ACTIVE
    funded = ChainEvent.objects.get(name="LeaseFunded", lease_id=order.lease_id)
    assert f"fund    {funded.tx_hash}" in out and "approve 0x" in out
    assert f"order {order.pk} is active" in out

    # Funding again is refused by the API, and the CLI says why.
    again = subprocess.run(
        [sys.executable, "-m", "workers.renter", "fund", str(order.pk), "--rpc", node.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "[payments_order_not_fundable, HTTP 409]" in again.stderr
