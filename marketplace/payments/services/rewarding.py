"""Paying each reward period's service from the staking contract's pool."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone
from web3 import Web3

from marketplace.payments import chain, rewards
from marketplace.payments.models import ChainTransaction

logger = logging.getLogger(__name__)


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
    staking = chain.contract("staking")
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
                )
            )
        except chain.TransactionReverted as exc:
            # The pool was drained between the read and the send; the others may still pay.
            logger.warning("reward for provider %s not sent: %s", reward.provider_id, exc)
    return sent
