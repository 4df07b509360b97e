"""A market to draw: listings of several accelerator models with verified TFLOP/s, machines in
every state, decided benchmark jobs (one cheating machine), funded escrow and snapshots over
time. Built with the factories and the real services; only what no service can do at a past
time (a heartbeat or a job's end "two days ago") is written to the rows directly."""

import random
from datetime import timedelta

from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.benchmarks.models import BenchmarkJob, Purpose
from marketplace.benchmarks.services import benchmark_job_create
from marketplace.core.models import Alert
from marketplace.dashboard.services import market_snapshot_take
from marketplace.listings.services import listing_record_verified_tflops
from marketplace.orders.models import Order
from marketplace.orders.services import (
    order_activate,
    order_complete,
    order_create,
    order_mark_funded,
    order_mark_settled,
    order_mark_starting,
)
from marketplace.payments.models import ChainEvent
from marketplace.providers.models import Machine
from marketplace.providers.services import machine_suspend
from tests.factories import ListingFactory, MachineFactory, ProviderFactory, UserFactory

# model, kind, accelerators, base price per accelerator-hour (token units), TFLOP/s each
MODELS = [
    ("H100 80GB HBM3", "gpu", 8, 2_498_400, 440.0),
    ("A100 80GB", "gpu", 8, 1_299_600, 150.0),
    ("MI300X", "gpu", 8, 2_199_600, 480.0),
    ("L40S", "gpu", 4, 860_400, 85.0),
    ("RTX 4090", "gpu", 2, 399_600, 76.0),
    ("TPU v5e", "tpu", 4, 1_198_800, 190.0),
]
MATMUL = {"kind": "matmul", "n": 64, "precision": "fp32"}
MATMUL_BF16 = {"kind": "matmul", "n": 64, "precision": "bf16"}
CONV = {
    "kind": "conv2d",
    "batch": 2,
    "in_channels": 4,
    "out_channels": 32,
    "height": 8,
    "width": 8,
    "kernel_size": 3,
    "stride": 1,
    "padding": 1,
    "precision": "fp32",
}
CHEATS = ["freivalds_failed", "row_mismatch", "merkle_proof_invalid", "claimed_device_mismatch"]


def _finish(job: BenchmarkJob, *, state: str, at, tflops: float | None, reason: str = ""):
    # The protocol itself is exercised in tests/benchmarks; here only its outcome at a past time.
    BenchmarkJob.objects.filter(pk=job.pk).update(
        state=state,
        dispatched_at=at - timedelta(seconds=30),
        finished_at=at,
        measured_tflops=tflops,
        outcome_reason=reason,
        outcome_detail=f"{reason}: seeded evidence for the dashboard" if reason else "",
    )


