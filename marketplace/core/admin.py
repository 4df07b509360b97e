from django.contrib import admin
from django.utils import timezone

from marketplace.core.models import Alert


class ReadOnlyAdmin(admin.ModelAdmin):
    """For rows written only by the decision or chain event they record: editing one by hand
    would forge a report or make the database disagree with the money."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class OpenFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("open", "open"), ("resolved", "resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "message", "last_seen_at", "resolved_at"]
    list_filter = [OpenFilter, "kind", "created_at"]
    search_fields = ["message", "fingerprint"]
    # Alerts are written by checks; a person only marks one resolved.
    readonly_fields = ["kind", "fingerprint", "message", "detail", "created_at", "last_seen_at"]
    actions = ["mark_resolved"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Mark selected alerts resolved")
    def mark_resolved(self, request, queryset):
        queryset.filter(resolved_at__isnull=True).update(resolved_at=timezone.now())
