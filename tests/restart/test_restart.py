"""Restarting is normal: `make run`, Ctrl-C, `make run` again brings back the same chain, and a
chain that really was reset is reported once, with what to do, never as a flood of money alerts.

The chain process is the real scripts/chain.sh (Anvil, deploy_contracts, the demo renter's
funding) on the test database; the beat is played by running its chain tasks once each."""

from __future__ import annotations

import shutil
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from marketplace.core.models import Alert
from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments import chain
from marketplace.payments.genesis import CHAIN_RESET_ALERT, chain_reset_check
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainTransaction, ContractDeployment
from marketplace.payments.services.deployment import contracts_deploy
from tests.integration.conftest import Node, chain_point_at
from tests.integration.test_chain_end_to_end import fund_and_activate
from tests.payments.helpers import ALICE
from tests.restart.conftest import NOT_OURS
from workers import chain_tasks, ops_tasks

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def reconcile_says(capsys) -> tuple[int, str]:
    code = 0
    try:
        call_command("reconcile")
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().out


def beat_runs_once() -> None:
    """What beat sends in its first minute after a start, each run to completion."""
    for task in (
        chain_tasks.chain_index,
        chain_tasks.chain_transactions_confirm,
        chain_tasks.leases_settle_overdue,
        ops_tasks.payments_reconcile,
    ):
        task.apply().get()


@pytest.fixture(autouse=True)
def patient_confirm(monkeypatch):
    """A worker retries an unconfirmed transaction with backoff; an eager task retries at once and
    runs out of retries within a block. On chain.sh's one-second blocks it waits for its block."""
    real = chain.confirm

    def confirm(row, **kwargs):
        deadline = time.monotonic() + 30
        while True:
            try:
                return real(row, **kwargs)
            except chain.NotConfirmed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    monkeypatch.setattr(chain, "confirm", confirm)


def settled_lease(chain_script, settings, alice, listing, capture) -> Order:
    """chain.sh started on a fresh state file; alice's lease runs and is settled on chain."""
    chain_script.start()
    w3 = chain_point_at(settings, chain_script)
    order = fund_and_activate(w3, alice, listing, capture)
    with capture(execute=True):
        order_services.order_complete(order_id=order.pk)  # → lease_settle, eagerly
    index()
    order.refresh_from_db()
    assert order.state == Order.State.SETTLED
    return order


def settlement_of(order: Order) -> ChainTransaction:
    return ChainTransaction.objects.get(idempotency_key=f"settle:{order.pk}")


def test_a_restart_on_the_same_state_file_brings_back_the_same_chain(
    chain_script, settings, alice, listing, eager, django_capture_on_commit_callbacks, capsys
):
    order = settled_lease(
        chain_script, settings, alice, listing, django_capture_on_commit_callbacks
    )
    assert reconcile_says(capsys) == (0, "0 differences\n")
    deployed = {d.name: (d.address, d.generation) for d in ContractDeployment.objects.all()}
    deploys = ChainTransaction.objects.filter(purpose__startswith="deploy_").count()

    chain_script.stop()  # Ctrl-C: honcho sends SIGTERM to the chain process group
    assert chain_script.state_file.stat().st_size > 0
    out = chain_script.start()  # `make run` again
    assert "restoring the chain from" in out

    # Nothing was deployed over the restored chain, and the settlement is still what it was.
    assert {d.name: (d.address, d.generation) for d in ContractDeployment.objects.all()} == deployed
    assert ChainTransaction.objects.filter(purpose__startswith="deploy_").count() == deploys
    beat_runs_once()
    assert settlement_of(order).status == ChainTransaction.Status.CONFIRMED
    assert Order.objects.get(pk=order.pk).state == Order.State.SETTLED
    assert reconcile_says(capsys) == (0, "0 differences\n")
    assert not Alert.objects.filter(resolved_at__isnull=True).exists()


