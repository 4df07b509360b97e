"""Signal receivers: each enqueues work once the sender's transaction has committed. They write
nothing that money depends on: a verdict is written by the decision itself (benchmarks.Verdict),
and a lost receiver call is made up by a beat sweep (services.verdicts_enqueue_effects_due,
services.leases_settle_overdue)."""

import logging

from django.db import transaction

logger = logging.getLogger(__name__)


def on_order_ended(sender, order_id: int, **kwargs) -> None:
    from workers.chain_tasks import lease_settle

    transaction.on_commit(lambda: lease_settle.delay(order_id))
    transaction.on_commit(lambda: lease_locks_update(order_ids=[order_id]))


def lease_locks_update(*, order_ids: list[int]) -> None:
    """A lease was funded, started or ended: its provider's lock on chain follows."""
    from marketplace.payments.collateral_services import providers_with_lease_changes
    from workers.collateral_tasks import provider_collateral_lock

    try:
        for provider_id in providers_with_lease_changes(order_ids=order_ids):
            provider_collateral_lock.delay(provider_id)
    except Exception:  # noqa: BLE001 - the off-chain requirement holds meanwhile
        logger.exception("orders %s: stake lock not enqueued", order_ids)


def on_verification_failed(sender, verdict_id: int | None = None, **kwargs) -> None:
    from marketplace.payments.services.slashing import verdict_enqueue_effects

    if verdict_id is None:
        return  # only a written verdict moves money

    def enqueue() -> None:
        try:
            verdict_enqueue_effects(verdict_id=verdict_id)
        except Exception:  # noqa: BLE001 - the decision is committed; the sweep sends it later
            logger.exception("verdict %s: effects not enqueued; the beat sweep will", verdict_id)

    transaction.on_commit(enqueue)
    transaction.on_commit(lambda: _provider_resync(verdict_id))


def _provider_resync(verdict_id: int) -> None:
    """A rejection raises the provider's requirement (collateral.provider_rejected_machines):
    its other listed machines leave search now if the stake no longer covers them."""
    from marketplace.benchmarks.models import Verdict
    from marketplace.payments.collateral_services import providers_sync_searchable

    provider_id = (
        Verdict.objects.filter(pk=verdict_id).values_list("machine__provider_id", flat=True).first()
    )
    try:
        providers_sync_searchable(provider_ids=[provider_id])
    except Exception:  # noqa: BLE001 - beat's collateral-sync re-derives it within minutes
        logger.exception("verdict %s: provider not resynced; collateral-sync will", verdict_id)
