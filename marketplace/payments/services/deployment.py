"""Deploying the platform's contracts, and forgetting a reset local chain."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from web3 import Web3

from contracts.deploy import (
    TOKEN_NAME,
    TOKEN_SYMBOL,
    StakingLimits,
    load_artifact,
)
from marketplace.payments import chain, genesis
from marketplace.payments.models import (
    AccruedFees,
    ChainEvent,
    ChainTransaction,
    ContractDeployment,
    Credit,
    IndexedBlock,
    IndexerCursor,
    Stake,
)
from marketplace.payments.services.transactions import transaction_confirm_blocking


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
        tx = transaction_confirm_blocking(tx=tx, w3=w3)
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
    """Forgets what we knew of a local chain that was reset: its transactions, blocks, events,
    stakes and escrow credits describe money that no longer exists, and a fresh chain replays
    identical transactions (same hashes, same log positions). Never on a real chain."""
    if not chain.is_local_chain(cid):
        raise chain.ChainError(f"chain {cid} lost our contracts; refusing to forget its history")
    ChainTransaction.objects.filter(chain_id=cid).exclude(
        status=ChainTransaction.Status.FAILED
    ).update(status=ChainTransaction.Status.FAILED, error="the chain was reset")
    IndexerCursor.objects.filter(chain_id=cid).delete()
    IndexedBlock.objects.filter(chain_id=cid).delete()
    ChainEvent.objects.filter(chain_id=cid).delete()
    Stake.objects.filter(chain_id=cid).delete()
    Credit.objects.filter(chain_id=cid).delete()
    AccruedFees.objects.filter(chain_id=cid).delete()


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
        transaction_confirm_blocking(tx=tx, w3=w3)
