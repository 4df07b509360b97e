"""Signals of the workloads app, sent only after the transaction that caused them commits. A
renter-notification app (webhooks, an event stream) listens here rather than importing services.
The durable record is the WorkloadEvent row written with each transition."""

from django.dispatch import Signal

# A workload reached succeeded, failed, cancelled, timed_out or lost.
# kwargs: workload_id, order_id, state, reason
workload_ended = Signal()
