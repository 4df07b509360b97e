"""Stake rows: each wallet's stake replayed from its final staking events."""

from __future__ import annotations

from django.db.models.fields.json import KT
from django.db.models.functions import Lower
from django.utils import timezone

from marketplace.payments.collateral_services import providers_sync_searchable
from marketplace.payments.models import ChainEvent, Stake
from marketplace.providers.models import Provider

# The events that move a stake; chain_events_finalize replays each wallet they touch once per
# batch.
STAKE_EVENTS = ("Staked", "UnstakeRequested", "Withdrawn", "Slashed")


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
            name__in=STAKE_EVENTS,
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
        .order_by("-pk")  # the lowest pk wins, as in selectors.provider_for_wallet
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
