"""Writes of the payments app: deployments, settlement, slashing, rewards and the effects of final
chain events. Chain calls happen outside database transactions (see chain.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.fields.json import KT
from django.db.models.functions import Lower
from django.utils import timezone
from hexbytes import HexBytes
from web3 import Web3

from contracts.deploy import TOKEN_NAME, TOKEN_SYMBOL, StakingLimits, load_artifact
from marketplace.benchmarks.models import Verdict
from marketplace.core.errors import ApplicationError
from marketplace.orders import services as order_services
from marketplace.orders.models import Order
from marketplace.payments import chain, collateral, genesis, receivers, rewards
from marketplace.payments.collateral_services import providers_sync_searchable
from marketplace.payments.models import (
    ChainEvent,
    ChainTransaction,
    ContractDeployment,
    IndexedBlock,
    IndexerCursor,
    Reward,
    Slash,
    Stake,
    VerificationOutcome,
)
from marketplace.providers.models import Provider

logger = logging.getLogger(__name__)

ZERO_HASH = "0x" + "00" * 32


# ------------------------------------------------------------------------------ deployment


def contracts_deploy(
    *, reward_pool: int = 0, forget_reset_chain: bool = False
) -> dict[str, ContractDeployment]:
    """Deploys token, escrow and staking unless the recorded ones are on this chain (same genesis,
    code still there): a node restored from its state file keeps them, and a restart deploys
    nothing. On a reset chain (genesis.py) it deploys anew only if the database holds no money
    state of the old one, or `forget_reset_chain` says to drop it; otherwise it opens the one
    chain-reset alert and raises ChainResetError with what to do.

    Each deployment is a recorded, keyed transaction ("deploy:<chain>:<name>:<generation>"), so a
    command interrupted half-way resumes instead of deploying twice."""
    w3 = chain.get_web3()
    cid = chain.chain_id(w3)
    deployer = chain.account("deployer", w3)
    operator = chain.account("operator", w3)
    treasury = chain.treasury_address(w3)

    recorded = {d.name: d for d in ContractDeployment.objects.filter(chain_id=cid)}
    reset = genesis.chain_reset_find(w3=w3, cid=cid)
    if reset is None and all(name in recorded for name in chain.CONTRACT_ARTIFACTS):
        # Records the genesis of a database from before it, resolves a stale alert.
        genesis.chain_reset_report(w3=w3, cid=cid, reset=None)
        return recorded
    if reset is not None and not forget_reset_chain and genesis.chain_money_history_exists(cid=cid):
        genesis.chain_reset_report(w3=w3, cid=cid, reset=reset)
        raise genesis.ChainResetError(reset.message)
    if recorded:
        # The chain lost our contracts (a local node restarted without its state), or a deploy
        # was interrupted between two of them.
        chain_reset_forget(cid=cid)
        for address in (deployer.address, operator.address):
            chain.nonce_cursor_reset(w3=w3, address=address)
    genesis.chain_genesis_record(w3=w3, cid=cid)
    generation = max((d.generation for d in recorded.values()), default=0) + 1

    def deploy_one(name: str, *args) -> ContractDeployment:
        artifact = load_artifact(chain.CONTRACT_ARTIFACTS[name])
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        tx = chain.send(
            idempotency_key=f"deploy:{cid}:{name}:{generation}",
            purpose=f"deploy_{name}",
            to=None,
            data=factory.constructor(*args).data_in_transaction,
            role="deployer",
            w3=w3,
        )
        tx = _confirm_blocking(tx, w3)
        receipt = w3.eth.get_transaction_receipt(tx.tx_hash)
        row, _ = ContractDeployment.objects.update_or_create(
            chain_id=cid,
            name=name,
            defaults={
                "address": receipt["contractAddress"],
                "generation": generation,
                "block_number": receipt["blockNumber"],
                "tx_hash": tx.tx_hash,
            },
        )
        return row

    token = deploy_one("token", TOKEN_NAME, TOKEN_SYMBOL)
    escrow = deploy_one(
        "escrow",
        token.address,
        operator.address,
        treasury,
        settings.PLATFORM_FEE_BPS,
        settings.ESCROW_RECLAIM_DELAY_SECONDS,
        settings.CHAIN_TIMELOCK_DELAY_SECONDS,
    )
    # The deployer holds ADMIN (timelocked changes); the operator settles, slashes, rewards
    # and locks stake, within the per-period caps below.
    staking = deploy_one(
        "staking",
        token.address,
        operator.address,
        treasury,
        settings.STAKING_UNSTAKE_DELAY_SECONDS,
        settings.CHAIN_TIMELOCK_DELAY_SECONDS,
        tuple(
            StakingLimits(
                period_seconds=settings.STAKING_CAP_PERIOD_SECONDS,
                max_lock_seconds=settings.STAKING_MAX_LOCK_SECONDS,
                slash_cap=settings.STAKING_SLASH_CAP_PER_PERIOD,
                reward_cap=settings.STAKING_REWARD_CAP_PER_PERIOD,
            )
        ),
    )
    if reward_pool and chain.is_local_chain(cid):
        _fund_reward_pool(w3, cid, generation, reward_pool)
    genesis.chain_reset_check(w3=w3)  # resolves a chain-reset alert this deployment answered
    return {"token": token, "escrow": escrow, "staking": staking}


@transaction.atomic
def chain_reset_forget(*, cid: int) -> None:
    """Forgets what we knew of a local chain that was reset: its transactions, blocks, events
    and stakes describe money that no longer exists, and a fresh chain replays identical
    transactions (same hashes, same log positions). Never on a real chain."""
    if not chain.is_local_chain(cid):
        raise chain.ChainError(f"chain {cid} lost our contracts; refusing to forget its history")
    ChainTransaction.objects.filter(chain_id=cid).exclude(
        status=ChainTransaction.Status.FAILED
    ).update(status=ChainTransaction.Status.FAILED, error="the chain was reset")
    IndexerCursor.objects.filter(chain_id=cid).delete()
    IndexedBlock.objects.filter(chain_id=cid).delete()
    ChainEvent.objects.filter(chain_id=cid).delete()
    Stake.objects.filter(chain_id=cid).delete()


def _fund_reward_pool(w3: Web3, cid: int, generation: int, amount: int) -> None:
    token, staking = chain.contract("token", w3), chain.contract("staking", w3)
    deployer = chain.account("deployer", w3).address
    for step, fn in (
        ("mint", token.functions.mint(deployer, amount)),
        ("approve", token.functions.approve(staking.address, amount)),
        ("fund", staking.functions.fundRewards(amount)),
    ):
        tx = chain.send_call(
            fn,
            idempotency_key=f"reward_pool:{cid}:{generation}:{step}",
            purpose=f"reward_pool_{step}",
            role="deployer",
            w3=w3,
        )
        _confirm_blocking(tx, w3)


def _confirm_blocking(tx: ChainTransaction, w3: Web3, timeout: float = 60.0) -> ChainTransaction:
    """For management commands only; tasks retry instead of waiting."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return chain.confirm(tx, w3=w3)
        except chain.NotConfirmed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def demo_renter_fund(*, address: str, amount: int, eth_wei: int = 10**19) -> dict:
    """Mints test stablecoin to `address` and gives it gas money; local chains only."""
    w3 = chain.get_web3()
    cid = chain.chain_id(w3)
    if not chain.is_local_chain(cid):
        raise ApplicationError(
            f"Chain {cid} is not a local chain; test tokens are minted only locally.",
            code="payments_not_local_chain",
        )
    if not Web3.is_address(address):
        raise ApplicationError("Not an address.", code="payments_bad_address")
    address = Web3.to_checksum_address(address)
    token = chain.contract("token", w3)
    # A fresh key each call: minting twice is what the caller asked for.
    tx = chain.send_call(
        token.functions.mint(address, amount),
        idempotency_key=f"demo_mint:{cid}:{address}:{timezone.now().isoformat()}",
        purpose="demo_mint",
        role="deployer",
        w3=w3,
    )
    _confirm_blocking(tx, w3)
    gave_eth = False
    if w3.eth.get_balance(address) < eth_wei // 10:
        if cid == chain.ETH_TESTER_CHAIN_ID:
            raw = w3.eth.account.sign_transaction(
                {
                    "to": address,
                    "value": eth_wei,
                    "gas": 21_000,
                    "gasPrice": w3.eth.gas_price,
                    "nonce": w3.eth.get_transaction_count(w3.eth.accounts[0]),
                    "chainId": cid,
                },
                "0x" + "00" * 31 + "01",  # eth-tester's first funded account
            )
            w3.eth.send_raw_transaction(raw.raw_transaction)
        else:
            # Anvil names it anvil_setBalance; Ganache evm_setAccountBalance.
            method = (
                "evm_setAccountBalance" if cid == chain.GANACHE_CHAIN_ID else "anvil_setBalance"
            )
            w3.provider.make_request(method, [address, hex(eth_wei)])
        gave_eth = True
    return {"address": address, "minted": amount, "tx_hash": tx.tx_hash, "gave_eth": gave_eth}


