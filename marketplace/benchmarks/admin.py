from django.contrib import admin

from marketplace.benchmarks.models import (
    BenchmarkJob,
    BenchmarkSuite,
    MachineUptime,
    PlatformIncident,
    Verdict,
)
from marketplace.core.admin import ReadOnlyAdmin


@admin.register(BenchmarkJob)
class BenchmarkJobAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "machine",
        "purpose",
        "kind",
        "precision",
        "state",
        "outcome_reason",
        "measured_tflops",
        "created_at",
        "finished_at",
    ]
    list_filter = ["state", "purpose", "kind", "precision", "outcome_reason"]
    search_fields = ["machine__name", "report_hash"]
    list_select_related = ["machine"]
    # State changes only through services; the seed (secret until dispatch) and the bulky answer
    # stay out of the admin's pages.
    hidden_fields = ("seed", "answer")


@admin.register(BenchmarkSuite)
class BenchmarkSuiteAdmin(ReadOnlyAdmin):
    list_display = ["id", "machine", "state", "outcome_reason", "created_at", "finished_at"]
    list_filter = ["state"]


@admin.register(MachineUptime)
class MachineUptimeAdmin(ReadOnlyAdmin):
    list_display = ["machine", "samples", "online_samples", "updated_at"]


@admin.register(Verdict)
class VerdictAdmin(ReadOnlyAdmin):
    list_display = [
        "key",
        "kind",
        "machine",
        "penalised",
        "reason",
        "report_hash",
        "created_at",
        "effects_enqueued_at",
    ]
    list_filter = ["kind", "passed", "penalised"]
    search_fields = ["key", "report_hash"]

    def get_fields(self, request, obj=None):
        # The leases this decision ended, beside the decision.
        return [*super().get_fields(request, obj), "orders"]


@admin.register(PlatformIncident)
class PlatformIncidentAdmin(ReadOnlyAdmin):
    list_display = ["id", "source", "started_at", "ended_at", "caused_by", "detail"]
    list_filter = ["source"]
