"""The platform's own failures count against nobody (issue 8, section 1).

A 5xx answer, a failed health probe or most machines falling silent at once is recorded as a
PlatformIncident. A deadline missed while one was open expires the job as
'platform_unavailable' (no suspension, no slash, no lost lease); a heartbeat lapse that
overlaps one still takes the machine offline but its verdict does not penalise."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.test import TestCase
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.benchmarks.models import BenchmarkJob, PlatformIncident, Verdict
from marketplace.benchmarks.services import (
    benchmark_dispatch_next,
    benchmark_job_create,
    benchmarks_expire_overdue,
    platform_health_probe,
)
from marketplace.orders.models import Order
from marketplace.payments.selectors import order_failure_report_hash
from marketplace.payments.services.slashing import verdict_enqueue_effects
from marketplace.providers.models import Machine
from tests.factories import ListingFactory
from tests.integration.conftest import free_port
from tests.payments.helpers import make_active_order
from workers.tasks import machines_expire_heartbeats

pytestmark = pytest.mark.django_db
SPEC = {"kind": "matmul", "n": 8, "precision": "fp32"}


@pytest.fixture
def bobs_box(bob_provider, make_agent):
    """bob's verified machine, re-verified while it runs alice's lease."""
    machine, _, client = make_agent(bob_provider)
    Machine.objects.filter(pk=machine.pk).update(
        state=Machine.State.VERIFIED, last_heartbeat_at=timezone.now()
    )
    machine.refresh_from_db()
    return machine, client


def overdue_job(machine: Machine) -> BenchmarkJob:
    """Dispatched ten minutes ago; its deadline passed a second ago with no commitment."""
    job = benchmark_job_create(machine_id=machine.pk, purpose="periodic", spec=SPEC)
    benchmark_dispatch_next(machine_id=machine.pk)
    now = timezone.now()
    BenchmarkJob.objects.filter(pk=job.pk).update(
        dispatched_at=now - timedelta(minutes=10), deadline=now - timedelta(seconds=1)
    )
    return job


def crash_the_api(monkeypatch, client: APIClient, path: str = "/api/v1/health") -> None:
    """An unhandled error inside a view: Django answers 500."""

    def boom(*args, **kwargs):
        raise RuntimeError("the database driver fell over")

    monkeypatch.setattr("marketplace.core.views.HealthApi.get", boom)
    client.raise_request_exception = False
    response = client.get(path)
    assert response.status_code == 500
    monkeypatch.undo()


def expire_all(verdicts) -> BenchmarkJob:
    with TestCase.captureOnCommitCallbacks(execute=True):
        (job_id,) = benchmarks_expire_overdue()
    return BenchmarkJob.objects.get(pk=job_id)


def test_a_deadline_missed_while_the_api_answered_500_expires_without_penalty(
    bobs_box, monkeypatch, verdicts
):
    machine, _ = bobs_box
    job = overdue_job(machine)
    crash_the_api(monkeypatch, APIClient())
    (incident,) = PlatformIncident.objects.all()
    assert incident.source == "server_error" and incident.caused_by == ""

    job = expire_all(verdicts)
    assert (job.state, job.outcome_reason) == ("expired", "platform_unavailable")
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.VERIFIED
    assert verdicts == [] and not Verdict.objects.exists()


def test_without_an_incident_a_missed_deadline_is_penalised_as_before(bobs_box, verdicts):
    machine, _ = bobs_box
    overdue_job(machine)
    job = expire_all(verdicts)
    assert (job.state, job.outcome_reason) == ("expired", "deadline_exceeded")
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.SUSPENDED
    assert [kind for kind, _ in verdicts] == ["failed"]
    assert Verdict.objects.get().penalised


def test_an_old_incident_does_not_excuse_a_later_deadline(bobs_box, monkeypatch, verdicts):
    machine, _ = bobs_box
    crash_the_api(monkeypatch, APIClient())
    PlatformIncident.objects.update(
        started_at=timezone.now() - timedelta(hours=2),
        ended_at=timezone.now() - timedelta(hours=1),
    )
    overdue_job(machine)
    assert expire_all(verdicts).outcome_reason == "deadline_exceeded"


def test_a_500_the_machine_caused_itself_does_not_excuse_it(bobs_box, monkeypatch, verdicts):
    """mallory cannot buy an excuse by crashing the API with her own agent's credential."""
    machine, agent_client = bobs_box
    job = overdue_job(machine)

    def boom(*args, **kwargs):
        raise RuntimeError("a bug the agent found")

    monkeypatch.setattr("marketplace.providers.apis.machine_heartbeat", boom, raising=False)
    monkeypatch.setattr("marketplace.providers.services.machine_heartbeat", boom, raising=False)
    agent_client.raise_request_exception = False
    response = agent_client.post("/api/v1/agent/heartbeat", {}, format="json")
    monkeypatch.undo()
    assert response.status_code == 500, response.status_code
    assert PlatformIncident.objects.get().caused_by == f"machine:{machine.pk}"
    job = expire_all(verdicts)
    assert job.outcome_reason == "deadline_exceeded"


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass


