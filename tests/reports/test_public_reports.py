"""Every verdict has a stored report document anyone can fetch (GET /api/v1/reports/{hash}) and
audit without the platform's database (workers/audit.py): the hash on chain is the SHA-256 of
the document, the evidence is the answer the document names, and running the verification again
from the document alone comes out as it says. A tampered report fails the audit."""

import copy
import hashlib
import json

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.benchmarks.models import Verdict
from tests.benchmarks.conftest import CPU_HARDWARE
from workers.agent.runner import JobRunner
from workers.audit import audit_report

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def cpu_suites(settings):
    settings.BENCHMARK_SMALL_SUITES = True


class Skipper(JobRunner):
    """Leaves a third of the chain job's units uncomputed."""

    def sketch(self, spec, seed):
        y = super().sketch(spec, seed).copy()
        y[::3] = 0
        return y


def _fetch(report_hash, status=200):
    response = APIClient().get(f"/api/v1/reports/{report_hash}")  # anonymous: reports are public
    assert response.status_code == status, response.content
    return response.json()


def _sha256(document):
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "0x" + hashlib.sha256(text.encode()).hexdigest()


def test_a_rejected_jobs_report_is_public_and_passes_the_audit(
    mallory, make_agent, runner_for, verdicts
):
    from tests.factories import ProviderFactory

    machine, api, _ = make_agent(ProviderFactory(owner=mallory), hardware=CPU_HARDWARE)
    result = runner_for(api, Skipper).run_once(wait=0)
    assert (result.state, result.reason) == ("rejected", "row_mismatch")
    verdict = Verdict.objects.get(machine=machine, passed=False)

    report = _fetch(verdict.report_hash)
    assert report["report_hash"] == verdict.report_hash == _sha256(report["document"])
    document = report["document"]
    # What a third party needs: the spec, the seed (revealed now the job is decided), the
    # payload's digest, the units the verifier drew, the outcome; and the payload itself.
    assert document["protocol"] == "chain-sketch/v1"
    assert document["seed"] == verdict.job.seed and len(document["units"]) == 48
    assert document["outcome"]["reason"] == "row_mismatch"
    assert report["evidence"]["y"] and report["penalised"] is True

    audit = audit_report(report, expected_hash=verdict.report_hash)
    assert audit.ok, audit.lines
    assert any("run again: passed=False reason=row_mismatch" in line for line in audit.lines)


@pytest.mark.parametrize(
    "tamper",
    ["outcome", "seed", "evidence", "units", "hash"],
)
def test_a_tampered_report_fails_the_audit(mallory, make_agent, runner_for, verdicts, tamper):
    from tests.factories import ProviderFactory

    machine, api, _ = make_agent(ProviderFactory(owner=mallory), hardware=CPU_HARDWARE)
    runner_for(api, Skipper).run_once(wait=0)
    verdict = Verdict.objects.get(machine=machine, passed=False)
    report = copy.deepcopy(_fetch(verdict.report_hash))
    expected = verdict.report_hash
    if tamper == "outcome":  # the platform claims a failure that its verification did not find
        report["document"]["outcome"]["reason"] = "precision_mismatch"
    elif tamper == "seed":
        report["document"]["seed"] = "00" * 32
    elif tamper == "evidence":  # an answer swapped for a worse one after the fact
        report["evidence"]["y"] = report["evidence"]["y"][::-1]
    elif tamper == "units":
        report["document"]["units"] = report["document"]["units"][1::3]
    else:  # a document re-hashed consistently, but not the hash the chain cites
        report["document"]["outcome"]["reason"] = "precision_mismatch"
        report["report_hash"] = _sha256(report["document"])
    audit = audit_report(report, expected_hash=expected)
    assert not audit.ok, audit.lines