# ------------------------------------------------------------------------------ leases


def _lease_bytes(order: Order) -> bytes:
    return bytes(HexBytes(order.lease_id))


def order_is_funded_on_chain(*, order: Order) -> bool:
    # Flagged deposits count: whatever their terms, the money is in escrow and settle(0) on a
    # cancelled order returns all of it.
    return ChainEvent.objects.filter(
        name="LeaseFunded", lease_id=order.lease_id, is_final=True
    ).exists()


def lease_start(*, order_id: int) -> ChainTransaction | None:
    """Marks the lease started on chain, which ends the renter's right to reclaim it. Sent for a
    `starting` order; the order becomes active only when the indexer sees LeaseStarted final
    (_lease_started), so a renter is never served while the deposit is still reclaimable."""
    order = Order.objects.get(pk=order_id)
    if order.state != Order.State.STARTING:
        return None
    escrow = chain.contract("escrow")
    tx = chain.send_call(
        escrow.functions.start(_lease_bytes(order)),
        idempotency_key=f"start:{order.pk}",
        purpose="lease_start",
        order_id=order.pk,
    )
    return chain.confirm(tx)


class VerdictPending(Exception):
    """A failed lease whose verdict is not readable yet. Never settled citing the zero hash:
    the task retries (chain_tasks), and the overdue sweep sends it again later."""


