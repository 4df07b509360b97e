from django.db import models


class MarketSnapshot(models.Model):
    """The market at one beat interval: what the dashboard draws over time.

    Counts of machines and money in escrow are current-state facts that no other table keeps a
    history of, so beat samples them. `taken_at` is the start of the interval, not the clock time
    of the run: a retried or duplicated beat run lands on the same row (unique), never a second.
    """

    taken_at = models.DateTimeField(unique=True)
    machines_registered = models.PositiveIntegerField(default=0)
    machines_verified = models.PositiveIntegerField(default=0)
    machines_listed = models.PositiveIntegerField(default=0)
    machines_suspended = models.PositiveIntegerField(default=0)
    machines_offline = models.PositiveIntegerField(default=0)
    # Heartbeat within HEARTBEAT_TIMEOUT_SECONDS and not suspended/offline: actually reachable.
    machines_online = models.PositiveIntegerField(default=0)
    # Integer token units (6 decimals) of funded orders not yet settled on chain.
    escrow_amount = models.PositiveBigIntegerField(default=0)
    escrow_orders = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["taken_at"]

    def __str__(self) -> str:
        return f"market at {self.taken_at:%Y-%m-%d %H:%M}"


class MachineStaffAction(models.Model):
    """A suspension or reinstatement a person made, with why, written in the transaction that
    changes the machine. Machine.state_reason keeps only the latest reason; this keeps them all
    (automatic suspensions are recorded as verdicts in the benchmarks app)."""

    class Action(models.TextChoices):
        SUSPEND = "suspend"
        REINSTATE = "reinstate"

    machine = models.ForeignKey(
        "providers.Machine", on_delete=models.PROTECT, related_name="staff_actions"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    reason = models.TextField()
    staff = models.ForeignKey(
        "accounts.User", on_delete=models.PROTECT, related_name="machine_staff_actions"
    )
    state_before = models.CharField(max_length=20)
    state_after = models.CharField(max_length=20)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "machine staff action"

    def __str__(self) -> str:
        return f"{self.action} {self.machine_id} by {self.staff_id}: {self.reason[:60]}"