def test_a_document_that_hashes_right_but_does_not_reproduce_fails(
    mallory, make_agent, runner_for, verdicts
):
    """A report whose outcome the platform made up: consistent hash (as if the chain cited the
    forged document), but running the verification again from it finds that the answer was
    honest."""
    from tests.factories import ProviderFactory

    machine, api, _ = make_agent(ProviderFactory(owner=mallory), hardware=CPU_HARDWARE)
    runner_for(api, Skipper).run_once(wait=0)
    verdict = Verdict.objects.get(machine=machine, passed=False)
    report = copy.deepcopy(_fetch(verdict.report_hash))
    # An honest payload for the same job, with the rejection's outcome kept.
    from workers.kernels.chain import chain_spec_from_dict
    from workers.kernels.chain_run import chain_compute
    from workers.verification.sketch import payload_digest, sketch_document

    document = report["document"]
    spec = chain_spec_from_dict(document["spec"])
    honest = sketch_document(spec, document["seed"], chain_compute(spec, document["seed"]))
    report["evidence"] = honest
    document["payload_sha256"] = payload_digest(honest)
    report["report_hash"] = _sha256(document)
    audit = audit_report(report, expected_hash=report["report_hash"])
    assert not audit.ok
    assert any("run again: passed=True" in line for line in audit.lines), audit.lines


def test_a_passing_jobs_report_is_public_without_its_answer(bob_provider, make_agent, runner_for):
    machine, api, _ = make_agent(bob_provider, hardware=CPU_HARDWARE)
    assert runner_for(api).run_once(wait=0).state == "verified"
    verdict = Verdict.objects.get(machine=machine, passed=True)
    report = _fetch(verdict.report_hash.removeprefix("0x"))  # 0x is optional
    assert report["evidence"] is None and report["document"]["outcome"]["passed"] is True
    audit = audit_report(report, expected_hash=verdict.report_hash)
    assert audit.ok, audit.lines
    assert any("(a pass keeps only its digest)" in line for line in audit.lines), audit.lines


def test_a_failure_decided_without_an_answer_says_so_in_its_audit():
    # A check that was never fetched (or a device refused) has no answer to re-run: the audit
    # checks the hash and says why there is nothing more, not that the job passed.
    document = {"kind": "benchmark", "outcome": {"passed": False, "reason": "deadline_exceeded"}}
    report = {"document": document, "evidence": None, "report_hash": _sha256(document)}
    audit = audit_report(report)
    assert audit.ok, audit.lines
    assert audit.lines[-1] == (
        "info  no evidence published (decided deadline_exceeded without an answer to re-run): "
        "hash checked only"
    )


def test_a_liveness_report_is_stored_and_served(alice, bob_provider, verdicts):
    from datetime import timedelta

    from django.test import TestCase

    from marketplace.providers.models import Machine
    from tests.factories import ListingFactory
    from tests.payments.helpers import make_active_order
    from workers.tasks import machines_expire_heartbeats

    listing = ListingFactory(machine__provider=bob_provider)
    order = make_active_order(renter=alice, listing=listing, key="report-liveness")
    Machine.objects.filter(pk=listing.machine_id).update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        machines_expire_heartbeats()
    verdict = Verdict.objects.get(machine_id=listing.machine_id, kind="liveness")
    report = _fetch(verdict.report_hash)
    assert report["document"]["kind"] == "liveness"
    assert report["document"]["broken_orders"] == [order.pk] == report["order_ids"]
    assert audit_report(report, expected_hash=verdict.report_hash).ok


@pytest.mark.parametrize(
    ("report_hash", "status", "code"),
    [
        ("abc", 400, None),
        ("0x" + "g" * 64, 400, None),
        ("0x" + "a" * 64, 404, "benchmarks_report_not_found"),
    ],
)
def test_bad_and_unknown_hashes_get_a_json_error(report_hash, status, code):
    body = _fetch(report_hash, status=status)
    assert "error" in body
    if code:
        assert body["error"]["code"] == code


def test_an_undecided_job_has_no_report(bob_provider, make_agent):
    """The seed stays secret until the job is decided: nothing is served for an open job."""
    from marketplace.benchmarks.models import BenchmarkJob

    machine, api, _ = make_agent(bob_provider, hardware=CPU_HARDWARE)
    assert api.next_job(0) is not None
    job = BenchmarkJob.objects.filter(machine=machine, state="dispatched").first()
    assert job.report_hash == "" and not Verdict.objects.filter(machine=machine).exists()
