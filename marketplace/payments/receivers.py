"""Signal receivers: each enqueues a task once the sender's transaction has committed."""

from django.db import transaction

from marketplace.payments.services import verification_outcome_record


def on_order_ended(sender, order_id: int, **kwargs) -> None:
    from workers.chain_tasks import lease_settle

    transaction.on_commit(lambda: lease_settle.delay(order_id))


def on_verification_failed(
    sender, machine_id, job_id, report_hash, reason="", order_id=None, **kwargs
) -> None:
    from workers.chain_tasks import provider_slash

    # Recorded here, not in the task: a failed lease's settlement cites this report hash and
    # may run before the slash task does.
    verification_outcome_record(
        machine_id=machine_id,
        job_id=job_id,
        report_hash=report_hash,
        passed=False,
        reason=reason or "",
        order_id=order_id,
    )
    transaction.on_commit(lambda: provider_slash.delay(str(job_id)))


def on_verification_passed(sender, machine_id, job_id, report_hash, **kwargs) -> None:
    # Rewards are paid by the periodic providers_reward task from these rows.
    verification_outcome_record(
        machine_id=machine_id, job_id=job_id, report_hash=report_hash, passed=True
    )
