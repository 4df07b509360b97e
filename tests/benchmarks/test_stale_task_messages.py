import logging

import pytest

from workers.benchmark_tasks import benchmark_issue_challenge, benchmark_verify

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("task", [benchmark_issue_challenge, benchmark_verify])
def test_a_message_for_a_job_this_database_does_not_have_is_dropped_with_a_warning(task, caplog):
    # Left in Redis by an earlier run against another database (make clean-run, a killed
    # worker): the worker says so once and moves on, no traceback, no retry.
    with caplog.at_level(logging.WARNING, logger="workers.benchmark_tasks"):
        assert task(987654) == "gone"
    assert [r.getMessage() for r in caplog.records] == [
        f"{task.name.rsplit('.', 1)[-1]}: benchmark job 987654 does not exist "
        "(a message from another database?)"
    ]