def test_a_fresh_chain_under_an_old_database_is_one_alert_that_says_what_to_do(
    chain_script, settings, alice, listing, eager, django_capture_on_commit_callbacks, capsys
):
    order = settled_lease(
        chain_script, settings, alice, listing, django_capture_on_commit_callbacks
    )
    chain_script.stop()
    chain_script.state_file.unlink()  # the state file is lost: Anvil starts a new chain

    out = chain_script.start(expect=NOT_OURS)
    assert "make clean-run" in out  # deploy_contracts refused, and said what to do
    assert not ContractDeployment.objects.filter(generation__gt=1).exists()

    for _ in range(3):  # beat keeps running: still one alert, and no money alerts at all
        beat_runs_once()
        code, said = reconcile_says(capsys)
        assert code == 2
        assert said.startswith("chain reset: nothing compared.")
        assert "genesis block" in said and "make clean-run" in said
        assert "differences" not in said
    alerts = list(Alert.objects.all())
    assert [a.kind for a in alerts] == [CHAIN_RESET_ALERT]
    assert alerts[0].resolved_at is None
    assert "make clean-run" in alerts[0].message and settings.CHAIN_RPC_URL in alerts[0].message
    # The database's history is left as it was, for the operator to choose what to do with it.
    assert settlement_of(order).status == ChainTransaction.Status.CONFIRMED
    assert Order.objects.get(pk=order.pk).state == Order.State.SETTLED


def test_a_chain_restored_from_an_older_state_file_is_reported_once(
    chain_script,
    settings,
    alice,
    listing,
    eager,
    django_capture_on_commit_callbacks,
    capsys,
    tmp_path,
):
    """What a SIGKILL between two periodic dumps leaves: the node is back, but behind the
    database. Same genesis, same contracts; the blocks the database made final are not there."""
    chain_script.start()
    chain_script.stop()
    older = tmp_path / "older-state.json"
    shutil.copy(chain_script.state_file, older)
    settled_lease(chain_script, settings, alice, listing, django_capture_on_commit_callbacks)
    chain_script.stop()
    shutil.copy(older, chain_script.state_file)

    chain_script.start(expect=NOT_OURS)
    for _ in range(2):
        beat_runs_once()
        code, said = reconcile_says(capsys)
        assert code == 2 and "the node was restored from an older state" in said
    assert [a.kind for a in Alert.objects.all()] == [CHAIN_RESET_ALERT]


def test_the_reset_alert_resolves_when_the_state_file_comes_back(
    chain_script,
    settings,
    alice,
    listing,
    eager,
    django_capture_on_commit_callbacks,
    capsys,
    tmp_path,
):
    settled_lease(chain_script, settings, alice, listing, django_capture_on_commit_callbacks)
    chain_script.stop()
    kept = tmp_path / "kept-state.json"
    shutil.move(chain_script.state_file, kept)
    chain_script.start(expect=NOT_OURS)
    beat_runs_once()
    assert Alert.objects.filter(kind=CHAIN_RESET_ALERT, resolved_at__isnull=True).count() == 1

    chain_script.stop()
    shutil.move(kept, chain_script.state_file)  # the operator restores it
    chain_script.start()
    beat_runs_once()
    assert not Alert.objects.filter(resolved_at__isnull=True).exists()
    assert reconcile_says(capsys) == (0, "0 differences\n")


def test_reconcile_right_after_a_restart_asks_to_retry_instead_of_failing(
    chain_script, settings, alice, listing, eager, django_capture_on_commit_callbacks
):
    """Anvil restores its blocks but not the state at each: until the indexer has passed the
    restart, the block the database is final at cannot be read."""
    settled_lease(chain_script, settings, alice, listing, django_capture_on_commit_callbacks)
    w3 = chain.get_web3()
    w3.provider.make_request("anvil_mine", [hex(3)])  # blocks the indexer has not seen yet
    chain_script.stop()
    chain_script.start()
    with pytest.raises(CommandError, match="retry in a few seconds"):
        call_command("reconcile")


def test_repeated_restarts_of_one_chain_are_never_taken_for_a_reset(settings, tmp_path):
    """Anvil loading its state file sometimes rebuilds block 0 with a new timestamp (a new hash)
    while every later block comes back as it was: the genesis is read through block 1."""
    node = Node("anvil", tmp_path)
    node.start()
    try:
        w3 = chain_point_at(settings, node)
        contracts_deploy(reward_pool=0)
        for _ in range(8):
            w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": ALICE, "value": 1})
            node.restart()
            assert chain_reset_check() is None
        assert not Alert.objects.exists()
    finally:
        node.stop()
