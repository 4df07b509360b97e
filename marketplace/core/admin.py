from django.contrib import admin
from django.utils import timezone

from marketplace.core import display
from marketplace.core.models import Alert


def _money_column(name: str, per: str):
    @admin.display(description=f"{name.replace('_', ' ')} (USD)", ordering=name)
    def column(self, obj):
        return display.money(getattr(obj, name), per)

    column.__name__ = f"{name}_usd"
    return column


def _seconds_column(name: str):
    @admin.display(description=name.replace("_", " "), ordering=name)
    def column(self, obj):
        return display.duration(getattr(obj, name))

    column.__name__ = f"{name}_text"
    return column


def _unix_time_column(name: str):
    @admin.display(description=f"{name.replace('_', ' ')} (UTC)", ordering=name)
    def column(self, obj):
        return display.timestamp(getattr(obj, name))

    column.__name__ = f"{name}_text"
    return column


class MarketplaceAdmin(admin.ModelAdmin):
    """Declares how integer fields read for people, once per model: `money_fields` maps a token
    amount to what it is priced per ("" for a plain amount) and adds a `<name>_usd` column;
    `seconds_fields` (durations) and `unix_time_fields` (chain times) add `<name>_text`.
    Datetimes need nothing here: FORMAT_MODULE_PATH shows them to the second in UTC."""

    money_fields: dict[str, str] = {}
    seconds_fields: tuple[str, ...] = ()
    unix_time_fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, per in cls.money_fields.items():
            setattr(cls, f"{name}_usd", _money_column(name, per))
        for name in cls.seconds_fields:
            setattr(cls, f"{name}_text", _seconds_column(name))
        for name in cls.unix_time_fields:
            setattr(cls, f"{name}_text", _unix_time_column(name))

    def shown(self, name: str) -> str:
        """The readable column that stands for a model field (itself when it reads as it is)."""
        if name in self.money_fields:
            return f"{name}_usd"
        if name in self.seconds_fields or name in self.unix_time_fields:
            return f"{name}_text"
        return name

    def all_fields_readable(self, *, leave_out: tuple[str, ...] = ()) -> list[str]:
        return [
            self.shown(f.name)
            for f in self.model._meta.fields
            if f.name not in leave_out and f.name != "id"
        ]


class ReadOnlyAdmin(MarketplaceAdmin):
    """For rows written only by the decision or chain event they record: editing one by hand
    would forge a report or make the database disagree with the money. Staff with the view
    permission see every field; no one gets a Save or Delete button, and a forged POST to the
    change or delete URL is refused (403) because these permissions, not the template, say no.
    Actions that go through a service (cancel an order) declare allowed_permissions=("operate",)
    and need the model's Django change permission, which the operator group holds."""

    # Fields left out of the detail page (secrets, bulky evidence).
    hidden_fields: tuple[str, ...] = ()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request):
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def get_fields(self, request, obj=None):
        return self.all_fields_readable(leave_out=self.hidden_fields)

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)


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

    def has_delete_permission(self, request, obj=None):
        # A resolved alert is the record that a person looked; it stays.
        return False

    @admin.action(description="Mark selected alerts resolved")
    def mark_resolved(self, request, queryset):
        queryset.filter(resolved_at__isnull=True).update(resolved_at=timezone.now())
