from rest_framework import serializers


class FundingOutputSerializer(serializers.Serializer):
    order_id = serializers.IntegerField()
    chain_id = serializers.IntegerField()
    token_address = serializers.CharField()
    escrow_address = serializers.CharField()
    amount = serializers.IntegerField()
    lease_id = serializers.CharField()
    provider_wallet = serializers.CharField()
    rate_per_second = serializers.IntegerField()
    max_duration_seconds = serializers.IntegerField()
    funding_deadline = serializers.DateTimeField(
        allow_null=True,
        help_text="Until then the order holds its accelerators; a deposit seen after the order "
        "was cancelled for missing it is refunded in full.",
    )
    approve_calldata = serializers.CharField()
    fund_calldata = serializers.CharField()


class ChainEventOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    tx_hash = serializers.CharField()
    log_index = serializers.IntegerField()
    block_number = serializers.IntegerField()
    block_hash = serializers.CharField()
    args = serializers.JSONField()
    is_final = serializers.BooleanField()
    flagged = serializers.BooleanField()
    flag_reason = serializers.CharField()


class ChainTransactionOutputSerializer(serializers.Serializer):
    purpose = serializers.CharField()
    tx_hash = serializers.CharField()
    status = serializers.CharField()
    block_number = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()


class OrderChainOutputSerializer(serializers.Serializer):
    order_id = serializers.IntegerField()
    state = serializers.CharField()
    lease_id = serializers.CharField()
    events = ChainEventOutputSerializer(many=True)
    settlement_tx = ChainTransactionOutputSerializer(allow_null=True)
    report_hashes = serializers.ListField(child=serializers.CharField())


class MoneyEventOutputSerializer(serializers.Serializer):
    # uint256 as a decimal string: JSON numbers lose precision above 2**53.
    amount = serializers.CharField()
    report_hash = serializers.CharField()
    tx_hash = serializers.CharField()
    block_number = serializers.IntegerField(source="event.block_number")
    created_at = serializers.DateTimeField()


class ProviderChainOutputSerializer(serializers.Serializer):
    provider_id = serializers.IntegerField()
    wallet_address = serializers.CharField()
    staked = serializers.CharField()
    pending_unstake = serializers.CharField()
    unlock_time = serializers.IntegerField()
    slashes = MoneyEventOutputSerializer(many=True)
    rewards = MoneyEventOutputSerializer(many=True)
