"""Which chain this database belongs to, and what the platform does when the node is another one.

A local node restarted without its state file (or CHAIN_RPC_URL pointed at another node) is a NEW
chain with the same chain id: our contracts are gone, or redeployed at the same addresses, and
every money row in the database describes a chain that no longer exists. Compared row by row that
looks like one money difference per lease and stake and one failed transaction per settlement;
it is one fact. So the database records the genesis block hash of the chain it deployed on
(ChainGenesis), and reconciliation and every chain task check it first: while the node is not
that chain they stand down, and ONE Alert says what happened and what to do.

Three signs, cheapest first: the genesis hash differs; a contract we deployed has no code; the
last block the indexer made final is gone or has another hash (a node restored from a state file
older than the database, e.g. after a SIGKILL between two periodic dumps).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import BlockNotFound

from marketplace.core.models import Alert
from marketplace.payments import chain
from marketplace.payments.models import (
    ChainEvent,
    ChainGenesis,
    ChainTransaction,
    ContractDeployment,
    IndexedBlock,
)

logger = logging.getLogger(__name__)

CHAIN_RESET_ALERT = "chain_reset"


class ChainResetError(chain.ChainError):
    """The node is not the chain this database's money lives on; a person has to choose."""


@dataclass(frozen=True)
class ChainReset:
    chain_id: int
    url: str
    reason: str  # one sentence: what differs
    recorded_genesis: str  # "" when the database never recorded one

    @property
    def fingerprint(self) -> str:
        # One problem per (chain, database): a second fresh node is the same reset, not another.
        return hashlib.sha256(
            f"{CHAIN_RESET_ALERT}|{self.chain_id}|{self.recorded_genesis}".encode()
        ).hexdigest()

    @property
    def message(self) -> str:
        return (
            f"The chain at {self.url} (chain id {self.chain_id}) was reset: {self.reason}. "
            "The money state in the database (leases, stakes, slashes, transactions) no longer "
            "matches it, so indexing, settlement and reconciliation are paused. For a fresh "
            "local demo run `make clean-run` and then `make run`; to keep this database, "
            "restore the chain's state file (`make run` keeps it as .run/anvil-state*.json) or "
            "point CHAIN_RPC_URL at the node this database was using."
        )


def _hex(value) -> str:
    return HexBytes(value).to_0x_hex()


def _has_code(w3: Web3, address: str) -> bool:
    return w3.eth.get_code(Web3.to_checksum_address(address)) not in (b"", HexBytes("0x"))


def genesis_hash(w3: Web3) -> str:
    """Block 0's hash as block 1 names it (its parent hash); block 0's own on a chain with no block
    1 yet. Anvil loading a state file sometimes rebuilds block 0 with a new timestamp, so a new
    hash, while every later block comes back as it was: the parent hash recorded in block 1 is
    the identity that survives a restore, and a new chain has a new one."""
    try:
        return _hex(w3.eth.get_block(1)["parentHash"])
    except BlockNotFound:
        return _hex(w3.eth.get_block(0)["hash"])


def chain_genesis_record(*, w3: Web3, cid: int) -> ChainGenesis:
    """This database belongs to the connected chain from now on."""
    row, _ = ChainGenesis.objects.update_or_create(
        chain_id=cid, defaults={"genesis_hash": genesis_hash(w3)}
    )
    return row


def chain_money_history_exists(*, cid: int) -> bool:
    """Whether the database holds money state of chain `cid` that a reset would orphan. The
    deployment itself and the reward pool it funds are not: redeploying recreates them."""
    return (
        ChainEvent.objects.filter(chain_id=cid).exclude(name="RewardsFunded").exists()
        or ChainTransaction.objects.filter(chain_id=cid)
        .filter(Q(order__isnull=False) | Q(provider__isnull=False))
        .exists()
    )


def chain_reset_find(*, w3: Web3, cid: int) -> ChainReset | None:
    """The reset, if the node at CHAIN_RPC_URL is not the chain this database recorded; None
    when it is, or when the database has nothing on chain `cid` yet. Reads only."""
    recorded = ChainGenesis.objects.filter(chain_id=cid).first()
    deployments = list(ContractDeployment.objects.filter(chain_id=cid).order_by("pk"))
    if recorded is None and not deployments:
        return None
    url = settings.CHAIN_RPC_URL
    recorded_hash = recorded.genesis_hash if recorded else ""
    actual = genesis_hash(w3)
    if recorded is not None and recorded.genesis_hash.lower() != actual.lower():
        return ChainReset(
            cid,
            url,
            f"its genesis block is {actual}, not {recorded.genesis_hash} as recorded by this "
            "database",
            recorded_hash,
        )
    for d in deployments:
        if not _has_code(w3, d.address):
            return ChainReset(
                cid, url, f"our {d.name} contract {d.address} has no code there", recorded_hash
            )
    last_final = (
        IndexedBlock.objects.filter(chain_id=cid, is_final=True).order_by("-number").first()
    )
    if last_final is not None:
        try:
            there = _hex(w3.eth.get_block(last_final.number)["hash"])
        except BlockNotFound:
            there = None
        if there is None or there.lower() != last_final.hash.lower():
            return ChainReset(
                cid,
                url,
                f"block {last_final.number}, final in this database as {last_final.hash}, is "
                + ("not there" if there is None else f"{there} there")
                + " (the node was restored from an older state)",
                recorded_hash,
            )
    return None


def chain_reset_check(*, w3: Web3 | None = None) -> ChainReset | None:
    """The guard that reconciliation and the chain tasks run first. Returns the reset with its one
    Alert open (updated, never duplicated, on every later check), or None, resolving the alert
    when the node is this database's chain again (its state file was restored)."""
    if not ChainGenesis.objects.exists() and not ContractDeployment.objects.exists():
        return None  # nothing deployed anywhere: no RPC call for a database with no chain yet
    w3 = w3 or chain.get_web3()
    cid = chain.chain_id(w3)
    return chain_reset_report(w3=w3, cid=cid, reset=chain_reset_find(w3=w3, cid=cid))


def chain_reset_report(*, w3: Web3, cid: int, reset: ChainReset | None) -> ChainReset | None:
    """What chain_reset_check does with what chain_reset_find saw, for a caller that already
    looked: opens or updates the one Alert, or resolves it (and records the genesis of a
    database from before it was recorded) when there is no reset."""
    now = timezone.now()
    open_alerts = Alert.objects.filter(
        kind=CHAIN_RESET_ALERT, resolved_at__isnull=True, detail__chain_id=cid
    )
    if reset is None:
        if not ChainGenesis.objects.filter(chain_id=cid).exists() and (
            ContractDeployment.objects.filter(chain_id=cid).exists()
        ):
            # A database from before genesis was recorded, on a chain that still has our code.
            chain_genesis_record(w3=w3, cid=cid)
        if open_alerts.exists():
            open_alerts.update(resolved_at=now)
            logger.warning("chain %s is this database's chain again: reset alert resolved", cid)
        return None
    detail = {"chain_id": cid, "url": reset.url, "reason": reset.reason}
    if Alert.objects.filter(fingerprint=reset.fingerprint, resolved_at__isnull=True).update(
        last_seen_at=now, message=reset.message, detail=detail
    ):
        return reset
    try:
        with transaction.atomic():
            Alert.objects.create(
                kind=CHAIN_RESET_ALERT,
                fingerprint=reset.fingerprint,
                message=reset.message,
                detail=detail,
                last_seen_at=now,
            )
        logger.error("%s", reset.message)
    except IntegrityError:
        pass  # an overlapping check opened it first
    return reset
