"""Read-only admin: every row here mirrors the chain or a signed transaction; editing one by
hand would make the database disagree with the money."""

from django.contrib import admin

from marketplace.core.admin import ReadOnlyAdmin
from marketplace.payments import models


@admin.register(models.ContractDeployment)
class ContractDeploymentAdmin(ReadOnlyAdmin):
    list_display = ["chain_id", "name", "address", "generation", "block_number"]


@admin.register(models.ChainTransaction)
class ChainTransactionAdmin(ReadOnlyAdmin):
    list_display = ["pk", "purpose", "idempotency_key", "status", "nonce", "tx_hash", "created_at"]
    list_filter = ["status", "purpose", "chain_id"]
    search_fields = ["idempotency_key", "tx_hash"]


@admin.register(models.ChainEvent)
class ChainEventAdmin(ReadOnlyAdmin):
    list_display = ["name", "block_number", "log_index", "tx_hash", "is_final", "flagged"]
    list_filter = ["name", "is_final", "flagged", "chain_id"]
    search_fields = ["tx_hash", "lease_id", "account"]


@admin.register(models.Stake)
class StakeAdmin(ReadOnlyAdmin):
    list_display = ["address", "provider", "staked", "pending", "unlock_time"]


@admin.register(models.Slash)
class SlashAdmin(ReadOnlyAdmin):
    list_display = ["address", "provider", "amount", "report_hash", "tx_hash"]


@admin.register(models.Reward)
class RewardAdmin(ReadOnlyAdmin):
    list_display = ["address", "provider", "amount", "report_hash", "tx_hash"]


@admin.register(models.VerificationOutcome)
class VerificationOutcomeAdmin(ReadOnlyAdmin):
    list_display = ["job_id", "machine", "passed", "report_hash", "order", "created_at"]
