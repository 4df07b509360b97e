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
class BenchmarkJobAdmin(admin.ModelAdmin):
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
    ]
    list_filter = ["state", "purpose", "kind", "precision", "outcome_reason"]
    search_fields = ["machine__name", "report_hash"]
    # State changes only through services; the seed stays out of the admin's pages.
    exclude = ["seed", "answer"]
    readonly_fields = [
        f.name for f in BenchmarkJob._meta.fields if f.name not in ("seed", "answer")
    ]

    def has_add_permission(self, request):
        return False


@admin.register(BenchmarkSuite)
class BenchmarkSuiteAdmin(admin.ModelAdmin):
    list_display = ["id", "machine", "state", "outcome_reason", "created_at", "finished_at"]
    list_filter = ["state"]
    readonly_fields = [f.name for f in BenchmarkSuite._meta.fields]


@admin.register(MachineUptime)
class MachineUptimeAdmin(admin.ModelAdmin):
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


@admin.register(PlatformIncident)
class PlatformIncidentAdmin(ReadOnlyAdmin):
    list_display = ["id", "source", "started_at", "ended_at", "caused_by", "detail"]
    list_filter = ["source"]
