"""A Celery worker SIGKILLed in the middle of a verification, real processes only (Redis,
Anvil, worker subprocesses): mallory's machine answers a lease re-verification with garbage;
the worker verifying it dies after it took the task and before the decision was written. A
fresh worker and beat's sweeps (played by this test) take it from there: the job reaches a
final state, the lease is failed on chain once, citing the verdict's report hash, and the
provider is slashed once. No payment is lost or doubled."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from django.db import transaction
from django.utils import timezone
from hexbytes import HexBytes

from marketplace.benchmarks.models import BenchmarkJob, Verdict
from marketplace.benchmarks.services import (
    benchmark_commit,
    benchmark_dispatch_next,
    benchmark_job_create,
    benchmark_submit_answer,
    benchmarks_requeue_stalled,
)
from marketplace.celery import app as celery_app
from marketplace.orders.models import Order
from marketplace.payments import chain
from marketplace.payments.indexer import index
from marketplace.payments.models import ChainEvent, ChainTransaction
from marketplace.payments.services.deployment import contracts_deploy
from marketplace.payments.services.faucet import demo_renter_fund
from marketplace.payments.services.leases import ZERO_HASH, leases_settle_overdue
from marketplace.payments.services.slashing import verdicts_enqueue_effects_due
from marketplace.payments.services.transactions import transactions_confirm_pending
from marketplace.providers.models import Machine
from tests.factories import ListingFactory
from tests.payments.helpers import ALICE, ALICE_KEY, BOB, BOB_KEY, USDC, make_order, sign_and_send
from workers import benchmark_tasks

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SPEC = {"kind": "matmul", "n": 64, "precision": "fp32"}
TIMEOUT = 90


def _until(condition, what: str, tick=None) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        if tick is not None:
            tick()
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _worker_idle() -> bool:
    # A solo worker answers remote control only between tasks: an empty list is an idle one.
    replies = celery_app.control.inspect(timeout=1).active() or {}
    return bool(replies) and all(tasks == [] for tasks in replies.values())


def _broker_idle(client: redis.Redis) -> bool:
    # kombu's Redis transport: waiting messages in the "celery" list, delivered but not yet
    # acknowledged ones in the "unacked" hash. A task without acks_late is acknowledged as it
    # starts running, so both empty means every task sent has started.
    return client.llen("celery") == 0 and client.hlen("unacked") == 0


def test_a_worker_killed_mid_verification_loses_and_doubles_no_payment(
    broker, fault_anvil, workers, alice, bob_provider, settings, monkeypatch
):
    contracts_deploy(reward_pool=0)
    w3 = chain.get_web3()
    token, escrow, staking = (chain.contract(n) for n in ("token", "escrow", "staking"))
    demo_renter_fund(address=ALICE, amount=1_000 * USDC)
    demo_renter_fund(address=BOB, amount=50 * USDC)
    sign_and_send(
        w3, ALICE_KEY, token.address, token.encode_abi("approve", [escrow.address, 2**255])
    )
    sign_and_send(
        w3, BOB_KEY, token.address, token.encode_abi("approve", [staking.address, 50 * USDC])
    )
    sign_and_send(w3, BOB_KEY, staking.address, staking.encode_abi("stake", [50 * USDC]))
    broker_client = redis.Redis.from_url(broker.url)

    worker = workers.start()
    listing = ListingFactory(machine__provider=bob_provider)
    machine_id = listing.machine_id
    Machine.objects.filter(pk=machine_id).update(last_heartbeat_at=timezone.now())
    order = make_order(renter=alice, listing=listing, key="verify-kill")
    sign_and_send(
        w3,
        ALICE_KEY,
        escrow.address,
        escrow.encode_abi(
            "fund",
            [
                bytes(HexBytes(order.lease_id)),
                BOB,
                order.escrow_amount,
                order.rate_per_second,
                order.duration_seconds,
            ],
        ),
    )
    index()  # funded → active; lease_start goes to the worker
    _until(
        lambda: ChainTransaction.objects.filter(
            idempotency_key=f"start:{order.pk}", status="confirmed"
        ).exists(),
        "the lease to start on chain",
        tick=transactions_confirm_pending,
    )
    Order.objects.filter(pk=order.pk).update(started_at=timezone.now() - timedelta(seconds=300))

    # The lease's re-verification: the machine commits and answers garbage.
    job = benchmark_job_create(machine_id=machine_id, purpose="lease", spec=SPEC, order_id=order.pk)
    benchmark_dispatch_next(machine_id=machine_id)
    benchmark_commit(
        job_id=job.pk,
        machine_id=machine_id,
        payload={"root": "b" * 64, "agent_seconds": 0.2, "device": _verified_device(machine_id)},
    )
    # The worker issues the challenge; then it has nothing left to do.
    _until(
        lambda: BenchmarkJob.objects.get(pk=job.pk).state == BenchmarkJob.State.CHALLENGED,
        "the challenge",
    )
    _until(lambda: _broker_idle(broker_client) and _worker_idle(), "the worker to be idle")
    # Its verification task is sent below, once this test can hold the decision back.
    monkeypatch.setattr(benchmark_tasks.benchmark_verify, "delay", lambda *a: None)
    benchmark_submit_answer(job_id=job.pk, machine_id=machine_id, payload=b'{"y": []}')
    monkeypatch.undo()

    # The row lock makes the kill land mid-verification: the worker takes the task and runs
    # it, but cannot write a decision while this transaction holds the job.
    with transaction.atomic():
        BenchmarkJob.objects.select_for_update().filter(pk=job.pk).update(
            updated_at=timezone.now()
        )  # a write: on SQLite, the database-wide write lock
        benchmark_tasks.benchmark_verify.apply_async((job.pk,))
        # Taken from the queue: an idle solo worker with a prefetch of one holds it and runs it
        # (or is about to). Either way it dies holding the task, before any decision.
        _until(lambda: broker_client.llen("celery") == 0, "the worker to take the verification")
        acked = broker_client.hlen("unacked") == 0
        assert worker.poll() is None
        workers.kill(worker)
        assert BenchmarkJob.objects.get(pk=job.pk).state == BenchmarkJob.State.CHALLENGED
    assert not Verdict.objects.exists()
    print(
        f"\nworker {worker.pid} SIGKILLed holding the verification of job {job.pk} "
        f"({'running' if acked else 'delivered, not yet started'})"
    )

    # A fresh worker; beat (played here) re-sends the lost verification and the rest.
    workers.start()
    requeued = benchmarks_requeue_stalled(older_than_seconds=0)
    assert requeued == [job.pk]
    last = {"sweep": 0.0}

    def beat() -> None:
        index()
        transactions_confirm_pending()
        if time.monotonic() - last["sweep"] > 3:
            last["sweep"] = time.monotonic()
            benchmarks_requeue_stalled(older_than_seconds=5)
            leases_settle_overdue(older_than_seconds=5)
            verdicts_enqueue_effects_due(older_than_seconds=5)

    _until(
        lambda: (
            Order.objects.get(pk=order.pk).state == Order.State.SETTLED
            and ChainEvent.objects.filter(name="Slashed", is_final=True).exists()
        ),
        "the lease to be failed on chain and the provider slashed",
        tick=beat,
    )
    for _ in range(10):  # a few more beats: nothing more may happen
        beat()
        time.sleep(0.1)

    job.refresh_from_db()
    assert job.state in BenchmarkJob.FINAL_STATES
    assert (job.state, job.outcome_reason) == ("rejected", "malformed_answer")
    verdict = Verdict.objects.get()
    assert verdict.key == str(job.pk) and verdict.report_hash == "0x" + job.report_hash
    assert verdict.effects_enqueued_at is not None
    closes = ChainEvent.objects.filter(
        lease_id=order.lease_id, name__in=("LeaseSettled", "LeaseFailed")
    )
    slashes = ChainEvent.objects.filter(name="Slashed")
    live = ChainTransaction.objects.exclude(status=ChainTransaction.Status.FAILED)
    lost = int(not closes.exists()) + int(not slashes.exists())
    doubled = (
        max(0, closes.count() - 1)
        + max(0, slashes.count() - 1)
        + max(0, live.filter(idempotency_key=f"settle:{order.pk}").count() - 1)
        + max(0, live.filter(purpose="provider_slash").count() - 1)
    )
    print(f"payments lost: {lost}, doubled: {doubled}; worker processes: {workers.started}")
    assert lost == 0 and doubled == 0
    assert closes.get().name == "LeaseFailed"
    assert closes.get().args["reportHash"] == verdict.report_hash != ZERO_HASH
    assert slashes.get().args["reportHash"] == verdict.report_hash
    # The worker's SLASH_AMOUNT (its own settings) capped at bob's indexed stake.
    assert 0 < int(slashes.get().args["amount"]) <= 50 * USDC


def _verified_device(machine_id: int) -> str:
    """Re-verification is bound to the device verified at index 0."""
    from marketplace.providers.models import Machine

    return Machine.objects.get(pk=machine_id).verified_devices[0]["uuid"]