def seed_market(*, hours: int = 72, step_minutes: int = 60, seed: int = 7) -> dict:
    rng = random.Random(seed)
    now = timezone.now()
    start = now - timedelta(hours=hours)
    renter = UserFactory(username="alice", role=User.Role.RENTER)
    listings = []
    for i, (model, kind, count, price, tflops) in enumerate(MODELS):
        provider = ProviderFactory(name=f"provider-{model.split()[0].lower()}")
        for j in range(3 + i % 3):
            listing = ListingFactory(
                machine__provider=provider,
                machine__name=f"{model.split()[0].lower()}-{j}",
                machine__accelerator_model=model,
                machine__accelerator_kind=kind,
                machine__accelerator_count=count,
                model=model,
                accelerator_kind=kind,
                accelerator_count=count,
                price_per_hour=price + 3600 * rng.randint(-40, 60),
            )
            whole = tflops * count * rng.uniform(0.85, 1.02)
            listing_record_verified_tflops(machine_id=listing.machine_id, tflops=whole)
            listings.append(listing)
    # Machines that are not on the market: new, gone quiet, barred.
    spare = [MachineFactory(state=Machine.State.REGISTERED, name=f"new-{k}") for k in range(3)]
    honest = listings[0].machine
    mallory = MachineFactory(name="mallory-box", accelerator_model="H100 80GB HBM3")

    # Benchmark history: the honest H100 box passes everything, mallory cheats now and then.
    for machine, cheat_rate in ((honest, 0.0), (listings[4].machine, 0.05), (mallory, 0.35)):
        at = start
        base = 440.0 * machine.accelerator_count / 8
        while at < now:
            for spec, factor in ((MATMUL, 1.0), (MATMUL_BF16, 1.9), (CONV, 0.6)):
                job = benchmark_job_create(
                    machine_id=machine.pk, purpose=Purpose.PERIODIC, spec=spec
                )
                roll = rng.random()
                if roll < cheat_rate:
                    reason = rng.choice(CHEATS)
                    _finish(job, state="rejected", at=at, tflops=base * factor * 2.1, reason=reason)
                elif roll < cheat_rate + 0.04:
                    _finish(job, state="expired", at=at, tflops=None, reason="deadline_exceeded")
                else:
                    tflops = base * factor * rng.uniform(0.9, 1.05)
                    _finish(job, state="verified", at=at, tflops=tflops)
            at += timedelta(hours=rng.uniform(3, 7))
    machine_suspend(machine_id=mallory.pk, reason="failed verification: freivalds_failed")

    # The market over time: machines come and go, renters fund leases.
    machines = [item.machine for item in listings] + spare
    orders = 0
    t = start
    while t <= now:
        phase = (t - start) / (now - start)
        online_share = 0.65 + 0.3 * phase + rng.uniform(-0.05, 0.05)
        alive = [m.pk for m in machines if rng.random() < online_share]
        Machine.objects.filter(pk__in=alive).update(last_heartbeat_at=t)
        if rng.random() < 0.45 and orders < len(listings):
            target = listings[orders]
            order, _ = order_create(
                renter=renter,
                listing_id=target.pk,
                pricing_mode="on_demand",
                accelerators=rng.randint(1, target.accelerator_count),
                hours=rng.choice([4, 8, 24, 72]),
                idempotency_key=f"seed-{orders}",
            )
            Order.objects.filter(pk=order.pk).update(created_at=t)
            order_mark_funded(order_id=order.pk, funded_at=t)
            order_mark_starting(order_id=order.pk)
            order_activate(order_id=order.pk)
            orders += 1
        market_snapshot_take(now=t)
        t += timedelta(minutes=step_minutes)
    Machine.objects.filter(pk__in=[m.pk for m in machines[: len(machines) * 4 // 5]]).update(
        last_heartbeat_at=now
    )
    settled = _settle_some(renter=renter, rng=rng, start=start, now=now)
    Alert.objects.create(
        kind="payments_mismatch",
        fingerprint="seed-escrow",
        message="Escrow on chain differs from the database for lease 0x5eed…: 1 order",
        last_seen_at=timezone.now(),
    )
    return {
        "honest": honest,
        "mallory": mallory,
        "listings": listings,
        "orders": orders,
        "settled": settled,
    }


def _settle_some(*, renter, rng, start, now) -> int:
    """Ends every other seeded lease and records its settlement as the indexer would (a final
    LeaseSettled with the contract's split at a 10 % fee), at a past time so revenue has days."""
    settled = 0
    for k, order in enumerate(Order.objects.filter(renter=renter, state="active").order_by("pk")):
        if k % 2:
            continue
        order = order_complete(order_id=order.pk)
        seconds = rng.randint(600, order.duration_seconds)
        owed = seconds * order.rate_per_second
        Order.objects.filter(pk=order.pk).update(billable_seconds=seconds, amount_owed=owed)
        fee = owed * 1_000 // 10_000
        event = ChainEvent.objects.create(
            chain_id=31337,
            contract="escrow",
            address="0x" + "e" * 40,
            name="LeaseSettled",
            tx_hash=f"0x{order.pk:064x}",
            log_index=0,
            block_number=1_000 + order.pk,
            block_hash="0x" + "b" * 64,
            args={
                "secondsUsed": str(seconds),
                "providerAmount": str(owed - fee),
                "feeAmount": str(fee),
                "refundAmount": str(order.escrow_amount - owed),
            },
            lease_id=order.lease_id,
            is_final=True,
            order=order,
        )
        at = min(order.funded_at + timedelta(seconds=seconds), now)
        ChainEvent.objects.filter(pk=event.pk).update(created_at=at)
        order_mark_settled(order_id=order.pk)
        settled += 1
    return settled
