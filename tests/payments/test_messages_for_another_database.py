"""A Celery message left in Redis by a run against another database (`make clean-run`, a
killed worker) names an order or a job this database never had: the task drops it with a
warning, and nothing is sent or raised (no traceback in the worker's log)."""

import logging

import pytest

from marketplace.payments.models import ChainTransaction
from marketplace.payments.services.leases import lease_settle, lease_start
from workers.benchmark_tasks import GONE, benchmark_issue_challenge, benchmark_verify

pytestmark = pytest.mark.django_db

MISSING = 987_654


@pytest.mark.parametrize("service", [lease_start, lease_settle])
def test_a_lease_task_for_an_order_that_does_not_exist_is_dropped(service, caplog):
    with caplog.at_level(logging.WARNING):
        assert service(order_id=MISSING) is None
    assert f"no order {MISSING}; dropping the task" in caplog.text
    assert not ChainTransaction.objects.exists()


@pytest.mark.parametrize("task", [benchmark_verify, benchmark_issue_challenge])
def test_a_benchmark_task_for_a_job_that_does_not_exist_is_dropped(task, caplog):
    with caplog.at_level(logging.WARNING):
        assert task(MISSING) == GONE
    assert f"benchmark job {MISSING} does not exist" in caplog.text
