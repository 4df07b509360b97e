"""Read-only admin: every row here mirrors the chain or a signed transaction; editing one by
hand would make the database disagree with the money."""

from django.contrib import admin

from marketplace.core import display
from marketplace.core.admin import ReadOnlyAdmin
from marketplace.payments import models


@admin.register(models.ContractDeployment)
class ContractDeploymentAdmin(ReadOnlyAdmin):
    list_display = ["chain_id", "name", "address", "generation", "block_number", "created_at"]


@admin.register(models.ChainTransaction)
class ChainTransactionAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "purpose",
        "order",
        "idempotency_key",
        "status",
        "nonce",
        "tx_hash",
        "block_number",
        "created_at",
    ]
    list_filter = ["status", "purpose", "chain_id"]
    search_fields = ["idempotency_key", "tx_hash"]
    list_select_related = ["order"]
    # The signed bytes are long and say nothing to a person; the hash names the transaction.
    hidden_fields = ("raw_tx",)


@admin.register(models.ChainEvent)
class ChainEventAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "order",
        "block_number",
        "log_index",
        "tx_hash",
        "is_final",
        "flagged",
        "created_at",
    ]
    list_filter = ["name", "is_final", "flagged", "chain_id"]
    search_fields = ["tx_hash", "lease_id", "account"]
    list_select_related = ["order"]

    def get_fields(self, request, obj=None):
        # The raw arguments stay (exact, as indexed); the readable line sits beside them.
        fields = super().get_fields(request, obj)
        return [
            *fields[: fields.index("args") + 1],
            "arguments",
            *fields[fields.index("args") + 1 :],
        ]

    @admin.display(description="arguments (USD)")
    def arguments(self, obj):
        return display.event_args(obj.args, event=obj.name)


@admin.register(models.Stake)
class StakeAdmin(ReadOnlyAdmin):
    money_fields = {"staked": "", "pending": ""}
    unix_time_fields = ("unlock_time",)
    list_display = ["address", "provider", "staked_usd", "pending_usd", "unlock_time_text"]


@admin.register(models.Credit)
class CreditAdmin(ReadOnlyAdmin):
    money_fields = {"amount": ""}
    list_display = ["address", "chain_id", "amount_usd", "updated_at"]
    search_fields = ["address"]


@admin.register(models.AccruedFees)
class AccruedFeesAdmin(ReadOnlyAdmin):
    money_fields = {"amount": ""}
    list_display = ["chain_id", "amount_usd", "updated_at"]


@admin.register(models.Slash)
class SlashAdmin(ReadOnlyAdmin):
    money_fields = {"amount": ""}
    list_display = ["address", "provider", "amount_usd", "report_hash", "tx_hash", "created_at"]


@admin.register(models.Reward)
class RewardAdmin(ReadOnlyAdmin):
    money_fields = {"amount": ""}
    list_display = ["address", "provider", "amount_usd", "report_hash", "tx_hash", "created_at"]


@admin.register(models.VerificationOutcome)
class VerificationOutcomeAdmin(ReadOnlyAdmin):
    list_display = ["job_id", "machine", "passed", "report_hash", "order", "created_at"]
