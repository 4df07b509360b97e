"""What a failed verdict sets in motion: the slash of a penalising one (cited by its report hash
on chain) and the settlement of the leases it failed."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from hexbytes import HexBytes
from web3 import Web3

from marketplace.benchmarks.models import Verdict
from marketplace.orders.models import Order
from marketplace.payments import chain, collateral
from marketplace.payments.models import ChainTransaction
from marketplace.payments.selectors import provider_stake_available
from marketplace.payments.services.enqueue import task_enqueue

logger = logging.getLogger(__name__)


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
            task_enqueue("provider_slash", verdict.key)
        for order_id in (
            verdict.orders.filter(state=Order.State.FAILED)
            .order_by("pk")
            .values_list("pk", flat=True)
        ):
            task_enqueue("lease_settle", order_id)
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
