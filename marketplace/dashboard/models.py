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
