from django.contrib import admin

from marketplace.workloads.models import Workload, WorkloadEvent


class WorkloadEventInline(admin.TabularInline):
    model = WorkloadEvent
    extra = 0
    can_delete = False
    readonly_fields = ["from_state", "to_state", "reason", "created_at"]


@admin.register(Workload)
class WorkloadAdmin(admin.ModelAdmin):
    """Read-only: a workload changes state only through its services."""

    list_display = ["id", "order", "machine", "state", "exit_code", "created_at", "finished_at"]
    list_filter = ["state"]
    inlines = [WorkloadEventInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
