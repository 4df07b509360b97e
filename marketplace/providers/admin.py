from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from marketplace.core import display
from marketplace.core.admin import MarketplaceAdmin
from marketplace.core.errors import ApplicationError
from marketplace.providers.models import AgentCredential, Machine, Provider, RegistrationToken


@admin.register(Provider)
class ProviderAdmin(MarketplaceAdmin):
    list_display = ["name", "owner", "wallet_address", "created_at"]
    search_fields = ["name", "owner__username", "wallet_address"]
    # Payouts, stakes and slashes on chain are tied to the wallet; the owner is who answers for
    # the machines. Neither changes by hand.
    readonly_fields = ["owner", "wallet_address", "collateral_column", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="collateral")
    def collateral_column(self, obj):
        return _collateral_summary(obj.pk)


def _collateral_summary(provider_id: int) -> str:
    """Stake, locks, requirement and shortfall, as GET /providers/{id}/staking reports them."""
    # Imported here: payments sits above providers; an upward read, never a write.
    from marketplace.payments.collateral import provider_collateral

    state = provider_collateral(provider_id=provider_id)
    verdict = "covered" if state.covered else f"short by {display.money(state.shortfall)}"
    return (
        f"staked {display.money(state.staked)}; locked by leases {display.money(state.locked)}; "
        f"free {display.money(state.free)}; required {display.money(state.required)} "
        f"(x{state.multiplier}, {state.rejected_machines} rejected recently): {verdict}"
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        max_length=2000,
        help_text="Kept in the machine's reason history with your name.",
    )


