"""What a decided job means for its machine: a pass counts towards its suite and its listing's
figure; a failure fails the suite, suspends the machine, ends its leases and writes the verdict
that the payments app turns into a slash, all in the transaction of the decision.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from marketplace.benchmarks import signals
from marketplace.benchmarks.models import BenchmarkJob, BenchmarkSuite, Verdict
from marketplace.benchmarks.services.transitions import State, _lock, _transition
from marketplace.providers.models import Machine
from workers.kernels import job_spec_from_dict
from workers.verification.protocol import document_hash, report_document

# Outcomes that end a job without counting against its machine.
NO_FAULT_REASONS = ("suite_failed", "not_dispatched", "platform_unavailable", "device_dropped")


def _pass(job: BenchmarkJob, detail: str, **fields: Any) -> BenchmarkJob:
    _transition(
        job,
        State.VERIFIED,
        finished_at=timezone.now(),
        outcome_detail=detail,
        answer=None,  # a verified answer is no evidence of anything; the report hash stays
        **fields,
    )
    verdict = _verdict_record(
        key=str(job.pk),
        kind=Verdict.Kind.PASS,
        machine_id=job.machine_id,
        job=job,
        report_hash="0x" + job.report_hash,
        reason="",
        penalised=False,
        order_ids=[],
    )
    machine_id, job_id, digest = job.machine_id, job.pk, verdict.report_hash
    transaction.on_commit(
        lambda: signals.machine_verification_passed.send(
            sender=BenchmarkJob,
            machine_id=machine_id,
            job_id=job_id,
            report_hash=digest,
            verdict_id=verdict.pk,
        )
    )
    if job.suite_id is not None:
        _suite_progress(job.suite_id)
    elif job.kind == "matmul" and job.precision == "fp32":
        _record_listing_tflops(job.machine_id)
    return job


def _record_listing_tflops(machine_id: int) -> None:
    """The listing's figure: the sum over the machine's verified devices of each one's newest
    verified fp32 matmul (jobs run on one device each)."""
    from marketplace.benchmarks.selectors import machine_verified_tflops
    from marketplace.listings.services import listing_record_verified_tflops

    tflops = machine_verified_tflops(machine_id=machine_id)
    if tflops:
        listing_record_verified_tflops(machine_id=machine_id, tflops=tflops)


def _machine_record_verified(suite: BenchmarkSuite) -> None:
    """What the passed suite verified, on the machine: the devices whose every job passed (each
    by the identity it reported) and the precisions they all passed. The machine's open
    listing follows (fewer devices, a precision lost)."""
    from marketplace.listings.services import listing_follow_verified_machine

    jobs = list(suite.jobs.values_list("device_index", "state", "device_uuid", "precision"))
    devices: dict[int, list[tuple[str, str, str]]] = {}
    for index, state, uuid, precision in jobs:
        devices.setdefault(index, []).append((state, uuid, precision))
    passed = sorted(
        i for i, rows in devices.items() if all(s == State.VERIFIED for s, _, _ in rows)
    )
    precisions = sorted({p for i in passed for _, _, p in devices[i]})
    machine = Machine.objects.select_for_update().get(pk=suite.machine_id)
    machine.verified_devices = [{"index": i, "uuid": devices[i][0][1]} for i in passed]
    machine.verified_device_count = len(passed)
    machine.verified_precisions = precisions
    machine.verified_at = timezone.now()
    machine.save(
        update_fields=[
            "verified_devices",
            "verified_device_count",
            "verified_precisions",
            "verified_at",
            "updated_at",
        ]
    )
    listing_follow_verified_machine(machine_id=machine.pk)


def _suite_progress(suite_id: int) -> None:
    from marketplace.providers.services import machine_mark_verified

    suite = BenchmarkSuite.objects.select_for_update().get(pk=suite_id)
    if suite.state != BenchmarkSuite.State.RUNNING:
        return
    if suite.jobs.filter(state__in=BenchmarkJob.OPEN_STATES).exists():
        return
    # Every job is final and none was rejected (a rejection fails the suite): the devices whose
    # jobs all passed are verified; a device dropped for a timeout is not counted.
    suite.state = BenchmarkSuite.State.PASSED
    suite.finished_at = timezone.now()
    suite.save(update_fields=["state", "finished_at", "updated_at"])
    machine_mark_verified(machine_id=suite.machine_id, reason="passed onboarding benchmarks")
    _machine_record_verified(suite)
    _record_listing_tflops(suite.machine_id)


def _device_droppable(job: BenchmarkJob) -> bool:
    """A device of a multi-device onboarding suite that timed out is dropped rather than failing
    the suite, as long as another device can still pass: the machine is verified (and listed)
    with the devices that did. The last device standing is not dropped: timing out on every
    device is a missed deadline like any other."""
    suite_jobs = BenchmarkJob.objects.filter(suite_id=job.suite_id)
    failed = set(
        suite_jobs.filter(state__in=(State.REJECTED, State.EXPIRED)).values_list(
            "device_index", flat=True
        )
    )
    alive = set(suite_jobs.values_list("device_index", flat=True)) - failed - {job.device_index}
    return bool(alive)


def _fail(
    job: BenchmarkJob, target: str, reason: str, detail: str, *, penalise: bool = True, **fields
) -> BenchmarkJob:
    """Rejects or expires a job; unless it was nobody's fault, the machine is suspended, its
    leases end and the payments app hears of it (after commit) to slash."""
    _transition(
        job,
        target,
        finished_at=timezone.now(),
        outcome_reason=reason,
        outcome_detail=detail[:2000],
        **fields,
    )
    if not job.report_hash:
        # Expired and malformed jobs have no verification report; the document records what is
        # known, so a slash on chain still points at a published, reproducible document.
        job.report_document = report_document(
            job_spec_from_dict(job.spec),
            job.seed,
            job.commitment_root or None,
            job.challenge or {},
            {"passed": False, "reason": reason, "state": target},
        )
        job.report_hash = document_hash(job.report_document)
        job.save(update_fields=["report_hash", "report_document", "updated_at"])
    if job.suite_id is not None:
        if reason == "device_dropped":
            return job
        if (
            target == State.EXPIRED
            and reason == "deadline_exceeded"
            and job.purpose == "onboarding"
            and _device_droppable(job)
        ):
            for other_id in (
                BenchmarkJob.objects.filter(
                    suite_id=job.suite_id,
                    device_index=job.device_index,
                    state__in=BenchmarkJob.OPEN_STATES,
                )
                .order_by("pk")
                .values_list("pk", flat=True)
            ):
                other = _lock(other_id)
                if other.state in BenchmarkJob.OPEN_STATES:
                    detail = f"device {job.device_index} timed out on job {job.pk}"
                    _fail(other, State.EXPIRED, "device_dropped", detail, penalise=False)
            _suite_progress(job.suite_id)
            return job
        _suite_fail(job.suite_id, reason, exclude_job_id=job.pk)
    if penalise:
        _machine_penalise(job, reason)
    return job


def _suite_fail(suite_id: int, reason: str, *, exclude_job_id: int) -> None:
    suite = BenchmarkSuite.objects.select_for_update().get(pk=suite_id)
    if suite.state != BenchmarkSuite.State.RUNNING:
        return
    suite.state = BenchmarkSuite.State.FAILED
    suite.outcome_reason = reason
    suite.finished_at = timezone.now()
    suite.save(update_fields=["state", "outcome_reason", "finished_at", "updated_at"])
    for other_id in (
        suite.jobs.filter(state__in=BenchmarkJob.OPEN_STATES)
        .exclude(pk=exclude_job_id)
        .order_by("pk")
        .values_list("pk", flat=True)
    ):
        other = _lock(other_id)
        if other.state in BenchmarkJob.OPEN_STATES:
            _fail(other, State.EXPIRED, "suite_failed", f"suite {suite_id} failed", penalise=False)


def _machine_penalise(job: BenchmarkJob, reason: str) -> None:
    from marketplace.orders.services import orders_end_for_machine
    from marketplace.providers.services import machine_suspend

    machine = Machine.objects.select_for_update().get(pk=job.machine_id)
    if machine.state != Machine.State.SUSPENDED:
        machine_suspend(
            machine_id=machine.pk, reason=f"benchmark job {job.pk} {job.state}: {reason}"
        )
    ended = orders_end_for_machine(machine_id=machine.pk, reason=f"failed verification: {reason}")
    # In this transaction, not in a receiver after commit: the settlements of the leases ended
    # above are enqueued on commit too (and before the announcement below), and they cite this
    # row's report hash. Whatever runs first, the row is already there.
    verdict = _verdict_record(
        key=str(job.pk),
        kind=Verdict.Kind.FAIL,
        machine_id=machine.pk,
        job=job,
        report_hash="0x" + job.report_hash,
        reason=reason,
        penalised=True,
        order_ids=ended,
    )
    _announce_failure(verdict)


def _verdict_record(
    *,
    key: str,
    kind: str,
    machine_id: int,
    job: BenchmarkJob | None,
    report_hash: str,
    reason: str,
    penalised: bool,
    order_ids: list[int],
    report: dict[str, Any] | None = None,
) -> Verdict:
    """Call inside the transaction of the decision. A pass has no effects to enqueue (rewards
    are paid per period from these rows), so it is born claimed. The report document (the
    job's, unless given) is stored with it: report_hash is its SHA-256, published at
    GET /api/v1/reports/{hash} for anyone to audit."""
    document = report if report is not None else (job.report_document if job else None)
    if document is not None and "0x" + document_hash(document) != report_hash.lower():
        raise ValueError(f"report document does not hash to {report_hash}")
    verdict = Verdict.objects.create(
        key=key,
        kind=kind,
        passed=kind == Verdict.Kind.PASS,
        penalised=penalised,
        machine_id=machine_id,
        job=job,
        report_hash=report_hash.lower(),
        report_document=document,
        reason=reason[:100],
        effects_enqueued_at=timezone.now() if kind == Verdict.Kind.PASS else None,
    )
    if order_ids:
        verdict.orders.set(order_ids)
    return verdict


def _announce_failure(verdict: Verdict) -> None:
    """Tells the payments app, after commit, to enqueue the slash and settlements. If this
    process dies before it does, the payments app's beat sweep finds the unclaimed row."""
    fields = {
        "machine_id": verdict.machine_id,
        "job_id": verdict.job_id if verdict.job_id is not None else verdict.key,
        "report_hash": verdict.report_hash,
        "reason": verdict.reason,
        "order_id": verdict.job.order_id if verdict.job is not None else None,
        "verdict_id": verdict.pk,
    }
    transaction.on_commit(
        lambda: signals.machine_verification_failed.send(sender=Verdict, **fields)
    )
