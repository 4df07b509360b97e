"""Reads behind GET /api/v1/providers/{id}/staking: a provider's stake, what its leases lock,
what its listed machines require, and the calldata its owner signs to stake, request an unstake
and withdraw (the same shape as the funding instructions of an order)."""

from __future__ import annotations

from typing import Any

from web3 import Web3

from contracts.deploy import load_artifact
from marketplace.accounts.models import User
from marketplace.core.errors import ApplicationError, ConflictError, NotFoundError
from marketplace.payments import chain, collateral
from marketplace.payments.models import ContractDeployment
from marketplace.providers.models import Provider

MAX_AMOUNT = 2**128 - 1  # the contract keeps stakes in uint128


def _amount(value: Any, *, field: str) -> int | None:
    if value in (None, ""):
        return None
    if not (isinstance(value, str) and value.isascii() and value.isdigit()):
        raise ApplicationError(
            f"{field} must be a whole number of token units.", code="payments_bad_amount"
        )
    amount = int(value)
    if not 0 < amount <= MAX_AMOUNT:
        raise ApplicationError(
            f"{field} must be between 1 and {MAX_AMOUNT} token units.",
            code="payments_bad_amount",
        )
    return amount


def _contracts_offline(cid: int | None) -> dict:
    """Token and staking contracts from our deployment rows, for encoding calldata only: the
    answer never waits on a chain node (the stake itself is what the indexer recorded)."""
    rows = {
        d.name: d
        for d in ContractDeployment.objects.filter(chain_id=cid, name__in=("token", "staking"))
    }
    if cid is None or len(rows) < 2:
        raise ConflictError(
            "The payment contracts are not deployed on this chain yet.",
            code="payments_not_deployed",
        )
    w3 = Web3()  # no provider: ABI encoding needs none
    return {
        name: w3.eth.contract(
            address=Web3.to_checksum_address(rows[name].address),
            abi=load_artifact(chain.CONTRACT_ARTIFACTS[name])["abi"],
        )
        for name in ("token", "staking")
    }


def provider_staking_state(
    *, user: User, provider_id: int, amount: Any = None, unstake_amount: Any = None
) -> dict:
    """For the provider's owner (and staff). `amount` (default: the shortfall) is what the stake
    calldata stakes; `unstake_amount` (default: all the free stake above the requirement) is
    what the unstake calldata requests."""
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None or (provider.owner_id != user.pk and not user.is_staff):
        raise NotFoundError("No such provider.", code="payments_provider_not_found")
    stake_amount = _amount(amount, field="amount")
    unstake = _amount(unstake_amount, field="unstake_amount")
    state = collateral.provider_collateral(provider_id=provider.pk)
    contracts = _contracts_offline(state.chain_id)
    token, staking = contracts["token"], contracts["staking"]
    stake_amount = stake_amount if stake_amount is not None else state.shortfall
    unstake = unstake if unstake is not None else state.unstakable
    return {
        "provider_id": provider.pk,
        "wallet_address": Web3.to_checksum_address(provider.wallet_address),
        "chain_id": state.chain_id,
        "token_address": token.address,
        "staking_address": staking.address,
        "staked": state.staked,
        "pending_unstake": state.pending,
        "unlock_time": state.unlock_time,
        "locked": state.locked,
        "free": state.free,
        "required": state.required,
        "shortfall": state.shortfall,
        "unstakable": state.unstakable,
        "covered": state.covered,
        "rejected_machines": state.rejected_machines,
        "multiplier": state.multiplier,
        "machines": state.machines,
        "leases": state.leases,
        "stake_amount": stake_amount,
        "approve_calldata": (
            token.encode_abi("approve", [staking.address, stake_amount]) if stake_amount else None
        ),
        "stake_calldata": staking.encode_abi("stake", [stake_amount]) if stake_amount else None,
        "unstake_amount": unstake,
        "request_unstake_calldata": (
            staking.encode_abi("requestUnstake", [unstake]) if unstake else None
        ),
        "withdraw_calldata": staking.encode_abi("withdraw", []) if state.pending else None,
    }
