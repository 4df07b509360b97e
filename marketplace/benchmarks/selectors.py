from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max

from marketplace.accounts.models import User
from marketplace.benchmarks.models import BenchmarkJob, MachineUptime, Verdict
from marketplace.benchmarks.services import NO_FAULT_REASONS
from marketplace.core.errors import NotFoundError
from marketplace.providers.models import Machine
from marketplace.providers.selectors import machine_get_for

State = BenchmarkJob.State


def machine_poll_state(*, machine_id: int) -> tuple[str, bool]:
    """(the machine's state, whether it has a queued or dispatched job), in one query: most
    polls of a fleet find nothing to hand out, and this answers them without the dispatch's
    reads and its transaction. Written out rather than built by the ORM, for the same reason as
    providers.selectors.agent_credential_machine_id: it runs on every poll."""
    q = connection.ops.quote_name
    sql = (
        f"SELECT m.{q('state')}, EXISTS (SELECT 1 FROM {q(BenchmarkJob._meta.db_table)} j "
        f"WHERE j.{q('machine_id')} = m.{q('id')} AND j.{q('state')} IN (%s, %s)) "
        f"FROM {q(Machine._meta.db_table)} m WHERE m.{q('id')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [State.QUEUED.value, State.DISPATCHED.value, machine_id])
        row = cursor.fetchone()
    if row is None:
        raise NotFoundError("No such machine.", code="providers_machine_not_found")
    return row[0], bool(row[1])


def benchmark_job_get_for_agent(*, job_id: int, machine_id: int) -> BenchmarkJob:
    job = BenchmarkJob.objects.filter(pk=job_id, machine_id=machine_id).first()
    if job is None:
        raise NotFoundError("No such benchmark job.", code="benchmarks_job_not_found")
    return job


def report_get(*, report_hash: str) -> dict[str, Any]:
    """A decided verification's public report: the document its hash on chain is the SHA-256 of,
    and, for a failure, the agent's answer it judged (the evidence), so that anyone can check
    the hash and run the verification again. Passes keep only the answer's digest (in the
    document); undecided jobs have no report (their seed is still secret)."""
    verdict = (
        Verdict.objects.select_related("job")
        .filter(report_hash="0x" + report_hash, report_document__isnull=False)
        .order_by("pk")
        .first()
    )
    if verdict is None:
        raise NotFoundError(
            "No published report has this hash.", code="benchmarks_report_not_found"
        )
    job = verdict.job
    return {
        "report_hash": verdict.report_hash,
        "kind": verdict.kind,
        "passed": verdict.passed,
        "penalised": verdict.penalised,
        "reason": verdict.reason,
        "machine_id": verdict.machine_id,
        "job_id": verdict.job_id,
        "order_ids": sorted(verdict.orders.values_list("pk", flat=True)),
        "decided_at": verdict.created_at,
        "document": verdict.report_document,
        "evidence": job.answer if job is not None and not verdict.passed else None,
    }


def machine_benchmark_scores(*, machine_id: int) -> list[dict[str, Any]]:
    """Best and last verified TFLOP/s per kernel x precision (server-timed)."""
    verified = BenchmarkJob.objects.filter(machine_id=machine_id, state=State.VERIFIED)
    rows = (
        verified.values("kind", "precision")
        .annotate(best_tflops=Max("measured_tflops"), verified_jobs=Count("pk"))
        .order_by("kind", "precision")
    )
    scores = []
    for row in rows:
        last = (
            verified.filter(kind=row["kind"], precision=row["precision"])
            .order_by("-finished_at", "-pk")
            .values("measured_tflops", "finished_at")
            .first()
        )
        scores.append(
            {
                **row,
                "last_tflops": last["measured_tflops"],
                "last_verified_at": last["finished_at"],
            }
        )
    return scores


def machine_verified_tflops(*, machine_id: int, precision: str = "fp32") -> float | None:
    """The figure a listing of this machine shows at one precision: the sum over its verified
    devices of each one's newest verified matmul at that precision (server-timed). A device
    that was not verified adds nothing. None while no such job has passed."""
    return machine_verified_tflops_by_precision(machine_id=machine_id).get(precision)


def machine_verified_tflops_by_precision(*, machine_id: int) -> dict[str, float]:
    """Whole-machine matmul TFLOP/s per precision: for each precision, the sum over the
    machine's verified devices of each one's newest verified job. Never the claimed count
    times one device's figure: a device that did not pass adds nothing."""
    machine = Machine.objects.filter(pk=machine_id).first()
    if machine is None:
        return {}
    indices = {entry["index"] for entry in machine.verified_devices or []} or {0}
    newest: dict[tuple[str, int], float] = {}
    rows = (
        BenchmarkJob.objects.filter(
            machine_id=machine_id, state=State.VERIFIED, kind="matmul", device_index__in=indices
        )
        .order_by("-finished_at", "-pk")
        .values_list("precision", "device_index", "measured_tflops")
    )
    for precision, index, tflops in rows.iterator():
        newest.setdefault((precision, index), tflops or 0.0)
    totals: dict[str, float] = {}
    for (precision, _), tflops in newest.items():
        totals[precision] = totals.get(precision, 0.0) + tflops
    return {precision: total for precision, total in totals.items() if total > 0}


def machine_reputation(*, machine_id: int) -> dict[str, Any]:
    """Pass ratio over the last BENCHMARK_REPUTATION_WINDOW decided jobs and heartbeat uptime;
    the score is their product (a machine that cheats or is rarely up ranks low either way)."""
    recent = list(
        BenchmarkJob.objects.filter(
            machine_id=machine_id, state__in=(State.VERIFIED, State.REJECTED, State.EXPIRED)
        )
        .exclude(outcome_reason__in=NO_FAULT_REASONS)
        .order_by("-finished_at", "-pk")
        .values_list("state", flat=True)[: settings.BENCHMARK_REPUTATION_WINDOW]
    )
    passed = sum(1 for state in recent if state == State.VERIFIED)
    pass_ratio = passed / len(recent) if recent else None
    uptime = MachineUptime.objects.filter(machine_id=machine_id).first()
    uptime_ratio = uptime.online_samples / uptime.samples if uptime and uptime.samples else None
    score = None
    if pass_ratio is not None:
        score = pass_ratio * (uptime_ratio if uptime_ratio is not None else 1.0)
    return {
        "recent_jobs": len(recent),
        "passed_jobs": passed,
        "pass_ratio": pass_ratio,
        "uptime_samples": uptime.samples if uptime else 0,
        "uptime_ratio": uptime_ratio,
        "score": score,
    }


def machine_benchmarks_for(*, user: User, machine_id: int) -> dict[str, Any]:
    """Scores, reputation and recent jobs of a machine its owner (or staff) may see."""
    machine: Machine = machine_get_for(user=user, machine_id=machine_id)
    jobs = BenchmarkJob.objects.filter(machine=machine).order_by("-pk")[:20]
    return {
        "machine_id": machine.pk,
        "state": machine.state,
        "scores": machine_benchmark_scores(machine_id=machine.pk),
        "reputation": machine_reputation(machine_id=machine.pk),
        "recent_jobs": list(jobs),
    }


def benchmark_job_dispatched_for(*, machine_id: int) -> BenchmarkJob | None:
    """The machine's dispatched, not yet committed job, unless the machine is suspended (a
    suspended machine is handed nothing, not even again), or unless a queued job waits for a
    device that has none out: an agent with several devices polls again at once to take its
    other devices' jobs, and must get those, not the first one again. It gets the repeat once
    nothing new can be dispatched (which is also when an agent that lost a reply asks)."""
    from marketplace.benchmarks.services.jobs import queued_for_free_devices

    if Machine.objects.filter(pk=machine_id, state=Machine.State.SUSPENDED).exists():
        return None
    if queued_for_free_devices(machine_id).exists():
        return None
    return (
        BenchmarkJob.objects.filter(machine_id=machine_id, state=State.DISPATCHED)
        .order_by("pk")
        .first()
    )


def order_lease_checks_proven_until(*, order_id: int):
    """How far a lease's own checks prove it was served, or None when every lease check it was
    given has passed (then nothing here bounds its billing). Once a check is owed and not passed
    (still open when the lease breaks, or failed for a reason that is the machine's), the lease
    is proven only up to the commitment of the last check that passed before that one (a
    commitment is the server-timed moment the machine had done the work); with none, up to
    the lease's start (None is returned only when no check is owed)."""
    from marketplace.orders.models import Order

    checks = BenchmarkJob.objects.filter(order_id=order_id, purpose="lease")
    owed = (
        checks.exclude(state=State.VERIFIED)
        .exclude(outcome_reason__in=NO_FAULT_REASONS)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if owed is None:
        return None
    passed = (
        checks.filter(state=State.VERIFIED, created_at__lt=owed, committed_at__isnull=False)
        .order_by("-committed_at")
        .values_list("committed_at", flat=True)
        .first()
    )
    if passed is not None:
        return passed
    return Order.objects.filter(pk=order_id).values_list("started_at", flat=True).first()
