"""The indexer: the only way the database learns that money moved.

One run (beat, every few seconds):
  1. reorg check: every stored, not yet final block hash is compared with the node's; from the
     last block that still agrees, blocks and (non-final) events above it are deleted and the
     cursors rewound;
  2. scan: one eth_getLogs per block range for all indexed contracts and their money events
     together, from the lowest cursor + 1 to the head. The range starts at
     CHAIN_INDEXER_MAX_BLOCKS and halves while the node refuses it as too large (public nodes cap
     block spans or result counts), growing back after each success. A range's logs are stored
     with one bulk insert that ignores rows already there (unique chain id + tx hash + log
     index), with their block numbers and hashes, and the cursors move in the same database
     transaction;
  3. finality: events with CHAIN_CONFIRMATIONS confirmations become final and only then apply
     their effects (payments/services/chain_events.py): order funded → active, settled,
     escrow credits and accrued fees, stakes, slashes, rewards. Effects apply in chain order,
     FINALIZE_BATCH events per database transaction: a batch commits whole or not at all.
     Effects never need undoing because a reorg deeper than the confirmation depth is refused,
     not followed.
Chain calls happen outside database transactions; two overlapping runs are harmless because a
cursor moves only if it still holds the value the run started from, and an event becomes final
under its row lock, in one batch only.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from eth_utils import event_abi_to_log_topic
from hexbytes import HexBytes
from requests.exceptions import Timeout
from web3 import Web3
from web3.exceptions import BlockNotFound, Web3RPCError
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint

from marketplace.payments import chain
from marketplace.payments.models import ChainEvent, ContractDeployment, IndexedBlock, IndexerCursor
from marketplace.payments.services.chain_events import chain_events_finalize

logger = logging.getLogger(__name__)

INDEXED_CONTRACTS = {
    "escrow": (
        "LeaseFunded",
        "LeaseStarted",
        "LeaseSettled",
        "LeaseFailed",
        "LeaseReclaimed",
        "CreditWithdrawn",
        "FeesWithdrawn",
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

# Events whose effects share one database transaction. Large enough that the per-transaction cost
# (commit, fsync, the lookups a batch shares) vanishes per event, small enough that a batch holds
# its row locks briefly and a failing event's retry redoes little.
FINALIZE_BATCH = 1_000

# How nodes say "this eth_getLogs asks too much" (block span, result count, response size, time):
# geth/Infura "query returned more than 10000 results", Infura "range 1000000 exceeds limit of
# 10000", Alchemy "Log response size exceeded", reth "query exceeds max block range 100000",
# others "eth_getLogs range is too large, max is 1k blocks", "is limited to 1024 block range".
_RANGE_REFUSED = re.compile(
    r"more than \d+ results|exceed|too large|too big|range limit|block range|max results"
    r"|size exceeded|limited to|query timeout",
    re.IGNORECASE,
)
_THROTTLED = re.compile(r"\brate\b|too many requests|capacity", re.IGNORECASE)

_clock = time.monotonic  # a run's time budget; tests replace it


class DeepReorg(chain.ChainError):
    """A block the indexer already treated as final changed: a human has to look."""


class RangeRefused(chain.ChainError):
    """The node refused an eth_getLogs range as too large, even for a single block."""


@dataclass
class IndexResult:
    stored: int = 0
    finalized: int = 0
    rewound_to: int | None = None
    heads: dict[str, int] = field(default_factory=dict)


def _hex(value) -> str:
    return HexBytes(value).to_0x_hex()


@dataclass
class _Watched:
    """One indexed contract as the scan sees it."""

    name: str
    address: str
    cursor_pk: int
    last_block: int
    events: dict[bytes, dict]  # topic0 → event ABI


def _watched(w3: Web3, cid: int) -> list[_Watched]:
    watched = []
    for deployment in ContractDeployment.objects.filter(
        chain_id=cid, name__in=INDEXED_CONTRACTS
    ).order_by("pk"):
        contract = chain.contract(deployment.name, w3)
        cursor, _ = IndexerCursor.objects.get_or_create(
            chain_id=cid,
            address=deployment.address,
            defaults={"name": deployment.name, "last_block": deployment.block_number - 1},
        )
        events = {
            event_abi_to_log_topic(item): item
            for item in contract.abi
            if item["type"] == "event" and item["name"] in INDEXED_CONTRACTS[deployment.name]
        }
        watched.append(
            _Watched(deployment.name, contract.address, cursor.pk, cursor.last_block, events)
        )
    return watched


def _range_refused(exc: Exception) -> bool:
    if isinstance(exc, Timeout):
        return True  # a node that cannot answer a range in time may answer half of it
    if isinstance(exc, Web3RPCError | ValueError):
        message = str(exc)
        # "Request rate exceeded" is a throttle, not a size: a smaller range would not help.
        return bool(_RANGE_REFUSED.search(message)) and not _THROTTLED.search(message)
    return False


@dataclass(frozen=True, slots=True)
class _Log:
    address: str
    topics: tuple[bytes, ...]
    data: bytes
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


def _get_logs(w3: Web3, watched: list[_Watched], from_block: int, to_block: int) -> list[_Log]:
    """All money events of all watched contracts in one call; admin events (fee, operator
    changes) are left out by the node: they carry no money."""
    query = {
        "address": [w.address for w in watched],
        "topics": [sorted({HexBytes(t).to_0x_hex() for w in watched for t in w.events})],
        "fromBlock": hex(from_block),
        "toBlock": hex(to_block),
    }
    if not isinstance(w3.provider, JSONBaseProvider):  # eth-tester in the unit tests
        return [
            _Log(
                log["address"],
                tuple(bytes(t) for t in log["topics"]),
                bytes(log["data"]),
                log["blockNumber"],
                _hex(log["blockHash"]),
                _hex(log["transactionHash"]),
                log["logIndex"],
            )
            for log in w3.eth.get_logs(query)
        ]
    # A node's JSON as it is: web3's generic result formatting took a fifth of a run's time.
    response = w3.provider.make_request(RPCEndpoint("eth_getLogs"), [query])
    if "error" in response:
        raise Web3RPCError(str(response["error"]), rpc_response=response)
    return [
        _Log(
            log["address"],
            tuple(bytes.fromhex(t[2:]) for t in log["topics"]),
            bytes.fromhex(log["data"][2:]),
            int(log["blockNumber"], 16),
            log["blockHash"],
            log["transactionHash"],
            int(log["logIndex"], 16),
        )
        for log in response["result"]
        if not log.get("removed")
    ]


_WORD = 32
_ZERO_PAD = bytes(12)


class _Decoder:
    """Event arguments from raw logs as they are stored (addresses checksummed as web3 gives them,
    uint as decimal strings: uint256 does not fit a JSON number, bytes32 as 0x hex), read word by
    word: every argument of our money events is one static 32-byte word, and eth_abi's generic
    decoder was the largest cost of a run."""

    def __init__(self) -> None:
        self.shapes: dict[int, list] = {}
        self.addresses: dict[bytes, str] = {}

    def _shape(self, abi: dict) -> list:
        if id(abi) not in self.shapes:
            shape, topic, word = [], 1, 0
            for item in abi["inputs"]:
                type_ = item["type"]
                if not (type_ in ("address", "bool", "bytes32") or re.fullmatch(r"uint\d+", type_)):
                    raise ValueError(f"{abi['name']}.{item['name']}: {type_} is not one word")
                if item.get("indexed"):
                    shape.append((item["name"], type_, "topic", topic))
                    topic += 1
                else:
                    shape.append((item["name"], type_, "data", word))
                    word += 1
            self.shapes[id(abi)] = shape
        return self.shapes[id(abi)]

    def _address(self, word: bytes) -> str:
        if word[:12] != _ZERO_PAD:
            raise ValueError(f"not an address: 0x{word.hex()}")
        checksummed = self.addresses.get(word)
        if checksummed is None:
            checksummed = self.addresses[word] = Web3.to_checksum_address(word[12:])
        return checksummed

    def _value(self, type_: str, word: bytes):
        if type_ == "address":
            return self._address(word)
        if type_ == "bytes32":
            return "0x" + word.hex()
        value = int.from_bytes(word, "big")
        if type_ == "bool":
            if value > 1:
                raise ValueError(f"not a bool: {value}")
            return bool(value)
        if value >> int(type_[4:]):
            raise ValueError(f"{value} does not fit {type_}")
        return str(value)  # uint256 does not fit a JSON number

    def args(self, abi: dict, log: _Log) -> dict:
        shape = self._shape(abi)
        words = sum(1 for *_, where, _ in shape if where == "data")
        if len(log.data) != words * _WORD or len(log.topics) != len(shape) - words + 1:
            raise ValueError(f"{abi['name']} log of the wrong size in {log.tx_hash}")
        args = {}
        for name, type_, where, i in shape:
            word = log.topics[i] if where == "topic" else log.data[i * _WORD : (i + 1) * _WORD]
            args[name] = self._value(type_, word)
        return args


def _rows(
    decoder: _Decoder, cid: int, watched: list[_Watched], logs: list[_Log]
) -> tuple[list, dict[int, str]]:
    """ChainEvent rows for the logs each contract's cursor has not passed yet, and the hash of
    every block they come from."""
    by_address = {w.address.lower(): w for w in watched}
    rows, blocks = [], {}
    for log in logs:
        w = by_address.get(log.address.lower())
        if w is None or not log.topics or log.block_number <= w.last_block:
            continue
        abi = w.events.get(log.topics[0])
        if abi is None:
            continue
        args = decoder.args(abi, log)
        blocks[log.block_number] = log.block_hash
        rows.append(
            ChainEvent(
                chain_id=cid,
                contract=w.name,
                address=w.address,
                name=abi["name"],
                tx_hash=log.tx_hash,
                log_index=log.log_index,
                block_number=log.block_number,
                block_hash=log.block_hash,
                args=args,
                lease_id=args.get("leaseId", ""),
                # The wallet the event is about: a stake's provider, a withdrawal's account,
                # the treasury that was paid fees.
                account=args.get("provider") or args.get("account") or args.get("treasury", ""),
            )
        )
    return rows, blocks


def _store(
    cid: int, watched: list[_Watched], span: tuple[int, int], rows: list, blocks: dict
) -> int | None:
    """Stores one range's new rows and moves the cursors, all or nothing; returns how many rows
    were new. None when a concurrent run (or a rewind) moved a cursor first: its view wins."""
    from_block, to_block = span
    with transaction.atomic():
        for w in watched:
            if w.last_block >= to_block:
                continue
            moved = IndexerCursor.objects.filter(pk=w.cursor_pk, last_block=w.last_block).update(
                last_block=to_block
            )
            if not moved:
                transaction.set_rollback(True)
                return None
        # A re-scan (a rewind that re-reads agreeing blocks) inserts nothing; a run overlapping
        # this one is stopped by the unique key instead.
        known = set(
            ChainEvent.objects.filter(
                chain_id=cid, block_number__gte=from_block, block_number__lte=to_block
            ).values_list("tx_hash", "log_index")
        )
        rows = [r for r in rows if (r.tx_hash, r.log_index) not in known]
        ChainEvent.objects.bulk_create(rows, ignore_conflicts=True)
        IndexedBlock.objects.bulk_create(
            [IndexedBlock(chain_id=cid, number=n, hash=h) for n, h in blocks.items()],
            ignore_conflicts=True,
        )
    for w in watched:
        w.last_block = max(w.last_block, to_block)
    return len(rows)


def _scan(w3: Web3, cid: int, head: int, until: float) -> int:
    watched = _watched(w3, cid)
    if not watched:
        return 0
    decoder = _Decoder()
    most = settings.CHAIN_INDEXER_MAX_BLOCKS
    span = most
    stored = 0
    start = min(w.last_block for w in watched)
    while start < head and _clock() < until:
        to_block = min(head, start + span)
        try:
            logs = _get_logs(w3, watched, start + 1, to_block)
        except Exception as exc:
            if not _range_refused(exc):
                raise
            if to_block == start + 1:
                raise RangeRefused(f"the node refuses eth_getLogs for block {to_block}") from exc
            span = max(1, (to_block - start) // 2)
            logger.info("eth_getLogs %s..%s refused (%s); next %s", start + 1, to_block, exc, span)
            continue
        if any(not start < log.block_number <= to_block for log in logs):
            # A node answering outside the range asked for cannot be trusted with this one.
            raise chain.ChainError(f"eth_getLogs {start + 1}..{to_block} answered other blocks")
        rows, blocks = _rows(decoder, cid, watched, logs)
        if to_block not in blocks:
            # The range end's hash is what the next run checks for a reorg.
            blocks[to_block] = _hex(w3.eth.get_block(to_block)["hash"])
        new = _store(cid, watched, (start + 1, to_block), rows, blocks)
        if new is None:
            return stored
        stored += new
        start = to_block
        span = min(most, span * 2)
    return stored


def _check_reorg(w3: Web3, cid: int) -> int | None:
    """Returns the fork point (last block known to agree) after rewinding, or None."""
    stored = list(IndexedBlock.objects.filter(chain_id=cid, is_final=False).order_by("number"))
    if not stored:
        return None
    lowest_bad = None
    agreeing = None
    for block in stored:
        try:
            actual = _hex(w3.eth.get_block(block.number)["hash"])
        except BlockNotFound:
            actual = None  # the chain got shorter
        if actual != block.hash:
            lowest_bad = block.number
            break
        agreeing = block.number
    if lowest_bad is None:
        return None
    if agreeing is None:
        # Every block below the first unfinal one is final: the last stored of them must agree,
        # or the chain changed under effects already applied.
        final = (
            IndexedBlock.objects.filter(chain_id=cid, number__lt=lowest_bad)
            .order_by("-number")
            .first()
        )
        if final is not None:
            try:
                actual = _hex(w3.eth.get_block(final.number)["hash"])
            except BlockNotFound:
                actual = None
            if actual != final.hash:
                raise DeepReorg(f"chain {cid} reorganised below final block {final.number}")
            agreeing = final.number
    # A block hash commits to all its ancestors, so the chain agrees up to the last stored block
    # whose hash matched; the blocks between it and the first mismatch were never stored (they
    # held no event of ours) and may have been replaced by blocks that do: they are read again.
    fork = agreeing if agreeing is not None else lowest_bad - 1
    with transaction.atomic():
        if ChainEvent.objects.filter(chain_id=cid, block_number__gt=fork, is_final=True).exists():
            raise DeepReorg(f"chain {cid} reorganised below final events (fork at {fork})")
        deleted, _ = ChainEvent.objects.filter(chain_id=cid, block_number__gt=fork).delete()
        IndexedBlock.objects.filter(chain_id=cid, number__gt=fork).delete()
        IndexerCursor.objects.filter(chain_id=cid, last_block__gt=fork).update(last_block=fork)
    logger.warning("chain %s reorg: rewound to block %s, dropped %s events", cid, fork, deleted)
    return fork


def _finalize(cid: int, head: int, until: float) -> int:
    # A block in the head has one confirmation.
    safe = head - settings.CHAIN_CONFIRMATIONS + 1
    finalized = 0
    since = 0
    while True:
        if _clock() >= until:
            return finalized  # the next run goes on from here
        # From the last batch's block on: events become final in chain order, so none is left
        # below it, and the index on block_number need not walk past every final event again.
        pending = list(
            ChainEvent.objects.filter(
                chain_id=cid, is_final=False, block_number__gte=since, block_number__lte=safe
            )
            .order_by("block_number", "log_index")
            .values_list("pk", "block_number")[:FINALIZE_BATCH]
        )
        done = chain_events_finalize(event_ids=[pk for pk, _ in pending]) if pending else 0
        if not done:
            break  # nothing left, or a concurrent run holds these: it applies them
        finalized += done
        since = pending[-1][1]
    IndexedBlock.objects.filter(chain_id=cid, is_final=False, number__lte=safe).update(
        is_final=True
    )
    return finalized


def index(w3: Web3 | None = None, *, seconds: float | None = None) -> IndexResult:
    """One indexer run; safe to call concurrently and as often as wanted. With `seconds`, it
    stops starting new ranges and batches after that long (a catch-up from far behind then
    spreads over several runs, each ending normally, instead of being killed mid-way)."""
    w3 = w3 or chain.get_web3()
    until = _clock() + seconds if seconds is not None else math.inf
    cid = chain.chain_id(w3)
    result = IndexResult()
    result.rewound_to = _check_reorg(w3, cid)
    head = w3.eth.block_number
    result.stored = _scan(w3, cid, head, until)
    result.finalized = _finalize(cid, head, until)
    return result
