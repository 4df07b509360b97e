"""manage.py reconcile and its beat task against the in-process chain: a market with a settled
lease, a running lease, a stake, a slash and a reward agrees with the chain to the unit; each
tampering, on either side, is named."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from eth_utils import keccak
from hexbytes import HexBytes

from marketplace.benchmarks.models import Verdict
from marketplace.core.models import Alert
from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments import chain
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent, Reward, Slash
from marketplace.payments.selectors import order_funding_instructions
from marketplace.payments.services import faucet, leases, rewarding
from tests.payments.helpers import (
    ALICE_KEY,
    BOB,
    BOB_KEY,
    USDC,
    announce_verdict,
    fund_with_instructions,
    make_order,
    record_verdict,
    sign_and_send,
)
from workers.ops_tasks import payments_reconcile

pytestmark = pytest.mark.django_db


def _run_lease(chain_w3, alice, listing, key: str, seconds: int, capture) -> Order:
    order = make_order(renter=alice, listing=listing, key=key)
    funding = order_funding_instructions(user=alice, order_id=order.pk)
    fund_with_instructions(chain_w3, ALICE_KEY, funding)
    with capture(execute=True):
        index()  # funded → starting; the start transaction goes out
    index()  # LeaseStarted final → active
    Order.objects.filter(pk=order.pk).update(started_at=timezone.now() - timedelta(seconds=seconds))
    order.refresh_from_db()
    return order


@pytest.fixture
def market(
    chain_w3,
    deployed,
    rich_alice,
    alice,
    listing,
    eager,
    settings,
    django_capture_on_commit_callbacks,
):
    """bob stakes 50 USDC; alice's first lease ran 20 min and settled; her second is running;
    bob was slashed 10 USDC for one report and rewarded for a period of passes."""
    capture = django_capture_on_commit_callbacks
    settings.SLASH_AMOUNT = 10 * USDC
    settings.REWARD_PERIOD_SECONDS = 3_600
    faucet.demo_renter_fund(address=BOB, amount=50 * USDC)
    staking, token = deployed["staking"], deployed["token"]
    sign_and_send(
        chain_w3, BOB_KEY, token.address, token.encode_abi("approve", [staking.address, 50 * USDC])
    )
    sign_and_send(chain_w3, BOB_KEY, staking.address, staking.encode_abi("stake", [50 * USDC]))

    settled = _run_lease(chain_w3, alice, listing, "settled-1", 1_200, capture)
    with capture(execute=True):
        order_services.order_complete(order_id=settled.pk)  # → lease_settle
    running = _run_lease(chain_w3, alice, listing, "running-1", 300, capture)

    index()  # the stake, before the slash caps at it
    failure = record_verdict(
        machine_id=listing.machine_id, key="41", report_hash="0x" + keccak(b"report 41").hex()
    )
    with capture(execute=True):
        announce_verdict(failure)
    # The failure belongs to an earlier reward period than the passes, which are rewarded.
    Verdict.objects.filter(key="41").update(created_at=timezone.now() - timedelta(hours=3))
    record_verdict(
        machine_id=listing.machine_id, key="42", report_hash="0x" + "42" * 32, passed=True
    )
    # The period of the passes above, as seen an hour later.
    for tx in rewarding.providers_reward(now=timezone.now() + timedelta(seconds=3_600)):
        chain.confirm(tx)
    index()
    settled.refresh_from_db()
    running.refresh_from_db()
    assert settled.state == Order.State.SETTLED and running.state == Order.State.ACTIVE
    assert Slash.objects.count() == 1 and Reward.objects.count() == 1
    return {"settled": settled, "running": running, **deployed}


def reconcile_output(capsys) -> tuple[int, list[str]]:
    code = 0
    try:
        call_command("reconcile")
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().out.strip().splitlines()


def test_a_clean_market_has_0_differences(market, capsys):
    code, lines = reconcile_output(capsys)
    assert lines == ["0 differences"]
    assert code == 0


def test_a_tampered_amount_owed_is_named(market, capsys):
    order = market["settled"]
    Order.objects.filter(pk=order.pk).update(amount_owed=order.amount_owed + 3_600)
    code, lines = reconcile_output(capsys)
    assert code != 0
    split = [line for line in lines if line.startswith("escrow_split:")]
    assert len(split) == 1 and f"order {order.pk} " in split[0]
    assert str(order.amount_owed + 3_600) in split[0]


def test_a_deleted_indexed_slash_is_named(market, capsys):
    slash = Slash.objects.select_related("event").get()
    log_index = slash.event.log_index
    ChainEvent.objects.filter(pk=slash.event_id).delete()  # the slash row goes with it
    code, lines = reconcile_output(capsys)
    assert code != 0
    assert lines == [
        f"slash_missing: tx {slash.tx_hash[:10]}… log {log_index}: slash of {10 * USDC} units "
        f"from {BOB} (report {slash.report_hash[:10]}…) is on chain, not in the database",
        "1 differences",
    ]


def test_a_tampered_stake_is_named(market, capsys):
    from marketplace.payments.models import Stake

    Stake.objects.filter(address=BOB).update(staked=50 * USDC)
    code, lines = reconcile_output(capsys)
    assert code != 0
    assert any(line.startswith(f"stake: wallet {BOB}: staked {40 * USDC} ") for line in lines)


def test_a_tampered_escrow_credit_is_named(market, capsys):
    from django.db.models import F

    from marketplace.payments.models import Credit

    on_chain = market["escrow"].functions.credits(BOB).call()
    assert on_chain > 0  # bob's share of the settled lease, not yet withdrawn
    Credit.objects.filter(address=BOB).update(amount=F("amount") + 7)
    code, lines = reconcile_output(capsys)
    assert code != 0
    kinds = {line.split(":")[0]: line for line in lines}
    assert kinds["escrow_credit"] == (
        f"escrow_credit: account {BOB}: credited {on_chain} units on chain; the database has "
        f"{on_chain + 7}"
    )
    assert "off by -7)" in kinds["escrow_balance"]


def test_tampered_accrued_fees_are_named(market, capsys):
    from django.db.models import F

    from marketplace.payments.models import AccruedFees

    on_chain = market["escrow"].functions.accruedFees().call()
    AccruedFees.objects.update(amount=F("amount") - 5)
    code, lines = reconcile_output(capsys)
    assert code != 0
    kinds = {line.split(":")[0]: line for line in lines}
    assert (
        f"accrued fees are {on_chain} units on chain; the database has {on_chain - 5}"
        in (kinds["escrow_fees"])
    )
    assert "off by +5)" in kinds["escrow_balance"]


def test_a_settle_on_chain_the_database_never_saw_is_named(market, chain_w3, capsys):
    running = market["running"]
    escrow = market["escrow"]
    # The operator key settles straight on chain, bypassing the recorded-transaction path.
    sign_and_send(
        chain_w3,
        chain.DEV_KEYS["operator"],
        escrow.address,
        escrow.encode_abi("settle", [bytes(HexBytes(running.lease_id)), 0]),
    )
    index()  # the indexer sees it, flags it (the order is active), and applies nothing
    running.refresh_from_db()
    assert running.state == Order.State.ACTIVE
    code, lines = reconcile_output(capsys)
    assert code != 0
    kinds = {line.split(":")[0]: line for line in lines}
    assert f"order {running.pk} " in kinds["escrow_status"]
    assert "status on chain is settled" in kinds["escrow_status"]
    # The settle credited alice the whole deposit (the credits agree with the chain), while the
    # database still counts that deposit as an open lease too: the token balance is short of
    # what it expects by exactly the running deposit.
    assert f"off by -{running.escrow_amount}" in kinds["escrow_balance"]


def test_a_settlement_inside_the_confirmation_window_is_not_a_difference(
    market, chain_w3, settings, capsys
):
    settings.CHAIN_CONFIRMATIONS = 3
    chain_w3.provider.ethereum_tester.mine_blocks(3)  # what is already final stays final
    index()
    order_services.order_complete(order_id=market["running"].pk)
    with pytest.raises(chain.NotConfirmed):
        leases.lease_settle(order_id=market["running"].pk)  # mined, 1 of 3 confirmations
    index()  # the LeaseSettled log is stored, not final: the database has not applied it
    assert not ChainEvent.objects.get(
        name="LeaseSettled", lease_id=market["running"].lease_id
    ).is_final
    code, lines = reconcile_output(capsys)
    assert (code, lines) == (0, ["0 differences"])


def test_beat_opens_one_alert_for_a_persisting_difference_and_resolves_it(market):
    order = market["settled"]
    right = order.amount_owed
    Order.objects.filter(pk=order.pk).update(amount_owed=right + 3_600)
    first = payments_reconcile.apply().get()
    second = payments_reconcile.apply().get()
    assert first["differences"] == second["differences"] == 1
    assert (first["opened"], second["opened"], second["seen"]) == (1, 0, 1)
    alert = Alert.objects.get()
    assert alert.kind == "reconcile:escrow_split" and alert.resolved_at is None
    assert f"order {order.pk} " in alert.message and alert.detail["order_id"] == order.pk

    Order.objects.filter(pk=order.pk).update(amount_owed=right)
    assert payments_reconcile.apply().get()["resolved"] == 1
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert Alert.objects.count() == 1