def test_an_unreachable_api_seen_by_the_probe_excuses_the_deadline(bobs_box, settings, verdicts):
    machine, _ = bobs_box
    port = free_port()
    settings.PLATFORM_HEALTH_URL = f"http://127.0.0.1:{port}/api/v1/health"
    settings.PLATFORM_HEALTH_TIMEOUT_SECONDS = 2
    job = overdue_job(machine)

    incident = platform_health_probe()  # nothing listens: the API is down
    assert incident is not None and incident.ended_at is None
    assert platform_health_probe().pk == incident.pk  # still one incident while down

    server = HTTPServer(("127.0.0.1", port), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert platform_health_probe() is None  # recovered: the incident closes
    finally:
        server.shutdown()
        server.server_close()
    incident.refresh_from_db()
    assert incident.ended_at is not None

    job = expire_all(verdicts)
    assert (job.state, job.outcome_reason) == ("expired", "platform_unavailable")
    assert Machine.objects.get(pk=machine.pk).state == Machine.State.VERIFIED


def test_most_machines_falling_silent_at_once_is_our_outage_not_theirs(
    alice, bob_provider, monkeypatch
):
    sent = []
    monkeypatch.setattr("workers.chain_tasks.lease_settle.delay", lambda *a: sent.append(a))
    monkeypatch.setattr("workers.chain_tasks.provider_slash.delay", lambda *a: sent.append(a))
    now = timezone.now()
    listings = [ListingFactory(machine__provider=bob_provider) for _ in range(6)]
    machines = [listing.machine_id for listing in listings]
    order = make_active_order(renter=alice, listing=listings[0], key="gap-01")
    Machine.objects.filter(pk__in=machines).update(last_heartbeat_at=now)
    silent_since = now - timedelta(minutes=5)
    Machine.objects.filter(pk__in=machines[:4]).update(last_heartbeat_at=silent_since)

    # Four of six at once: nobody goes offline, and the gap is on record.
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert machines_expire_heartbeats() == []
    gap = PlatformIncident.objects.get(source="heartbeat_gap")
    assert gap.started_at == silent_since
    assert Order.objects.get(pk=order.pk).state == Order.State.ACTIVE

    # The web tier is back: three agents get through; alice's machine really is dead. Once the
    # agents have had a heartbeat timeout to reach us, it goes offline and her lease ends,
    # but the lapse overlaps our outage: no slash.
    Machine.objects.filter(pk__in=machines[1:4]).update(last_heartbeat_at=timezone.now())
    PlatformIncident.objects.update(ended_at=timezone.now() - timedelta(minutes=3))
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert machines_expire_heartbeats() == [machines[0]]
    assert Order.objects.get(pk=order.pk).state == Order.State.FAILED
    verdict = Verdict.objects.get()
    assert (verdict.kind, verdict.penalised) == ("liveness", False)
    assert verdict.reason == "machine_offline_platform_incident"
    # (The payments receivers are detached in these tests; its beat sweep does the same.)
    assert verdict_enqueue_effects(verdict_id=verdict.pk)
    assert sent == [(order.pk,)]  # the settlement, citing this verdict; no slash
    assert order_failure_report_hash(order=order) == verdict.report_hash


def test_one_machine_falling_silent_is_its_own_fault(alice, bob_provider, monkeypatch):
    sent = []
    monkeypatch.setattr("workers.chain_tasks.lease_settle.delay", lambda *a: sent.append(a))
    monkeypatch.setattr("workers.chain_tasks.provider_slash.delay", lambda *a: sent.append(a))
    listings = [ListingFactory(machine__provider=bob_provider) for _ in range(6)]
    order = make_active_order(renter=alice, listing=listings[0], key="gap-02")
    Machine.objects.update(last_heartbeat_at=timezone.now())
    Machine.objects.filter(pk=listings[0].machine_id).update(
        last_heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert machines_expire_heartbeats() == [listings[0].machine_id]
    verdict = Verdict.objects.get()
    assert verdict.penalised and not PlatformIncident.objects.exists()
    assert verdict_enqueue_effects(verdict_id=verdict.pk)
    assert sorted(sent, key=str) == sorted([(order.pk,), (verdict.key,)], key=str)
