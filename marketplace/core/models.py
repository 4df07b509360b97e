from django.db import models
from django.db.models import Q


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Alert(models.Model):
    """Something a human has to look at (e.g. the database and the chain disagree about money).

    `fingerprint` names the problem, not the run that saw it: while an alert with the same
    fingerprint is open, a periodic check that sees the problem again updates that alert instead
    of opening another, so a persisting difference is one alert, not one per run."""

    kind = models.CharField(max_length=60, db_index=True)
    fingerprint = models.CharField(max_length=64)
    message = models.TextField()
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        constraints = [
            # Deduplication is a constraint, not a read-then-insert hope: two overlapping runs
            # cannot both open an alert for the same problem.
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(resolved_at__isnull=True),
                name="one_open_alert_per_fingerprint",
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message[:80]}"
