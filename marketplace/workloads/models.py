from django.db import models

from marketplace.core.models import TimestampedModel
from marketplace.orders.models import Order
from marketplace.providers.models import Machine


class Workload(TimestampedModel):
    """A renter's command run on the machine of one of their active leases, in the agent's
    sandbox. Several run one after another on one lease."""

    class State(models.TextChoices):
        QUEUED = "queued"
        STARTING = "starting"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        TIMED_OUT = "timed_out"
        LOST = "lost"

    # Handed to the agent, not yet finished: the states a lease's end or a silent agent close.
    LIVE = (State.STARTING, State.RUNNING)
    OPEN = (State.QUEUED, State.STARTING, State.RUNNING)
    FINAL = (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.TIMED_OUT, State.LOST)

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="workloads")
    # The order's machine, kept here so the agent's "next workload" is one indexed query.
    machine = models.ForeignKey(Machine, on_delete=models.PROTECT, related_name="workloads")
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.QUEUED, db_index=True
    )
    reason = models.CharField(max_length=300, blank=True)

    argv = models.JSONField()
    env = models.JSONField(default=dict, blank=True)
    result_paths = models.JSONField(default=list, blank=True)
    time_limit_seconds = models.PositiveIntegerField()
    # Whether the sandbox may reach the network; leases carry no network grant yet, so False.
    network = models.BooleanField(default=False)

    input_archive = models.FileField(upload_to="workloads/inputs/%Y/%m/", blank=True)
    input_size = models.PositiveBigIntegerField(default=0)
    input_sha256 = models.CharField(max_length=64, blank=True)

    exit_code = models.IntegerField(null=True, blank=True)
    result_archive = models.FileField(upload_to="workloads/results/%Y/%m/", blank=True)
    result_size = models.PositiveBigIntegerField(default=0)

    # Log bookkeeping: the next chunk sequence number the platform accepts, the bytes stored, and
    # whether the per-workload cap cut the rest off.
    log_next_seq = models.PositiveIntegerField(default=0)
    log_bytes = models.PositiveBigIntegerField(default=0)
    log_truncated = models.BooleanField(default=False)

    claimed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The agent's last word about this workload (claim, start, log chunk, ping): a live workload
    # silent for longer than WORKLOAD_SILENCE_SECONDS is lost.
    last_report_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["machine", "state"])]

    def __str__(self) -> str:
        return f"Workload #{self.pk} ({self.state})"


class WorkloadEvent(models.Model):
    """One row per transition, written in the transaction that makes it: the audit trail a
    renter or operator reads to see why a workload ended."""

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=10, blank=True)
    to_state = models.CharField(max_length=10)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.from_state or '-'} → {self.to_state}"


class WorkloadLogChunk(models.Model):
    """A piece of a workload's output. (workload, seq) is unique, so a chunk the agent resends
    after a lost reply is written once; `offset` is the chunk's place in the workload's log."""

    class Stream(models.TextChoices):
        STDOUT = "stdout"
        STDERR = "stderr"

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="log_chunks")
    seq = models.PositiveIntegerField()
    stream = models.CharField(max_length=6, choices=Stream.choices)
    offset = models.PositiveBigIntegerField()
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workload", "seq"], name="one_log_chunk_per_seq"),
        ]
        indexes = [models.Index(fields=["workload", "offset"])]
        ordering = ["workload", "seq"]

    def __str__(self) -> str:
        return f"workload {self.workload_id} chunk {self.seq}"
