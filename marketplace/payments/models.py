"""What the database knows about money on chain.

Amounts are integer token units: on chain uint256, here DecimalField(max_digits=78,
decimal_places=0), which holds any uint256 exactly and never goes through a float.
"""

from django.db import models
from django.db.models import Q

from marketplace.core.models import TimestampedModel


def AmountField(**kwargs):  # noqa: N802 - reads like a field class at the call sites
    return models.DecimalField(max_digits=78, decimal_places=0, **kwargs)


class ContractDeployment(TimestampedModel):
    """Where our contracts live on one chain. A new deployment on the same chain (the chain was
    reset) bumps `generation`, which keys the deployment transactions."""

    class Name(models.TextChoices):
        TOKEN = "token"
        ESCROW = "escrow"
        STAKING = "staking"

    chain_id = models.PositiveBigIntegerField()
    name = models.CharField(max_length=20, choices=Name.choices)
    address = models.CharField(max_length=42)
    generation = models.PositiveIntegerField(default=1)
    block_number = models.PositiveBigIntegerField()
    tx_hash = models.CharField(max_length=66)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "name"], name="one_deployment_per_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.chain_id} {self.address}"


class ChainGenesis(TimestampedModel):
    """The chain this database belongs to: the hash of block 0 of the node it deployed on. A local
    node restarted without its state file answers with the same chain id but another genesis,
    and everything this database knows about money describes the old chain (see genesis.py)."""

    chain_id = models.PositiveBigIntegerField(unique=True)
    genesis_hash = models.CharField(max_length=66)

    def __str__(self) -> str:
        return f"chain {self.chain_id} genesis {self.genesis_hash}"


class NonceCursor(models.Model):
    """The next nonce of one sending account. Locked with select_for_update while a transaction
    is signed and recorded, so Celery workers in different processes never share a nonce."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    next_nonce = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="one_nonce_per_sender"),
        ]

    def __str__(self) -> str:
        return f"{self.address}@{self.chain_id}: next nonce {self.next_nonce}"


class ChainTransaction(TimestampedModel):
    """A signed transaction, recorded before it is broadcast: a worker that dies after sending
    finds it again by idempotency key and rebroadcasts the same bytes instead of signing anew."""

    class Status(models.TextChoices):
        PENDING = "pending"  # signed and recorded; maybe broadcast, not yet in a block we saw
        MINED = "mined"  # in a block with status 1, not yet enough confirmations
        CONFIRMED = "confirmed"
        FAILED = "failed"  # reverted, or refused by the node before it ever got into a block

    chain_id = models.PositiveBigIntegerField()
    sender = models.CharField(max_length=42)
    nonce = models.PositiveBigIntegerField()
    to_address = models.CharField(max_length=42, blank=True)
    purpose = models.CharField(max_length=40)
    idempotency_key = models.CharField(max_length=200)
    raw_tx = models.TextField()
    tx_hash = models.CharField(max_length=66)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=66, blank=True)
    gas_used = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="chain_txs"
    )
    provider = models.ForeignKey(
        "providers.Provider",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="chain_txs",
    )

    class Meta:
        constraints = [
            # One live transaction per purpose; a failed one (never mined, or reverted) steps
            # aside so that a retry may build a replacement.
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=~Q(status="failed"),
                name="one_live_tx_per_idempotency_key",
            ),
            # A local chain that was reset replays identical transactions (same hash); the
            # old ones are failed by then.
            models.UniqueConstraint(
                fields=["tx_hash"], condition=~Q(status="failed"), name="one_live_tx_per_hash"
            ),
            models.UniqueConstraint(
                fields=["chain_id", "sender", "nonce"],
                condition=~Q(status="failed"),
                name="one_live_tx_per_nonce",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} {self.tx_hash} ({self.status})"


class IndexerCursor(models.Model):
    """The last block whose logs of one contract are stored."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    name = models.CharField(max_length=20)
    last_block = models.BigIntegerField(default=-1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="one_cursor_per_contract"),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.chain_id} up to block {self.last_block}"


