"""Over 100 short leases, with faults injected at random points, real processes only: Celery
workers SIGKILLed (at random and right after a settlement was broadcast, before its receipt
was recorded), the Redis broker restarted with tasks in flight (no persistence: they are lost),
Anvil restarted (state kept), agents vanishing mid-lease, activation with no web process.

The test process plays beat (indexer, confirmations, metering, heartbeat expiry, the overdue
settlement sweep); worker subprocesses run every chain task. At the end every lease is settled
on chain once, the escrow holds nothing, and provider, renter and treasury balances equal the
database's expectation to the unit. The seed is printed; FAULT_SEED=<n> replays a run."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from hexbytes import HexBytes
from web3.exceptions import TransactionNotFound

from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments import chain
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent, ChainTransaction
from marketplace.payments.services.deployment import contracts_deploy
from marketplace.payments.services.faucet import demo_renter_fund
from marketplace.payments.services.leases import leases_settle_overdue
from marketplace.payments.services.transactions import transactions_confirm_pending
from marketplace.providers.models import Machine
from tests.factories import ListingFactory
from tests.payments.helpers import (
    ALICE,
    ALICE_KEY,
    BOB,
    BOB_KEY,
    USDC,
    accrued_fees,
    credit_of,
    make_order,
    sign_and_send,
    withdraw_credit,
    withdraw_fees,
)
from workers import chain_tasks
from workers.tasks import machines_expire_heartbeats

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LEASES = int(os.environ.get("FAULT_LEASES", "100"))
WAVE = 10
# How long a wave may take to recover: a hang detector, not a timing requirement. On CI's two
# cores, beside the SQLite run's demo, a restarted worker and two Anvil restarts in one wave once
# took past 90 s (seed 1254941442, which replays in 40 s on an idle box).
WAVE_TIMEOUT = 240
FAULTS = ("worker_kill", "worker_kill_after_broadcast", "redis_restart", "anvil_restart")


def _on_node(w3, tx_hash: str) -> bool:
    # A transaction is recorded before it is broadcast, so the row can exist a moment before
    # the node knows the hash; web3 then raises rather than returning None.
    try:
        return w3.eth.get_transaction(tx_hash) is not None
    except TransactionNotFound:
        return False


class Run:
    def __init__(self, rng, broker, node, workers) -> None:
        self.rng = rng
        self.broker = broker
        self.node = node
        self.workers = workers
        self.faults: Counter = Counter()
        self.vanished: set[int] = set()
        self.last_sweep = 0.0
        self.worker = workers.start()

    # --- beat, played by the test process ----------------------------------------------------

    def tick(self, *, indexer: bool = True) -> None:
        now = timezone.now()
        Machine.objects.exclude(pk__in=self.vanished).update(last_heartbeat_at=now)
        try:
            if indexer:
                index()
            transactions_confirm_pending()
        except (chain.ChainError, OSError) as exc:  # the node is restarting
            print(f"  beat: {type(exc).__name__}: {str(exc)[:100]}")
        order_services.orders_complete_elapsed()
        machines_expire_heartbeats()
        if time.monotonic() - self.last_sweep > 3:  # beat runs it every minute; scaled down
            self.last_sweep = time.monotonic()
            leases_settle_overdue(older_than_seconds=5)

    def wait_until(self, orders, state, *, indexer=True) -> None:
        ids = [o.pk for o in orders]
        deadline = time.monotonic() + WAVE_TIMEOUT
        while time.monotonic() < deadline:
            if not Order.objects.filter(pk__in=ids).exclude(state=state).exists():
                return
            if self.worker.poll() is not None:
                # kombu's Redis transport can crash a worker while it reconnects to a restarted
                # broker. A supervisor (systemd, Kubernetes) restarts it; so does this test, and
                # counts it: the point is that no payment is lost or doubled meanwhile.
                self.faults["worker_crashed_and_restarted"] += 1
                code = self.worker.returncode
                print(f"  worker exited with {code}; restarting (logs in {self.logs})")
                self.worker = self.workers.start()
            self.tick(indexer=indexer)
            time.sleep(0.2)
        stuck = list(Order.objects.filter(pk__in=ids).exclude(state=state).values("pk", "state"))
        sent = list(
            ChainTransaction.objects.filter(order_id__in=[o["pk"] for o in stuck]).values_list(
                "order_id", "purpose", "status", "nonce"
            )
        )
        pytest.fail(
            f"leases not {state} after {WAVE_TIMEOUT}s: {stuck}; their transactions {sent}; "
            f"seed {self.seed}"
        )

    # --- faults -------------------------------------------------------------------------------

    def restart_worker(self) -> None:
        self.workers.kill(self.worker)
        self.worker = self.workers.start()

    def inject(self, kind: str, orders) -> None:
        self.faults[kind] += 1
        print(f"  fault: {kind}")
        if kind == "worker_kill":
            time.sleep(self.rng.uniform(0, 0.5))
            self.restart_worker()
        elif kind == "redis_restart":
            time.sleep(self.rng.uniform(0, 0.2))
            self.broker.restart()
        elif kind == "anvil_restart":
            time.sleep(self.rng.uniform(0, 0.3))
            self.node.restart()
        elif kind == "worker_kill_after_broadcast":
            self._kill_after_broadcast(orders)

    def _kill_after_broadcast(self, orders) -> None:
        """Blocks stop being mined, so the worker broadcasts a settlement and waits for its
        receipt; it is SIGKILLed then, and mining resumes."""
        w3 = chain.get_web3()
        keys = [f"settle:{o.pk}" for o in orders]
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                tx = ChainTransaction.objects.filter(
                    idempotency_key__in=keys, status=ChainTransaction.Status.PENDING
                ).first()
                if tx is not None and _on_node(w3, tx.tx_hash):
                    self.restart_worker()
                    return
                time.sleep(0.05)
            pytest.fail("no settlement was broadcast while mining was off")
        finally:
            w3.provider.make_request("evm_setAutomine", [True])

    # --- one wave of leases -------------------------------------------------------------------

    def run_wave(self, listings, alice, escrow_address) -> list[Order]:
        w3 = chain.get_web3()
        orders = [
            make_order(renter=alice, listing=listing, key=f"fault-{listing.pk}")
            for listing in listings
        ]
        escrow = chain.contract("escrow")
        for order in orders:
            data = escrow.encode_abi(
                "fund",
                [
                    bytes(HexBytes(order.lease_id)),
                    BOB,
                    order.escrow_amount,
                    order.rate_per_second,
                    order.duration_seconds,
                ],
            )
            sign_and_send(w3, ALICE_KEY, escrow_address, data)
        if self.rng.random() < 0.2:
            # The web process is gone between funding and activation: only the indexer, run by
            # a worker, may activate the leases.
            self.faults["web_down_before_activation"] += 1
            print("  fault: web_down_before_activation")
            chain_tasks.chain_index.delay()
            deadline = time.monotonic() + WAVE_TIMEOUT
            while (
                Order.objects.filter(pk__in=[o.pk for o in orders], state="funded").exists()
                or Order.objects.filter(pk__in=[o.pk for o in orders], state="created").exists()
            ):
                assert time.monotonic() < deadline, "the worker's indexer did not activate"
                time.sleep(0.2)
                if time.monotonic() % 2 < 0.2:  # re-sent now and then: not from the rng
                    chain_tasks.chain_index.delay()
        self.wait_until(orders, Order.State.ACTIVE)

        fault = self.rng.choice(FAULTS) if self.rng.random() < 0.8 else None
        if fault == "worker_kill_after_broadcast":
            w3.provider.make_request("evm_setAutomine", [False])
        for order in orders:
            outcome = self.rng.choice(("stop", "elapsed", "vanish"))
            used = self.rng.randint(1, order.duration_seconds - 1)
            started = timezone.now() - timedelta(seconds=used)
            if outcome == "elapsed":
                started = timezone.now() - timedelta(seconds=order.duration_seconds + 5)
            Order.objects.filter(pk=order.pk).update(started_at=started)
            if outcome == "stop":
                order_services.order_complete(order_id=order.pk, reason="stopped_by_renter")
            elif outcome == "vanish":
                self.faults["agent_vanished"] += 1
                self.vanished.add(order.machine_id)
                # Its last heartbeat was longer ago than the timeout: the agent went silent.
                Machine.objects.filter(pk=order.machine_id).update(
                    last_heartbeat_at=timezone.now()
                    - timedelta(seconds=2 * settings.HEARTBEAT_TIMEOUT_SECONDS)
                )
        if fault is not None:
            if fault == "worker_kill_after_broadcast":
                self.tick()  # ends the elapsed and vanished leases, while blocks are not mined
            self.inject(fault, orders)
        self.wait_until(orders, Order.State.SETTLED)
        return orders


# A wave is WAVE of alice's orders created before any is funded; the per-renter cap on unfunded
# orders (a squatting defence, tests/orders_capacity) is not what this test is about.
@override_settings(ORDER_MAX_UNFUNDED_PER_RENTER=WAVE)
def test_leases_settle_exactly_once_under_faults(broker, fault_anvil, workers, alice, bob_provider):
    seed = int(os.environ.get("FAULT_SEED", random.SystemRandom().randrange(2**32)))
    print(f"\nfault injection seed: {seed} (FAULT_SEED={seed} replays it)")
    started = time.monotonic()
    rng = random.Random(seed)
    contracts_deploy(reward_pool=0)
    w3 = chain.get_web3()
    token, escrow = chain.contract("token"), chain.contract("escrow")
    demo_renter_fund(address=ALICE, amount=10**6 * USDC)
    sign_and_send(
        w3, ALICE_KEY, token.address, token.encode_abi("approve", [escrow.address, 2**255])
    )
    treasury = chain.treasury_address()

    def balance(addr):
        return token.functions.balanceOf(addr).call()

    before = {"alice": balance(ALICE), "bob": balance(BOB), "treasury": balance(treasury)}

    run = Run(rng, broker, fault_anvil, workers)
    run.seed = seed
    run.logs = workers.logdir
    listings = [ListingFactory(machine__provider=bob_provider) for _ in range(LEASES)]
    Machine.objects.update(last_heartbeat_at=timezone.now())
    all_orders = []
    for first in range(0, LEASES, WAVE):
        all_orders += run.run_wave(listings[first : first + WAVE], alice, escrow.address)

    # --- every lease paid out once, to the unit ------------------------------------------------
    index()
    orders = list(Order.objects.filter(pk__in=[o.pk for o in all_orders]))
    assert len(orders) == LEASES
    lost = doubled = 0
    expected = Counter()
    for order in orders:
        assert order.state == Order.State.SETTLED, order.pk
        live = ChainTransaction.objects.filter(
            order=order, purpose__in=("lease_settle", "lease_fail")
        )
        live = live.exclude(status=ChainTransaction.Status.FAILED)
        closes = ChainEvent.objects.filter(
            lease_id=order.lease_id, name__in=("LeaseSettled", "LeaseFailed")
        )
        lost += closes.count() == 0
        doubled += max(0, closes.count() - 1) + max(0, live.count() - 1)
        fee = order.amount_owed * settings.PLATFORM_FEE_BPS // 10_000
        expected["bob"] += order.amount_owed - fee
        expected["treasury"] += fee
        expected["alice"] -= order.amount_owed
        for event in closes:
            assert int(event.args["providerAmount"]) == order.amount_owed - fee, order.pk
            assert int(event.args["refundAmount"]) == order.escrow_amount - order.amount_owed
    # Settlement credited the payees (pull payments): nobody's tokens moved yet, the escrow holds
    # every unit until each payee withdraws.
    assert lost == 0 and doubled == 0
    credits = {"alice": credit_of(address=ALICE), "bob": credit_of(address=BOB)}
    refunds = sum(o.escrow_amount - o.amount_owed for o in orders)
    assert credits == {"alice": refunds, "bob": expected["bob"]}
    assert accrued_fees() == expected["treasury"]
    assert balance(escrow.address) == refunds + expected["bob"] + expected["treasury"]
    _reconcile_finds_nothing()

    withdraw_credit(w3, BOB_KEY)
    withdraw_credit(w3, ALICE_KEY)
    withdraw_fees(w3, ALICE_KEY, escrow)
    index()
    after = {"alice": balance(ALICE), "bob": balance(BOB), "treasury": balance(treasury)}
    moved = {who: after[who] - before[who] for who in after}
    escrow_left = balance(escrow.address)
    elapsed = time.monotonic() - started
    print(
        f"\nleases run: {len(orders)}; faults injected: {dict(sorted(run.faults.items()))}; "
        f"worker processes started: {workers.started}\npayments lost: {lost}, doubled: {doubled}; "
        f"escrow left holding {escrow_left} units after withdrawals; balances moved {moved}, "
        f"expected {dict(expected)}; {elapsed:.0f}s; seed {seed}"
    )
    assert escrow_left == 0
    assert moved == {
        "alice": expected["alice"],
        "bob": expected["bob"],
        "treasury": expected["treasury"],
    }
    assert credit_of(address=ALICE) == credit_of(address=BOB) == accrued_fees() == 0
    assert sum(run.faults[k] for k in FAULTS) >= 1
    _reconcile_finds_nothing()


def _reconcile_finds_nothing() -> None:
    reconcile = (
        Path(__file__).resolve().parents[2]
        / "marketplace/payments/management/commands/reconcile.py"
    )
    if reconcile.exists():
        out = StringIO()
        call_command("reconcile", stdout=out)
        assert "0 differences" in out.getvalue(), out.getvalue()