def order_failure_report_hash(*, order: Order) -> str | None:
    """The report of the verdict that failed this lease: written in the same transaction as
    the failure, so it is there for any settlement that can see the failed state. A lease
    failed before verdicts existed falls back to the outcome the payments app recorded then."""
    verdict = Verdict.objects.filter(orders=order, passed=False).order_by("-pk").first()
    if verdict is not None:
        return verdict.report_hash
    legacy = VerificationOutcome.objects.filter(passed=False, order=order).order_by("-pk").first()
    if legacy is None and order.started_at is not None:
        legacy = (
            VerificationOutcome.objects.filter(
                passed=False,
                machine_id=order.machine_id,
                order__isnull=True,
                created_at__gte=order.started_at,
            )
            .order_by("-pk")
            .first()
        )
    return legacy.report_hash if legacy is not None else None


def lease_settle(*, order_id: int) -> ChainTransaction | None:
    """Closes an ended lease on chain: completed → settle(billable seconds); failed → fail(...,
    report hash of its verdict); cancelled after funding → settle(0), a full refund; never
    funded → nothing. The DB learns the outcome only from the indexed LeaseSettled/LeaseFailed
    event."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        # A message for an order this database never had (another database's broker leftovers):
        # nothing to settle, and retrying would not change that.
        logger.warning("lease_settle: no order %s; dropping the task", order_id)
        return None
    if order.state not in Order.AWAITS_SETTLEMENT:
        return None
    if order.state == Order.State.CANCELLED and not order_is_funded_on_chain(order=order):
        return None
    if (
        order.state == Order.State.CANCELLED
        and ChainEvent.objects.filter(name="LeaseReclaimed", lease_id=order.lease_id).exists()
    ):
        return None  # the renter took it all back already; settle(0) would revert
    escrow = chain.contract("escrow")
    lease = _lease_bytes(order)
    seconds = order.billable_seconds or 0
    if order.state == Order.State.CANCELLED:
        seconds = 0
    if order.state == Order.State.FAILED:
        report = order_failure_report_hash(order=order)
        if report is None or report == ZERO_HASH:
            # The key "settle:<order>" makes the first transaction final: citing nothing now
            # would be citing nothing for good.
            logger.error("lease_settle: failed order %s has no verdict yet; retrying", order.pk)
            raise VerdictPending(f"failed order {order.pk} has no verdict")
        fn, purpose = escrow.functions.fail(lease, seconds, bytes(HexBytes(report))), "lease_fail"
    else:
        fn, purpose = escrow.functions.settle(lease, seconds), "lease_settle"
    tx = chain.send_call(
        fn, idempotency_key=f"settle:{order.pk}", purpose=purpose, order_id=order.pk
    )
    return chain.confirm(tx)


def leases_settle_overdue(*, older_than_seconds: int = 120) -> list[int]:
    """Beat: re-enqueues the settlement of every lease that ended a while ago and is still not
    settled. The task sent when it ended can be lost (a broker restarted without persistence, a
    worker killed holding the message); lease_settle is keyed per order, so a duplicate sends
    nothing twice."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        Order.objects.filter(state__in=Order.AWAITS_SETTLEMENT, ended_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for order_id in ids:
        _enqueue("lease_settle", order_id)
    return ids


