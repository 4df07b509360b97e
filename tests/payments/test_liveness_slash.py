from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from marketplace.benchmarks.models import Verdict
from marketplace.orders.models import Order
from marketplace.payments.selectors import order_failure_report_hash
from marketplace.providers.models import Machine
from tests.factories import ListingFactory
from tests.payments.helpers import make_active_order
from workers.tasks import machines_expire_heartbeats

pytestmark = pytest.mark.django_db


def test_a_lease_broken_by_an_offline_machine_settles_citing_the_liveness_report(
    alice, bob_provider, monkeypatch
):
    # The receivers' tasks are not what this test is about; record what they were asked to do.
    sent = []
    monkeypatch.setattr("workers.chain_tasks.lease_settle.delay", lambda *a: sent.append(a))
    monkeypatch.setattr("workers.chain_tasks.provider_slash.delay", lambda *a: sent.append(a))
    listing = ListingFactory(machine__provider=bob_provider)
    order = make_active_order(renter=alice, listing=listing, key="liveness-02")
    Machine.objects.filter(pk=listing.machine_id).update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        machines_expire_heartbeats()
    order.refresh_from_db()
    verdict = Verdict.objects.get(machine_id=listing.machine_id)
    assert order.state == Order.State.FAILED
    assert (verdict.kind, verdict.reason) == ("liveness", "machine_offline")
    assert not verdict.passed and verdict.penalised
    assert list(verdict.orders.all()) == [order]
    assert order_failure_report_hash(order=order) == verdict.report_hash
    assert (verdict.key,) in sent and (order.pk,) in sent
    assert verdict.effects_enqueued_at is not None


def test_settling_an_order_that_does_not_exist_is_a_no_op(db):
    from marketplace.payments.services.leases import lease_settle

    assert lease_settle(order_id=987654) is None
