from django.db import models
from django.db.models import Q

from marketplace.core.models import TimestampedModel
from marketplace.providers.models import Machine


class Purpose(models.TextChoices):
    ONBOARDING = "onboarding"
    PERIODIC = "periodic"
    LEASE = "lease"


class BenchmarkSuite(TimestampedModel):
    """The onboarding jobs of one machine: it passes only when every one of them is verified."""

    class State(models.TextChoices):
        RUNNING = "running"
        PASSED = "passed"
        FAILED = "failed"

    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="benchmark_suites")
    purpose = models.CharField(max_length=12, choices=Purpose.choices, default=Purpose.ONBOARDING)
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.RUNNING, db_index=True
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome_reason = models.CharField(max_length=40, blank=True)

    class Meta:
        constraints = [
            # Two concurrent first polls must not start two onboarding suites for one machine.
            models.UniqueConstraint(
                fields=["machine"],
                condition=Q(state="running"),
                name="benchmarks_one_running_suite_per_machine",
            )
        ]


class BenchmarkJob(TimestampedModel):
    class State(models.TextChoices):
        QUEUED = "queued"
        DISPATCHED = "dispatched"
        COMMITTED = "committed"
        CHALLENGED = "challenged"
        VERIFIED = "verified"
        REJECTED = "rejected"
        EXPIRED = "expired"

    OPEN_STATES = (State.QUEUED, State.DISPATCHED, State.COMMITTED, State.CHALLENGED)
    FINAL_STATES = (State.VERIFIED, State.REJECTED, State.EXPIRED)

    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="benchmark_jobs")
    purpose = models.CharField(max_length=12, choices=Purpose.choices)
    order = models.ForeignKey(
        "orders.Order",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="benchmark_jobs",
    )
    suite = models.ForeignKey(
        BenchmarkSuite, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    state = models.CharField(
        max_length=12, choices=State.choices, default=State.QUEUED, db_index=True
    )

    kind = models.CharField(max_length=10)
    spec = models.JSONField()
    precision = models.CharField(max_length=8)
    flops = models.PositiveBigIntegerField()
    # Secret until dispatch: whoever knows it can compute the result before the clock starts.
    seed = models.CharField(max_length=128)
    # The claimed device (0-based, as the agent's CUDA index) this job must run on, and the
    # identity (UUID or PCI bus id) the agent reported for it with the commitment. One physical
    # device may answer only one index of a suite: that is what makes eight claimed devices
    # eight measured ones.
    device_index = models.PositiveSmallIntegerField(default=0)
    # Indexed: one device (by the identity it reports) may answer for one machine only.
    device_uuid = models.CharField(max_length=128, blank=True, db_index=True)

    dispatched_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    commitment_root = models.CharField(max_length=64, blank=True)
    agent_seconds = models.FloatField(null=True, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    # Created only after the commitment arrives, so the agent cannot shape C around it.
    challenge = models.JSONField(null=True, blank=True)
    challenged_at = models.DateTimeField(null=True, blank=True)
    # Kept for rejected jobs as evidence behind a slash; cleared once a job is verified.
    answer = models.JSONField(null=True, blank=True)
    answer_received_at = models.DateTimeField(null=True, blank=True)

    finished_at = models.DateTimeField(null=True, blank=True)
    outcome_reason = models.CharField(max_length=40, blank=True)
    outcome_detail = models.TextField(blank=True)
    checks = models.JSONField(default=dict, blank=True)
    report_hash = models.CharField(max_length=64, blank=True)
    # The document report_hash is the SHA-256 of (canonical JSON), published once the job is
    # decided (GET /api/v1/reports/{hash}): spec, seed, commitment, challenge, outcome.
    report_document = models.JSONField(null=True, blank=True)
    # Dispatch to commitment on the server's clock (or the agent's, when that is longer).
    measured_seconds = models.FloatField(null=True, blank=True)
    measured_tflops = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["machine", "state", "created_at"]),
            models.Index(fields=["machine", "kind", "precision", "state"]),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} {self.kind}/{self.precision} on machine {self.machine_id}"


class MachineUptime(TimestampedModel):
    """Heartbeat-based availability, sampled by beat: the uptime half of reputation."""

    machine = models.OneToOneField(Machine, on_delete=models.CASCADE, related_name="uptime")
    samples = models.PositiveIntegerField(default=0)
    online_samples = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "machine uptime"
        verbose_name_plural = "machine uptime"


class Verdict(TimestampedModel):
    """A decision about a machine that money depends on, written in the same transaction as the
    state change it justifies (a job verified or rejected, a machine that stopped answering with
    leases broken). Tasks that move money read it: the slash cites its report hash, the
    settlement of a lease it failed cites it too, rewards count the passes. A receiver or a beat
    sweep claims `effects_enqueued_at` with a conditional update once the slash and settlements
    are enqueued, so a process that died between commit and enqueue loses nothing."""

    class Kind(models.TextChoices):
        PASS = "pass"
        FAIL = "fail"
        LIVENESS = "liveness"

    # The job id for job verdicts, "liveness-<machine>-<unix time>" for a lapse: names the slash
    # on chain ("slash:<key>"), so it never changes once written.
    key = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    passed = models.BooleanField()
    # Counts against the machine: slashed, and no reward for the period. False for a pass and
    # for a lapse the platform's own outage explains.
    penalised = models.BooleanField()
    machine = models.ForeignKey(Machine, on_delete=models.PROTECT, related_name="verdicts")
    job = models.ForeignKey(
        BenchmarkJob, null=True, blank=True, on_delete=models.PROTECT, related_name="verdicts"
    )
    # The leases this decision ended (failed if active, cancelled if not yet started); their
    # settlements cite `report_hash`.
    orders = models.ManyToManyField("orders.Order", blank=True, related_name="verdicts")
    report_hash = models.CharField(max_length=66, db_index=True)  # 0x + 64 hex
    # What report_hash is the SHA-256 of: a job's verification report, or a lapse's liveness
    # report. Public (GET /api/v1/reports/{hash}); null only on rows from before it was kept.
    report_document = models.JSONField(null=True, blank=True)
    reason = models.CharField(max_length=100, blank=True)
    effects_enqueued_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["passed", "created_at"])]

    def __str__(self) -> str:
        return f"verdict {self.key} {self.kind} on machine {self.machine_id}"


class PlatformIncident(TimestampedModel):
    """A window in which the platform itself was failing: a 5xx answer, a failed health probe,
    or most machines' heartbeats stopping at once. A deadline or a heartbeat missed inside one
    is nobody's fault: it expires or lapses without a suspension or a slash."""

    class Source(models.TextChoices):
        SERVER_ERROR = "server_error"
        HEALTH_PROBE = "health_probe"
        HEARTBEAT_GAP = "heartbeat_gap"

    source = models.CharField(max_length=20, choices=Source.choices)
    started_at = models.DateTimeField(db_index=True)
    # Null while still open (a failing probe that has not recovered yet).
    ended_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # "machine:<id>" or "user:<id>" when the failing request came from an agent or a signed-in
    # user: that caller's own 5xx never excuses its machines (see platform_failing_during).
    caused_by = models.CharField(max_length=40, blank=True, db_index=True)
    detail = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.source} incident from {self.started_at:%Y-%m-%d %H:%M:%S}"
