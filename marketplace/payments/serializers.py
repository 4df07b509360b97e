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


class MachineRequirementOutputSerializer(serializers.Serializer):
    machine_id = serializers.IntegerField()
    name = serializers.CharField()
    state = serializers.CharField()
    accelerators = serializers.IntegerField()
    required = serializers.IntegerField(
        help_text="Free stake this listed machine needs, token units (6 decimals): (base + per "
        "accelerator × accelerators) × the provider's multiplier."
    )


class LeaseLockOutputSerializer(serializers.Serializer):
    order_id = serializers.IntegerField()
    state = serializers.CharField()
    escrow_amount = serializers.IntegerField(help_text="Token units (6 decimals).")
    accelerators = serializers.IntegerField()
    duration_seconds = serializers.IntegerField(help_text="Seconds.")
    locked = serializers.IntegerField(
        help_text="Stake this lease locks, token units (6 decimals); also what a break of it "
        "adds to a slash."
    )
    locked_until = serializers.DateTimeField(
        allow_null=True,
        help_text="UTC; null while the lease runs, then its end plus the dispute window.",
    )


class StakingOutputSerializer(serializers.Serializer):
    provider_id = serializers.IntegerField()
    wallet_address = serializers.CharField()
    chain_id = serializers.IntegerField()
    token_address = serializers.CharField()
    staking_address = serializers.CharField()
    staked = serializers.IntegerField(help_text="Indexed active stake, token units (6 decimals).")
    pending_unstake = serializers.IntegerField(
        help_text="Requested for unstaking, token units; still slashable until withdrawn."
    )
    unlock_time = serializers.IntegerField(
        help_text="Unix seconds when the pending unstake can be withdrawn; 0 when none."
    )
    locked = serializers.IntegerField(help_text="Token units locked by open leases.")
    free = serializers.IntegerField(help_text="staked − locked, token units.")
    required = serializers.IntegerField(
        help_text="Free stake the listed machines need, token units."
    )
    shortfall = serializers.IntegerField(
        help_text="required − free when positive, token units: stake this much more."
    )
    unstakable = serializers.IntegerField(
        help_text="Token units that can be requested for unstaking without leaving a listed "
        "machine uncovered."
    )
    covered = serializers.BooleanField(help_text="Whether the listed machines show in search.")
    rejected_machines = serializers.IntegerField(
        help_text="Machines of this provider rejected for cheating within the rejection window."
    )
    multiplier = serializers.IntegerField(
        help_text="1 + rejected_machines: the factor on every machine's requirement."
    )
    machines = MachineRequirementOutputSerializer(many=True)
    leases = LeaseLockOutputSerializer(many=True)
    stake_amount = serializers.IntegerField(
        help_text="Token units the stake calldata stakes (the `amount` parameter, default the "
        "shortfall)."
    )
    approve_calldata = serializers.CharField(
        allow_null=True,
        help_text="token.approve(staking, stake_amount), sent to token_address; null when "
        "stake_amount is 0.",
    )
    stake_calldata = serializers.CharField(
        allow_null=True,
        help_text="staking.stake(stake_amount), sent to staking_address after the approve.",
    )
    unstake_amount = serializers.IntegerField(
        help_text="Token units the unstake calldata requests (the `unstake_amount` parameter, "
        "default `unstakable`)."
    )
    request_unstake_calldata = serializers.CharField(
        allow_null=True,
        help_text="staking.requestUnstake(unstake_amount), sent to staking_address; null when 0.",
    )
    withdraw_calldata = serializers.CharField(
        allow_null=True,
        help_text="staking.withdraw(), valid after unlock_time; null when nothing is pending.",
    )


class CreditOutputSerializer(serializers.Serializer):
    chain_id = serializers.IntegerField()
    escrow_address = serializers.CharField()
    address = serializers.CharField()
    credit = serializers.IntegerField(
        help_text="Token units (6 decimals) the escrow holds for this account, as final "
        "settlements credited and withdrawals took out."
    )
    withdraw_amount = serializers.IntegerField(
        help_text="Token units the calldata withdraws (the `amount` parameter, default all)."
    )
    to = serializers.CharField(help_text="Where the withdrawal pays (the `to` parameter).")
    withdraw_calldata = serializers.CharField(
        allow_null=True,
        help_text="escrow.withdraw(to, withdraw_amount), sent to escrow_address from `address` "
        "itself; null when there is nothing to withdraw.",
    )
