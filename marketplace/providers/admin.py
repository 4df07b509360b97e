from django.contrib import admin, messages

from marketplace.core.errors import ApplicationError
from marketplace.providers import services
from marketplace.providers.models import AgentCredential, Machine, Provider, RegistrationToken


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "wallet_address", "created_at"]
    search_fields = ["name", "owner__username", "wallet_address"]
    readonly_fields = ["wallet_address", "created_at"]


@admin.register(Machine)
class MachineAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "provider",
        "state",
        "accelerator_count",
        "accelerator_model",
        "last_heartbeat_at",
    ]
    list_filter = ["state", "accelerator_kind", "accelerator_vendor"]
    search_fields = ["name", "accelerator_model", "provider__name"]
    # State changes go through services (and their transition rules), never a form field.
    readonly_fields = [
        "state",
        "resume_state",
        "state_reason",
        "state_changed_at",
        "hardware",
        "last_heartbeat_at",
        "created_at",
    ]
    actions = ["suspend"]

    @admin.action(description="Suspend selected machines")
    def suspend(self, request, queryset):
        for machine in queryset.order_by("pk"):
            try:
                services.machine_suspend(
                    machine_id=machine.pk, reason=f"suspended by staff ({request.user})"
                )
            except ApplicationError as exc:
                self.message_user(request, f"{machine}: {exc.message}", messages.WARNING)


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(admin.ModelAdmin):
    list_display = ["display_prefix", "provider", "expires_at", "used_at", "machine"]
    list_filter = ["used_at"]
    readonly_fields = ["key_hash", "display_prefix", "expires_at", "used_at", "machine"]


@admin.register(AgentCredential)
class AgentCredentialAdmin(admin.ModelAdmin):
    list_display = ["display_prefix", "machine", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["machine", "key_hash", "display_prefix", "last_used_at"]