class ActiveListingFilter(admin.SimpleListFilter):
    title = "on the market"
    parameter_name = "listed"

    def lookups(self, request, model_admin):
        return [("yes", "has an open listing"), ("no", "no open listing")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(has_open_listing=True)
        if self.value() == "no":
            return queryset.filter(has_open_listing=False)
        return queryset


class SuspendedFilter(admin.SimpleListFilter):
    title = "suspended (offline ones included)"
    parameter_name = "suspended"

    def lookups(self, request, model_admin):
        return [("yes", "suspended"), ("no", "not suspended")]

    def queryset(self, request, queryset):
        from marketplace.dashboard.selectors import SUSPENDED

        if self.value() == "yes":
            return queryset.filter(SUSPENDED)
        if self.value() == "no":
            return queryset.exclude(SUSPENDED)
        return queryset


@admin.register(Machine)
class MachineAdmin(MarketplaceAdmin):
    """Everything about a machine is what its agent detected or what verification decided: no
    field is editable and there is no Save. Staff act on a machine only by suspending or
    reinstating it, with a reason, through the providers services (object tools on its page)."""

    list_display = [
        "name",
        "provider",
        "state",
        "accelerators",
        "verified_tflops_column",
        "reputation_column",
        "active_leases_column",
        "stake_column",
        "last_heartbeat_at",
    ]
    list_filter = [
        "state",
        SuspendedFilter,
        "accelerator_model",
        "accelerator_kind",
        ActiveListingFilter,
    ]
    search_fields = ["name", "accelerator_model", "provider__name"]
    list_per_page = 50
    readonly_fields = ["state_reason_history"]
    change_form_template = "admin/providers/machine/change_form.html"

    def get_queryset(self, request):
        # Imported here: the dashboard's selectors read every app, which sits above this one.
        from marketplace.dashboard.selectors import machines_for_admin

        return machines_for_admin(super().get_queryset(request))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request):
        return request.user.has_perm("providers.change_machine")

    def get_fields(self, request, obj=None):
        return [f.name for f in Machine._meta.fields if f.name != "id"] + [
            "verified_tflops_column",
            "reputation_column",
            "active_leases_column",
            "stake_column",
            "collateral_column",
            "state_reason_history",
        ]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="accelerators")
    def accelerators(self, obj):
        return f"{obj.accelerator_count}× {obj.accelerator_model}"

    @admin.display(description="verified TFLOP/s", ordering="verified_tflops")
    def verified_tflops_column(self, obj):
        return display.DASH if obj.verified_tflops is None else f"{obj.verified_tflops:,.1f}"

    def get_changelist_instance(self, request):
        # Reputation for the whole page in two queries (not two per row), kept on the rows.
        from marketplace.dashboard.selectors import machine_reputations

        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        reputations = machine_reputations(machine_ids=[m.pk for m in rows])
        for machine in rows:
            machine.reputation = reputations[machine.pk]
        return changelist

    @admin.display(description="reputation (pass × uptime)")
    def reputation_column(self, obj):
        # The same figure renters are shown (benchmarks.selectors.machine_reputation).
        from marketplace.benchmarks.selectors import machine_reputation

        rep = getattr(obj, "reputation", None) or machine_reputation(machine_id=obj.pk)
        if rep["score"] is None:
            return "no decided job"
        return f"{rep['score']:.2f} ({rep['passed_jobs']}/{rep['recent_jobs']} passed)"

    @admin.display(description="active leases", ordering="active_leases")
    def active_leases_column(self, obj):
        return obj.active_leases

    @admin.display(description="provider stake (USD)", ordering="stake_units")
    def stake_column(self, obj):
        return display.money(obj.stake_units) if obj.stake_units is not None else "no stake"

    @admin.display(description="provider collateral")
    def collateral_column(self, obj):
        return _collateral_summary(obj.provider_id)

    @admin.display(description="reason history")
    def state_reason_history(self, obj):
        from django.template.loader import render_to_string

        from marketplace.dashboard.selectors import machine_reason_history

        return render_to_string(
            "admin/providers/machine/reason_history.html",
            {"rows": machine_reason_history(machine_id=obj.pk), "current": obj.state_reason},
        )

    def get_urls(self):
        urls = [
            path(
                "<int:machine_id>/suspend/",
                self.admin_site.admin_view(self.suspend_view),
                name="providers_machine_suspend",
            ),
            path(
                "<int:machine_id>/reinstate/",
                self.admin_site.admin_view(self.reinstate_view),
                name="providers_machine_reinstate",
            ),
        ]
        return urls + super().get_urls()

    def suspend_view(self, request, machine_id: int):
        from marketplace.dashboard.services import machine_staff_suspend

        return self._act(request, machine_id, "Suspend", machine_staff_suspend)

    def reinstate_view(self, request, machine_id: int):
        from marketplace.dashboard.services import machine_staff_reinstate

        return self._act(request, machine_id, "Reinstate", machine_staff_reinstate)

    def _act(self, request, machine_id: int, verb: str, service):
        if not self.has_operate_permission(request):
            raise PermissionDenied
        machine = get_object_or_404(Machine, pk=machine_id)
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                service(
                    machine_id=machine.pk, staff=request.user, reason=form.cleaned_data["reason"]
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"{verb}d {machine.name}.", messages.SUCCESS)
                return redirect(reverse("admin:providers_machine_change", args=[machine.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{verb} {machine}",
            "machine": machine,
            "form": form,
            "verb": verb,
        }
        return TemplateResponse(request, "admin/providers/machine/act.html", context)

    def render_change_form(self, request, context, *args, **kwargs):
        context["can_operate"] = self.has_operate_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(admin.ModelAdmin):
    list_display = ["display_prefix", "provider", "expires_at", "used_at", "machine"]
    list_filter = ["used_at"]
    readonly_fields = ["provider", "key_hash", "display_prefix", "expires_at", "used_at", "machine"]

    def has_add_permission(self, request):
        # Tokens are issued through the API, which shows the secret once.
        return False


@admin.register(AgentCredential)
class AgentCredentialAdmin(admin.ModelAdmin):
    list_display = ["display_prefix", "machine", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["machine", "key_hash", "display_prefix", "last_used_at"]

    def has_add_permission(self, request):
        return False
