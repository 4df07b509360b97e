"""The indexer: the only way the database learns that money moved.

One run (beat, every few seconds):
  1. reorg check: every stored, not yet final block hash is compared with the node's; from the
     lowest mismatch up, blocks and (non-final) events are deleted and the cursors rewound;
  2. scan: per contract, eth_getLogs from the cursor + 1 to the head (bounded ranges); each log
     is stored once (unique chain id + tx hash + log index) with block number and hash, and the
     cursor moves in the same database transaction;
  3. finality: events with CHAIN_CONFIRMATIONS confirmations become final and only then apply
     their effects (payments.services.chain_event_finalize): order funded → active, settled,
     stakes, slashes, rewards. Effects never need undoing because a reorg deeper than the
     confirmation depth is refused, not followed.
Chain calls happen outside database transactions; two overlapping runs are harmless because a
cursor moves only if it still holds the value the run started from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from eth_utils import event_abi_to_log_topic
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import BlockNotFound

from contracts import chain

logger = logging.getLogger(__name__)

INDEXED_CONTRACTS = {
    "escrow": (
        "LeaseFunded",
        "LeaseStarted",
        "LeaseSettled",
        "LeaseFailed",
        "LeaseReclaimed",
    ),
    "staking": (
        "Staked",
        "UnstakeRequested",
        "Withdrawn",
        "Slashed",
        "Rewarded",
        "RewardsFunded",
    ),
}


class DeepReorg(chain.ChainError):
    """A block the indexer already treated as final changed: a human has to look."""


@dataclass
class IndexResult:
    stored: int = 0
    finalized: int = 0
    rewound_to: int | None = None
    heads: dict[str, int] = field(default_factory=dict)


def _hex(value) -> str:
    return HexBytes(value).to_0x_hex()


def _jsonable(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)  # uint256 does not fit a JSON number
    if isinstance(value, bytes | bytearray):
        return _hex(value)
    return value


def _topics(contract: Contract, names: tuple[str, ...]) -> dict[bytes, str]:
    by_topic = {}
    for item in contract.abi:
        if item["type"] == "event" and item["name"] in names:
            by_topic[event_abi_to_log_topic(item)] = item["name"]
    return by_topic


def _check_reorg(w3: Web3, cid: int) -> int | None:
    """Returns the fork point (last block still agreeing) after rewinding, or None."""
    from marketplace.payments.models import ChainEvent, IndexedBlock, IndexerCursor

    stored = list(IndexedBlock.objects.filter(chain_id=cid, is_final=False).order_by("number"))
    if not stored:
        return None
    lowest_bad = None
    for block in stored:
        try:
            actual = _hex(w3.eth.get_block(block.number)["hash"])
        except BlockNotFound:
            actual = None  # the chain got shorter
        if actual != block.hash:
            lowest_bad = block.number
            break
    if lowest_bad is None:
        return None
    fork = lowest_bad - 1
    with transaction.atomic():
        if ChainEvent.objects.filter(chain_id=cid, block_number__gt=fork, is_final=True).exists():
            raise DeepReorg(f"chain {cid} reorganised below final events (fork at {fork})")
        deleted, _ = ChainEvent.objects.filter(chain_id=cid, block_number__gt=fork).delete()
        IndexedBlock.objects.filter(chain_id=cid, number__gt=fork).delete()
        IndexerCursor.objects.filter(chain_id=cid, last_block__gt=fork).update(last_block=fork)
    logger.warning("chain %s reorg: rewound to block %s, dropped %s events", cid, fork, deleted)
    return fork


def _scan(w3: Web3, cid: int, name: str, head: int) -> int:
    from marketplace.payments.models import (
        ChainEvent,
        ContractDeployment,
        IndexedBlock,
        IndexerCursor,
    )

    deployment = ContractDeployment.objects.filter(chain_id=cid, name=name).first()
    if deployment is None:
        return 0
    contract = chain.contract(name, w3)
    cursor, _ = IndexerCursor.objects.get_or_create(
        chain_id=cid,
        address=deployment.address,
        defaults={"name": name, "last_block": deployment.block_number - 1},
    )
    topics = _topics(contract, INDEXED_CONTRACTS[name])
    stored = 0
    start = cursor.last_block
    while start < head:
        to_block = min(head, start + settings.CHAIN_INDEXER_MAX_BLOCKS)
        logs = w3.eth.get_logs(
            {"address": contract.address, "fromBlock": start + 1, "toBlock": to_block}
        )
        rows, blocks = [], {}
        for log in logs:
            event_name = topics.get(bytes(log["topics"][0])) if log["topics"] else None
            if event_name is None:
                continue  # admin events (fee, operator changes) carry no money
            decoded = getattr(contract.events, event_name)().process_log(log)
            args = {k: _jsonable(v) for k, v in decoded["args"].items()}
            block_hash = _hex(log["blockHash"])
            blocks[log["blockNumber"]] = block_hash
            rows.append(
                ChainEvent(
                    chain_id=cid,
                    contract=name,
                    address=contract.address,
                    name=event_name,
                    tx_hash=_hex(log["transactionHash"]),
                    log_index=log["logIndex"],
                    block_number=log["blockNumber"],
                    block_hash=block_hash,
                    args=args,
                    lease_id=args.get("leaseId", ""),
                    account=args.get("provider", ""),
                )
            )
        if to_block not in blocks:
            # The range end's hash is what the next run checks for a reorg.
            blocks[to_block] = _hex(w3.eth.get_block(to_block)["hash"])
        with transaction.atomic():
            moved = IndexerCursor.objects.filter(pk=cursor.pk, last_block=start).update(
                last_block=to_block
            )
            if not moved:
                # A concurrent run got here first (or a rewind moved the cursor): its view wins.
                transaction.set_rollback(True)
                return stored
            ChainEvent.objects.bulk_create(rows, ignore_conflicts=True)
            existing = set(
                IndexedBlock.objects.filter(chain_id=cid, number__in=blocks).values_list(
                    "number", flat=True
                )
            )
            IndexedBlock.objects.bulk_create(
                [
                    IndexedBlock(chain_id=cid, number=n, hash=h)
                    for n, h in blocks.items()
                    if n not in existing
                ],
                ignore_conflicts=True,
            )
        stored += len(rows)
        start = to_block
    return stored


def _finalize(cid: int, head: int) -> int:
    from marketplace.payments.models import ChainEvent, IndexedBlock
    from marketplace.payments.services import chain_event_finalize

    # A block in the head has one confirmation.
    safe = head - settings.CHAIN_CONFIRMATIONS + 1
    finalized = 0
    ids = ChainEvent.objects.filter(
        chain_id=cid, is_final=False, block_number__lte=safe
    ).values_list("pk", flat=True)
    for event_id in list(ids):  # ordered by (block, log index): Meta.ordering
        if chain_event_finalize(event_id=event_id):
            finalized += 1
    IndexedBlock.objects.filter(chain_id=cid, is_final=False, number__lte=safe).update(
        is_final=True
    )
    return finalized


def index(w3: Web3 | None = None) -> IndexResult:
    """One indexer run; safe to call concurrently and as often as wanted."""
    w3 = w3 or chain.get_web3()
    cid = chain.chain_id(w3)
    result = IndexResult()
    result.rewound_to = _check_reorg(w3, cid)
    head = w3.eth.block_number
    for name in INDEXED_CONTRACTS:
        result.stored += _scan(w3, cid, name, head)
    result.finalized = _finalize(cid, head)
    return result