# ------------------------------------------------------------------------------ verification


def verdict_enqueue_effects(*, verdict_id: int) -> bool:
    """Enqueues what a failed verdict sets in motion: the slash (if it penalises) and the
    settlement of each lease it failed. Claimed with a conditional update on
    `effects_enqueued_at` (healthchecks' Flip pattern), so of the receiver and the beat sweep
    only one enqueues. The tasks are sent inside the claiming transaction: if the broker
    refuses, the claim rolls back and the sweep tries again; a crash after sending and before
    the commit sends them twice, which their idempotency keys absorb. Never lost, at worst
    repeated. Returns whether this call claimed it."""
    with transaction.atomic():
        claimed = Verdict.objects.filter(
            pk=verdict_id, passed=False, effects_enqueued_at__isnull=True
        ).update(effects_enqueued_at=timezone.now())
        if not claimed:
            return False
        verdict = Verdict.objects.get(pk=verdict_id)
        if verdict.penalised:
            _enqueue("provider_slash", verdict.key)
        for order_id in (
            verdict.orders.filter(state=Order.State.FAILED)
            .order_by("pk")
            .values_list("pk", flat=True)
        ):
            _enqueue("lease_settle", order_id)
    return True


def verdicts_enqueue_effects_due(*, older_than_seconds: int = 60) -> list[int]:
    """Beat: the failed verdicts whose effects were never enqueued (the process that committed
    them died before its after-commit work ran, or the broker refused). Older than a minute so
    that it never races the receiver on the normal path; the claim makes a race harmless."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    due = Verdict.objects.filter(
        passed=False, effects_enqueued_at__isnull=True, created_at__lt=cutoff
    ).order_by("pk")
    return [pk for pk in due.values_list("pk", flat=True) if verdict_enqueue_effects(verdict_id=pk)]


def provider_stake_available(*, cid: int, address: str) -> int:
    stake = Stake.objects.filter(chain_id=cid, address=address).first()
    return int(stake.staked + stake.pending) if stake is not None else 0


def provider_slash(*, key: str) -> ChainTransaction | None:
    """Slashes the provider of a penalising verdict, with the verdict's report hash on chain:
    SLASH_AMOUNT plus the lock of every lease the verdict broke (collateral.lease_lock), capped
    at the indexed stake, so a slash scales with what the cheat broke. One transaction per
    verdict ("slash:<key>")."""
    verdict = (
        Verdict.objects.select_related("machine__provider")
        .filter(key=str(key), passed=False)
        .first()
    )
    if verdict is None or not verdict.penalised:
        logger.info("slash %s: no penalising verdict; nothing to slash", key)
        return None
    provider = verdict.machine.provider
    w3 = chain.get_web3()
    wallet = Web3.to_checksum_address(provider.wallet_address)
    amount = collateral.verdict_slash_amount(
        verdict=verdict,
        available=provider_stake_available(cid=chain.chain_id(w3), address=wallet),
    )
    if (
        amount <= 0
        and not ChainTransaction.objects.filter(idempotency_key=f"slash:{verdict.key}").exists()
    ):
        logger.info("provider %s has no stake to slash for verdict %s", provider.pk, key)
        return None
    staking = chain.contract("staking", w3)
    tx = chain.send_call(
        staking.functions.slash(wallet, amount, bytes(HexBytes(verdict.report_hash))),
        idempotency_key=f"slash:{verdict.key}",
        purpose="provider_slash",
        provider_id=provider.pk,
        w3=w3,
    )
    return chain.confirm(tx, w3=w3)


def reward_period(*, now: datetime) -> tuple[datetime, datetime]:
    """The last complete reward period before `now`, aligned to the epoch."""
    length = settings.REWARD_PERIOD_SECONDS
    end_ts = int(now.timestamp()) // length * length
    end = datetime.fromtimestamp(end_ts, tz=UTC)
    return end - timedelta(seconds=length), end


def providers_reward(*, now: datetime | None = None) -> list[ChainTransaction]:
    """Rewards the last period's service: per verified, staked, leased accelerator-hour
    (payments/rewards.py), never a flat amount per provider, capped by the reward pool. The
    report hash is keccak of the canonical list of leases counted. One transaction per provider
    and period ("reward:<provider>:<period start>")."""
    start, end = reward_period(now=now or timezone.now())
    w3 = chain.get_web3()
    staking = chain.contract("staking", w3)
    pool = staking.functions.rewardPool().call()
    sent = []
    for reward in rewards.rewards_for_period(start=start, end=end, pool=pool):
        try:
            sent.append(
                chain.send_call(
                    staking.functions.reward(
                        Web3.to_checksum_address(reward.wallet_address),
                        reward.amount,
                        reward.report_hash(start=start, end=end),
                    ),
                    idempotency_key=f"reward:{reward.provider_id}:{int(start.timestamp())}",
                    purpose="provider_reward",
                    provider_id=reward.provider_id,
                    w3=w3,
                )
            )
        except chain.TransactionReverted as exc:
            # The pool was drained between the read and the send; the others may still pay.
            logger.warning("reward for provider %s not sent: %s", reward.provider_id, exc)
    return sent


def transactions_confirm_pending(*, limit: int = 100) -> int:
    """Beat: rebroadcasts pending transactions the node lost and records confirmations of the
    ones no task is waiting on any more (e.g. rewards). Returns how many got confirmed."""
    confirmed = 0
    live = ChainTransaction.objects.filter(
        status__in=[ChainTransaction.Status.PENDING, ChainTransaction.Status.MINED]
    ).order_by("chain_id", "sender", "nonce")[:limit]
    for tx in live:
        try:
            chain.confirm(tx)
            confirmed += 1
        except chain.ChainError as exc:
            logger.info("transaction %s: %s", tx.tx_hash, exc)
    return confirmed


# ------------------------------------------------------------------------------ chain events


def _flag(event: ChainEvent, reason: str) -> None:
    event.flagged = True
    event.flag_reason = reason
    logger.warning("chain event %s flagged: %s", event, reason)


class _Batch:
    """What the events of one finalize batch share: which lease ids have an order at all (one
    query, not one per deposit nobody ordered), provider wallets looked up once, and the payout
    rows written together at the end."""

    def __init__(self, events: list[ChainEvent]) -> None:
        # An order exists before its lease can be funded (the lease id comes from the order), so
        # a lease id without an order at the start of the batch has none for any of its events.
        self.leases_with_order = set(
            Order.objects.filter(
                lease_id__in={e.lease_id for e in events if e.lease_id}
            ).values_list("lease_id", flat=True)
        )
        self.providers: dict[str, Provider | None] = {}
        self.payouts: list[Slash | Reward] = []

    def order(self, event: ChainEvent) -> Order | None:
        # Read fresh: an earlier event of the same batch may have moved this order on.
        if event.lease_id not in self.leases_with_order:
            return None
        return Order.objects.select_related("provider").filter(lease_id=event.lease_id).first()

    def provider(self, address: str) -> Provider | None:
        if address not in self.providers:
            self.providers[address] = _provider_for(address)
        return self.providers[address]


def _lease_funded(event: ChainEvent, batch: _Batch) -> None:
    order = batch.order(event)
    if order is None:
        _flag(event, "no order has this lease id")
        return
    event.order = order
    args = event.args
    expected = {
        "amount": order.escrow_amount,
        "ratePerSecond": order.rate_per_second,
        "maxDuration": order.duration_seconds,
    }
    wrong = [f"{k} {args[k]} != {v}" for k, v in expected.items() if int(args[k]) != v]
    if args["provider"] != Web3.to_checksum_address(order.provider.wallet_address):
        wrong.append(f"provider {args['provider']} != {order.provider.wallet_address}")
    if wrong:
        # The renter's money is in escrow but not on the terms the order was priced at; it
        # stays there until the renter reclaims it. The order never activates on it.
        _flag(event, "funding does not match the order: " + "; ".join(wrong))
        return
    if order.state != Order.State.CREATED:
        _flag(event, f"order is {order.state}, not awaiting funding")
        if order.state == Order.State.CANCELLED:
            # Funded after it was cancelled: give it all back rather than wait for a reclaim.
            order_pk = order.pk
            transaction.on_commit(lambda: _enqueue("lease_settle", order_pk))
        return
    order = order_services.order_mark_funded(order_id=order.pk)
    if order.state != Order.State.FUNDED:
        # Its accelerators went to another order before this deposit was seen: it was cancelled
        # instead, and that cancellation settles the deposit for 0 seconds, a full refund.
        return
    # Not active yet: served and billed only once `start` is final (_lease_started).
    order_services.order_mark_starting(order_id=order.pk)
    order_pk = order.pk
    transaction.on_commit(lambda: _enqueue("lease_start", order_pk))


def _lease_started(event: ChainEvent, batch: _Batch) -> None:
    """`start` is final: the renter can no longer reclaim the deposit, so the lease runs (and
    is billed) from now. A start that lands after the order gave up waiting for it changes
    nothing: the order was cancelled for 0 seconds, and settle(0) refunds a started lease too."""
    order = batch.order(event)
    if order is None:
        _flag(event, "no order has this lease id")
        return
    event.order = order
    if order.state != Order.State.STARTING:
        _flag(event, f"order is {order.state}, not starting")
        return
    order_services.order_activate(order_id=order.pk)


def _lease_closed(event: ChainEvent, batch: _Batch) -> None:
    order = batch.order(event)
    if order is None:
        _flag(event, "no order has this lease id")
        return
    event.order = order
    if order.state not in Order.AWAITS_SETTLEMENT:
        _flag(event, f"order is {order.state}, not awaiting settlement")
        return
    expected_seconds = 0 if order.state == Order.State.CANCELLED else order.billable_seconds or 0
    if int(event.args["secondsUsed"]) != expected_seconds:
        _flag(event, f"settled {event.args['secondsUsed']} s, order billed {expected_seconds} s")
    order_services.order_mark_settled(order_id=order.pk)


def _lease_reclaimed(event: ChainEvent, batch: _Batch) -> None:
    order = batch.order(event)
    event.order = order
    if order is not None and order.state in (Order.State.FUNDED, Order.State.STARTING):
        # The renter took the deposit back before `start` was final (it never was, in the
        # reclaim delay): the order was never served, so it ends here for 0 seconds; the escrow
        # already paid everything back, so lease_settle sends nothing for it.
        order_services.order_cancel(order_id=order.pk, reason="deposit reclaimed before start")
        return
    if order is None or order.state not in (Order.State.CANCELLED, Order.State.SETTLED):
        _flag(event, f"reclaimed while the order is {order.state if order else 'unknown'}")


def _provider_for(address: str) -> Provider | None:
    return Provider.objects.filter(wallet_address__iexact=address).order_by("pk").first()


def _stake_replay(events) -> tuple[int, int, int]:
    """(staked, pending, unlock time) as ProviderStaking computes them from a wallet's events in
    chain order (slashes take from the stake first, then from pending)."""
    staked = pending = unlock = 0
    for name, amount, unlock_time in events:
        amount = int(amount or 0)
        if name == "Staked":
            staked += amount
        elif name == "UnstakeRequested":
            staked -= amount
            pending += amount
            unlock = int(unlock_time)
        elif name == "Withdrawn":
            pending, unlock = 0, 0
        elif name == "Slashed":
            from_stake = min(amount, staked)
            staked -= from_stake
            pending -= amount - from_stake
    return staked, pending, unlock


def stakes_recompute(*, cid: int, addresses: list[str]) -> dict[str, Stake]:
    """The stakes of `addresses` as their final staking events add up, each replayed from the
    first event: a stake is never adjusted by a delta, so no earlier mistake can survive a
    replay. A handful of queries for any number of wallets."""
    history: dict[str, list] = {address: [] for address in addresses}
    # Only the two arguments the replay reads, picked out by the database as text: a replay
    # reads every event the wallet ever had, and decoding JSON was most of its cost.
    for account, *event in (
        ChainEvent.objects.filter(
            chain_id=cid,
            contract="staking",
            account__in=addresses,
            name__in=_STAKE_EVENTS,
            is_final=True,
        )
        .order_by("block_number", "log_index")
        .values_list("account", "name", KT("args__amount"), KT("args__unlockTime"))
    ):
        history[account].append(event)
    providers: dict[str, Provider] = {}
    for provider in (
        Provider.objects.annotate(wallet=Lower("wallet_address"))
        .filter(wallet__in=[a.lower() for a in addresses])
        .order_by("-pk")  # the lowest pk wins, as in _provider_for
    ):
        providers[provider.wallet] = provider
    stakes = {s.address: s for s in Stake.objects.filter(chain_id=cid, address__in=addresses)}
    changed, created = [], []
    fields = ("staked", "pending", "unlock_time", "provider_id")
    for address in addresses:
        staked, pending, unlock = _stake_replay(history[address])
        provider = providers.get(address.lower())
        values = (staked, pending, unlock, provider.pk if provider else None)
        stake = stakes.get(address)
        if stake is None:
            stakes[address] = stake = Stake(chain_id=cid, address=address)
            created.append(stake)
        elif tuple(getattr(stake, f) for f in fields) != values:
            changed.append(stake)
        for field, value in zip(fields, values, strict=True):
            setattr(stake, field, value)
    Stake.objects.bulk_create(created)
    # One small UPDATE per changed stake: bulk_update's CASE expressions cost more to build
    # than the round trips they save.
    now = timezone.now()
    for stake in changed:
        stake.updated_at = now
        Stake.objects.filter(pk=stake.pk).update(
            **{f: getattr(stake, f) for f in fields}, updated_at=now
        )
    # A stake that moved may cover the provider's listed machines again, or no longer.
    providers_sync_searchable(provider_ids=[s.provider_id for s in (*created, *changed)])
    return stakes


def stake_recompute(*, cid: int, address: str) -> Stake:
    """The stake of one wallet (see stakes_recompute)."""
    return stakes_recompute(cid=cid, addresses=[address])[address]


def _payout(event: ChainEvent, batch: _Batch) -> None:
    model = Slash if event.name == "Slashed" else Reward
    batch.payouts.append(
        model(
            event=event,
            address=event.account,
            provider=batch.provider(event.account),
            amount=int(event.args["amount"]),
            report_hash=event.args["reportHash"],
            tx_hash=event.tx_hash,
        )
    )


_HANDLERS = {
    "LeaseFunded": _lease_funded,
    "LeaseStarted": _lease_started,
    "LeaseSettled": _lease_closed,
    "LeaseFailed": _lease_closed,
    "LeaseReclaimed": _lease_reclaimed,
    "Slashed": _payout,
    "Rewarded": _payout,
}
# Events after which the provider's stake lock on chain follows its leases.
_LOCK_EVENTS = ("LeaseFunded", "LeaseStarted")
# The stake itself is replayed once per wallet and batch (chain_events_finalize).
_STAKE_EVENTS = ("Staked", "UnstakeRequested", "Withdrawn", "Slashed")


def chain_events_finalize(*, event_ids: list[int]) -> int:
    """Applies the effects of stored events once they have enough confirmations, in chain order,
    in one database transaction: the batch commits whole or not at all. Exactly once: the rows
    are locked, and only those not yet final are flipped and applied, in the same transaction
    as their effects. Returns how many became final."""
    with transaction.atomic():
        events = list(
            ChainEvent.objects.select_for_update()
            .filter(pk__in=event_ids, is_final=False)
            .order_by("block_number", "log_index")
        )
        if not events:
            return 0
        now = timezone.now()
        batch = _Batch(events)
        outcomes: dict[tuple, list[int]] = {}
        wallets: dict[tuple[int, str], None] = {}
        for event in events:
            handler = _HANDLERS.get(event.name)
            if handler is not None:
                handler(event, batch)
            key = (event.order_id, event.flagged, event.flag_reason)
            outcomes.setdefault(key, []).append(event.pk)
            if event.name in _STAKE_EVENTS:
                wallets[(event.chain_id, event.account)] = None
        # Each row is written once, final with its outcome: one UPDATE per distinct outcome
        # (most events have none, most deposits nobody ordered share one), not one per event.
        # No handler reads another event's row, so flipping the batch together after its
        # handlers equals flipping each event before its own.
        for (order_id, flagged, reason), pks in outcomes.items():
            ChainEvent.objects.filter(pk__in=pks).update(
                is_final=True,
                order_id=order_id,
                flagged=flagged,
                flag_reason=reason,
                updated_at=now,
            )
        for event in events:
            event.is_final = True
        for model in (Slash, Reward):
            rows = [p for p in batch.payouts if isinstance(p, model)]
            # An event is final once, so its payout row is new; the conflict guard is the
            # unique event key, kept as a second lock.
            model.objects.bulk_create(rows, ignore_conflicts=True)
        # A stake is the replay of all its wallet's final events (the batch's included now):
        # replaying once after the batch gives what replaying after each event would have left.
        for cid in {cid for cid, _ in wallets}:
            stakes_recompute(cid=cid, addresses=[a for c, a in wallets if c == cid])
        leases_moved = [e.order_id for e in events if e.name in _LOCK_EVENTS and e.order_id]
        if leases_moved:
            transaction.on_commit(lambda: receivers.lease_locks_update(order_ids=leases_moved))
        _transactions_confirm_by_events(events)
    return len(events)


def _transactions_confirm_by_events(events: list[ChainEvent]) -> None:
    """A transaction of ours whose effect is final is confirmed, whatever its task saw."""
    live = Q(status=ChainTransaction.Status.PENDING) | Q(status=ChainTransaction.Status.MINED)
    where = {e.tx_hash: e for e in events}
    ours = ChainTransaction.objects.filter(live, tx_hash__in=list(where)).values_list(
        "tx_hash", flat=True
    )
    for tx_hash in set(ours):
        event = where[tx_hash]
        ChainTransaction.objects.filter(live, tx_hash=tx_hash).update(
            status=ChainTransaction.Status.CONFIRMED,
            block_number=event.block_number,
            block_hash=event.block_hash,
        )


def chain_event_finalize(*, event_id: int) -> bool:
    """One event's effects (see chain_events_finalize)."""
    return chain_events_finalize(event_ids=[event_id]) == 1


def _enqueue(task_name: str, *args) -> None:
    # Imported late: workers.chain_tasks imports this module.
    from workers import chain_tasks

    getattr(chain_tasks, task_name).delay(*args)