class IndexedBlock(models.Model):
    """The hash the indexer saw for a block; a different hash later means a reorg."""

    chain_id = models.PositiveBigIntegerField()
    number = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=66)
    is_final = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "number"], name="one_hash_per_block"),
        ]

    def __str__(self) -> str:
        return f"block {self.number}@{self.chain_id} {self.hash}"


class ChainEvent(TimestampedModel):
    """One contract log, stored once. Effects (order transitions, stakes, slashes, rewards)
    apply only when it becomes final, so a rewind never has to undo them."""

    chain_id = models.PositiveBigIntegerField()
    contract = models.CharField(max_length=20)
    address = models.CharField(max_length=42)
    name = models.CharField(max_length=40, db_index=True)
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.PositiveBigIntegerField(db_index=True)
    block_hash = models.CharField(max_length=66)
    # Event arguments; uint256 values as decimal strings (JSON numbers lose precision).
    args = models.JSONField(default=dict)
    lease_id = models.CharField(max_length=66, blank=True, db_index=True)
    account = models.CharField(max_length=42, blank=True, db_index=True)
    is_final = models.BooleanField(default=False, db_index=True)
    flagged = models.BooleanField(default=False)
    flag_reason = models.TextField(blank=True)
    order = models.ForeignKey(
        "orders.Order",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="chain_events",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "tx_hash", "log_index"], name="one_row_per_log"
            ),
        ]
        ordering = ["block_number", "log_index"]

    def __str__(self) -> str:
        return f"{self.name} #{self.block_number}:{self.log_index}"


class Stake(TimestampedModel):
    """A provider wallet's stake as the final staking events add up."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    provider = models.ForeignKey(
        "providers.Provider", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    staked = AmountField(default=0)
    pending = AmountField(default=0)
    unlock_time = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="one_stake_per_wallet"),
        ]


class Credit(TimestampedModel):
    """What the escrow owes one account, as its final events add up: the provider shares and
    renter refunds LeaseSettled / LeaseFailed credited to it, less its CreditWithdrawn. Settlement
    pays nobody directly (pull payments, see LeaseEscrow); the account withdraws when it likes.
    Moved only by chain_events_finalize, inside the transaction that makes the event final, so
    each event counts exactly once; a reorg rewinds only events that are not final yet."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    amount = AmountField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="one_credit_per_account"),
        ]

    def __str__(self) -> str:
        return f"{self.address}@{self.chain_id}: {self.amount}"


class AccruedFees(TimestampedModel):
    """Platform fees the escrow holds for the treasury: the fees of final settlements less the
    final FeesWithdrawn. One row per chain, moved like Credit."""

    chain_id = models.PositiveBigIntegerField(unique=True)
    amount = AmountField(default=0)

    class Meta:
        verbose_name_plural = "accrued fees"

    def __str__(self) -> str:
        return f"fees@{self.chain_id}: {self.amount}"


class Slash(TimestampedModel):
    # Only a local chain reset deletes final events (services/deployment.py, chain_reset_forget).
    event = models.OneToOneField(ChainEvent, on_delete=models.CASCADE, related_name="slash")
    address = models.CharField(max_length=42, db_index=True)
    provider = models.ForeignKey(
        "providers.Provider", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    amount = AmountField()
    report_hash = models.CharField(max_length=66)
    tx_hash = models.CharField(max_length=66)

    class Meta:
        verbose_name_plural = "slashes"


class Reward(TimestampedModel):
    event = models.OneToOneField(ChainEvent, on_delete=models.CASCADE, related_name="reward")
    address = models.CharField(max_length=42, db_index=True)
    provider = models.ForeignKey(
        "providers.Provider", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    amount = AmountField()
    report_hash = models.CharField(max_length=66)
    tx_hash = models.CharField(max_length=66)


class VerificationOutcome(TimestampedModel):
    """Verification results as the benchmarks app signals them: the report hash a slash or a
    failed lease cites, and the passes rewards are paid for."""

    machine = models.ForeignKey(
        "providers.Machine", on_delete=models.PROTECT, related_name="verification_outcomes"
    )
    job_id = models.CharField(max_length=64, unique=True)
    passed = models.BooleanField()
    report_hash = models.CharField(max_length=66)
    reason = models.CharField(max_length=100, blank=True)
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
