"""Reconciliation: does the database agree with the chain about every unit of money?

What is compared, for our deployment on the connected chain:
  - escrow, per order: the funded amount and status (LeaseEscrow.getLease) against the order's
    state; for a settled order, the split in the chain's own LeaseSettled / LeaseFailed log
    (provider, fee, refund) against the order's amount_owed and escrow_amount;
  - escrow, per lease the chain knows and the database does not (a LeaseFunded log with no order);
  - escrow credits, per account (every renter and provider of a deposit, every account that
    withdrew, every account with a Credit row): LeaseEscrow.credits(account) against the Credit
    row, and LeaseEscrow.accruedFees() against the AccruedFees row;
  - escrow token balance (token.balanceOf(escrow)) against what the database says the escrow
    holds: the leases it holds as funded and not yet settled + all credits + accrued fees;
  - stakes: ProviderStaking.stakeOf(address) (staked and pending) against the Stake row, for every
    address with a stake row, a provider wallet, or a staking log;
  - slashes and rewards: the chain's Slashed / Rewarded logs against the Slash / Reward rows, both
    ways, with amount, address and report hash.
The chain side is read from the node (view calls and eth_getLogs), never from the database's
indexed copy, so a lost or altered row shows up.

Before anything is compared, the node must be the chain this database belongs to (genesis.py): a
reset chain is reported as that one fact, not as a difference per lease and stake.

All chain reads are made AT the last block the indexer has made final. The database learns
about money only from final events, so at that block the two must agree exactly, and a funding
or settlement still inside the confirmation window is not a false difference.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from eth_utils import event_abi_to_log_topic
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import Web3RPCError

from marketplace.core.models import Alert
from marketplace.orders.models import Order
from marketplace.payments import chain
from marketplace.payments.genesis import ChainReset, chain_reset_check
from marketplace.payments.indexer import INDEXED_CONTRACTS
from marketplace.payments.models import (
    AccruedFees,
    ChainEvent,
    ContractDeployment,
    Credit,
    IndexerCursor,
    Reward,
    Slash,
    Stake,
)
from marketplace.providers.models import Provider

logger = logging.getLogger(__name__)

# LeaseEscrow.Status, in declaration order.
ESCROW_STATUS = ("none", "funded", "started", "settled", "failed", "reclaimed")
BPS = 10_000
ALERT_KIND_PREFIX = "reconcile"

State = Order.State
# States in which the database holds the order's deposit in escrow (with a final LeaseFunded).
_FUNDED_STATES = (State.FUNDED, State.STARTING, State.ACTIVE, State.COMPLETED, State.FAILED)


@dataclass(frozen=True)
class Difference:
    kind: str  # escrow_status, escrow_amount, escrow_split, escrow_unknown_lease, escrow_balance,
    # escrow_credit, escrow_fees, stake, slash_missing, slash_extra, slash_mismatch, ...
    subject: str  # what it is about: "order 12 lease 0xab…", "wallet 0x…"
    message: str
    detail: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def fingerprint(self) -> str:
        # The problem's identity: the same kind on the same subject is the same problem even if
        # amounts moved meanwhile (one alert, updated, not a new one).
        return hashlib.sha256(f"{self.kind}|{self.subject}".encode()).hexdigest()

    def line(self) -> str:
        return f"{self.kind}: {self.subject}: {self.message}"


@dataclass
class ReconcileResult:
    chain_id: int
    block: int | None  # the block the chain was read at; None when nothing is deployed/indexed
    differences: list[Difference]
    reset: ChainReset | None = None  # the node is not this database's chain: nothing compared


# ------------------------------------------------------------------------------ chain reads


def _final_block(cid: int, w3: Web3) -> int | None:
    """The last block whose events the database holds as final, for every indexed contract."""
    deployments = {
        d.name: d
        for d in ContractDeployment.objects.filter(chain_id=cid, name__in=INDEXED_CONTRACTS)
    }
    if not deployments:
        return None
    cursors = {
        c.address: c.last_block
        for c in IndexerCursor.objects.filter(
            chain_id=cid, address__in=[d.address for d in deployments.values()]
        )
    }
    # A contract never indexed counts as indexed up to just before its deployment.
    last = min(cursors.get(d.address, d.block_number - 1) for d in deployments.values())
    return min(last - settings.CHAIN_CONFIRMATIONS + 1, w3.eth.block_number)


def _logs(w3: Web3, contract, names: tuple[str, ...], from_block: int, to_block: int) -> list:
    """Decoded logs of `names`, read from the node in bounded ranges, in chain order."""
    wanted = {name: getattr(contract.events, name)() for name in names}
    topics = {
        event_abi_to_log_topic(item): item["name"]
        for item in contract.abi
        if item["type"] == "event" and item["name"] in names
    }
    out = []
    start = from_block
    while start <= to_block:
        end = min(to_block, start + settings.CHAIN_INDEXER_MAX_BLOCKS - 1)
        for log in w3.eth.get_logs(
            {"address": contract.address, "fromBlock": start, "toBlock": end}
        ):
            name = topics.get(bytes(log["topics"][0])) if log["topics"] else None
            if name is not None:
                out.append(wanted[name].process_log(log))
        start = end + 1
    return out


def _hex(value) -> str:
    return HexBytes(value).to_0x_hex()


# ------------------------------------------------------------------------------ escrow


def _split(amount_owed: int, fee_bps: int, escrow_amount: int) -> dict[str, int]:
    # The contract's own arithmetic (LeaseEscrow._split), on what the database billed.
    fee = amount_owed * fee_bps // BPS
    return {"provider": amount_owed - fee, "fee": fee, "refund": escrow_amount - amount_owed}


def _lease_subject(order: Order) -> str:
    return f"order {order.pk} lease {order.lease_id[:10]}…"


def _escrow_differences(w3: Web3, cid: int, block: int) -> list[Difference]:
    diffs: list[Difference] = []
    escrow = chain.contract("escrow", w3)
    token = chain.contract("token", w3)
    deployed_at = ContractDeployment.objects.get(chain_id=cid, name="escrow").block_number

    logs = _logs(
        w3,
        escrow,
        ("LeaseFunded", "LeaseSettled", "LeaseFailed", "LeaseReclaimed", "CreditWithdrawn"),
        deployed_at,
        block,
    )
    funded_on_chain: dict[str, int] = {}
    closes: dict[str, object] = {}
    accounts: set[str] = set()  # every account the escrow may hold a credit for
    for log in logs:
        if log["event"] == "CreditWithdrawn":
            accounts.add(Web3.to_checksum_address(log["args"]["account"]))
            continue
        lease = _hex(log["args"]["leaseId"])
        if log["event"] == "LeaseFunded":
            funded_on_chain[lease] = int(log["args"]["amount"])
            accounts.add(Web3.to_checksum_address(log["args"]["renter"]))
            accounts.add(Web3.to_checksum_address(log["args"]["provider"]))
        else:
            closes[lease] = log

    # What the database knows of deposits it could not tie to an order's terms (flagged): the
    # money is in escrow all the same and counts towards the balance it expects.
    db_final = defaultdict(set)
    flagged_amount: dict[str, int] = {}
    for ev in ChainEvent.objects.filter(chain_id=cid, contract="escrow", is_final=True).only(
        "name", "lease_id", "args", "flagged"
    ):
        db_final[ev.lease_id].add(ev.name)
        if ev.name == "LeaseFunded" and ev.flagged:
            flagged_amount[ev.lease_id] = int(ev.args["amount"])

    expected_balance = 0
    known = set()
    for order in Order.objects.order_by("pk").iterator():
        lease = order.lease_id.lower()
        known.add(lease)
        subject = _lease_subject(order)
        db_events = db_final.get(lease, set())
        closed_in_db = order.state == State.SETTLED or "LeaseReclaimed" in db_events
        if order.state in _FUNDED_STATES or order.state == State.SETTLED:
            db_amount = order.escrow_amount
        elif order.state == State.CANCELLED and lease in flagged_amount:
            db_amount = flagged_amount[lease]
        elif order.state == State.CANCELLED and "LeaseFunded" in db_events:
            db_amount = order.escrow_amount
        else:
            db_amount = flagged_amount.get(lease, 0)

        (_, _, amount, _, _, _, fee_bps, status_i) = escrow.functions.getLease(
            bytes(HexBytes(lease))
        ).call(block_identifier=block)
        status = ESCROW_STATUS[status_i]

        if db_amount == 0:
            allowed = {"none"}
        elif not closed_in_db:
            allowed = {"funded", "started"}
            expected_balance += db_amount
        elif order.state == State.SETTLED:
            allowed = {"settled", "failed"}
        else:
            allowed = {"reclaimed"}
        if status not in allowed:
            diffs.append(
                Difference(
                    "escrow_status",
                    subject,
                    f"escrow status on chain is {status}; the database's order is {order.state}"
                    f" (expects {' or '.join(sorted(allowed))})",
                    {"order_id": order.pk, "chain": status, "db_state": order.state},
                )
            )
        if status != "none" and db_amount and int(amount) != db_amount:
            diffs.append(
                Difference(
                    "escrow_amount",
                    subject,
                    f"funded {int(amount)} units on chain, the database says {db_amount}",
                    {"order_id": order.pk, "chain": int(amount), "db": db_amount},
                )
            )
        close = closes.get(lease)
        if (
            order.state == State.SETTLED
            and close is not None
            and close["event"] != "LeaseReclaimed"
        ):
            args = close["args"]
            on_chain = {
                "provider": int(args["providerAmount"]),
                "fee": int(args["feeAmount"]),
                "refund": int(args["refundAmount"]),
            }
            expected = _split(order.amount_owed or 0, int(fee_bps), order.escrow_amount)
            if on_chain != expected:
                diffs.append(
                    Difference(
                        "escrow_split",
                        subject,
                        "settled on chain as provider {provider} / fee {fee} / refund {refund}; "
                        "the database billed ".format(**on_chain)
                        + f"{order.amount_owed} units, i.e. provider {expected['provider']} / "
                        f"fee {expected['fee']} / refund {expected['refund']}",
                        {
                            "order_id": order.pk,
                            "chain": on_chain,
                            "db": expected,
                            "tx_hash": _hex(close["transactionHash"]),
                        },
                    )
                )

    for lease, amount in funded_on_chain.items():
        if lease in known:
            continue
        closed = lease in closes
        if "LeaseReclaimed" not in db_final.get(lease, set()):
            # Indexed but tied to no order (flagged): it still sits in escrow.
            expected_balance += flagged_amount.get(lease, 0)
        if lease in flagged_amount and lease in db_final:
            continue  # indexed and flagged: the database knows this deposit has no order
        diffs.append(
            Difference(
                "escrow_unknown_lease",
                f"lease {lease[:10]}…",
                f"funded with {amount} units on chain"
                + (" (since closed)" if closed else "")
                + "; no order and no indexed deposit in the database",
                {"lease_id": lease, "amount": amount},
            )
        )

    credit_diffs, owed = _credit_differences(escrow, cid, block, accounts)
    diffs += credit_diffs
    open_leases = expected_balance
    expected_balance += owed
    balance = int(token.functions.balanceOf(escrow.address).call(block_identifier=block))
    if balance != expected_balance:
        diffs.append(
            Difference(
                "escrow_balance",
                f"escrow {escrow.address}",
                f"holds {balance} token units on chain; the database's funded, unsettled leases "
                f"({open_leases}), credits and accrued fees ({owed}) add up to "
                f"{expected_balance} (off by {balance - expected_balance:+d})",
                {"chain": balance, "db": expected_balance},
            )
        )
    return diffs


def _credit_differences(
    escrow, cid: int, block: int, accounts: set[str]
) -> tuple[list[Difference], int]:
    """Each account's credit and the accrued fees, chain against database; also returns what the
    database says the escrow owes in all (credits + fees), for the balance check."""
    diffs: list[Difference] = []
    rows = {
        Web3.to_checksum_address(c.address): int(c.amount)
        for c in Credit.objects.filter(chain_id=cid)
    }
    for address in sorted(accounts | set(rows)):
        on_chain = int(escrow.functions.credits(address).call(block_identifier=block))
        db = rows.get(address, 0)
        if on_chain != db:
            diffs.append(
                Difference(
                    "escrow_credit",
                    f"account {address}",
                    f"credited {on_chain} units on chain; the database has {db}",
                    {"chain": on_chain, "db": db},
                )
            )
    fees_row = AccruedFees.objects.filter(chain_id=cid).first()
    db_fees = int(fees_row.amount) if fees_row else 0
    chain_fees = int(escrow.functions.accruedFees().call(block_identifier=block))
    if chain_fees != db_fees:
        diffs.append(
            Difference(
                "escrow_fees",
                f"escrow {escrow.address}",
                f"accrued fees are {chain_fees} units on chain; the database has {db_fees}",
                {"chain": chain_fees, "db": db_fees},
            )
        )
    return diffs, sum(rows.values()) + db_fees


# ------------------------------------------------------------------------------ staking


def _staking_differences(w3: Web3, cid: int, block: int) -> list[Difference]:
    diffs: list[Difference] = []
    staking = chain.contract("staking", w3)
    deployed_at = ContractDeployment.objects.get(chain_id=cid, name="staking").block_number
    logs = _logs(
        w3,
        staking,
        ("Staked", "UnstakeRequested", "Withdrawn", "Slashed", "Rewarded"),
        deployed_at,
        block,
    )

    addresses = {Web3.to_checksum_address(log["args"]["provider"]) for log in logs}
    rows = {Web3.to_checksum_address(s.address): s for s in Stake.objects.filter(chain_id=cid)}
    addresses |= set(rows)
    for wallet in Provider.objects.exclude(wallet_address="").values_list(
        "wallet_address", flat=True
    ):
        addresses.add(Web3.to_checksum_address(wallet))
    for address in sorted(addresses):
        staked, pending, _ = staking.functions.stakeOf(address).call(block_identifier=block)
        row = rows.get(address)
        db = (int(row.staked), int(row.pending)) if row else (0, 0)
        if (int(staked), int(pending)) != db:
            diffs.append(
                Difference(
                    "stake",
                    f"wallet {address}",
                    f"staked {staked} + pending {pending} on chain; the database has staked "
                    f"{db[0]} + pending {db[1]}",
                    {"chain": [int(staked), int(pending)], "db": list(db)},
                )
            )

    for name, model, label in (("Slashed", Slash, "slash"), ("Rewarded", Reward, "reward")):
        on_chain = {
            (_hex(log["transactionHash"]), log["logIndex"]): log
            for log in logs
            if log["event"] == name
        }
        in_db = {
            (row.event.tx_hash, row.event.log_index): row
            # Rows of events after the block read are the chain's future, not a difference.
            for row in model.objects.filter(
                event__chain_id=cid, event__block_number__lte=block
            ).select_related("event")
        }
        for key in sorted(set(on_chain) | set(in_db)):
            log, row = on_chain.get(key), in_db.get(key)
            subject = f"tx {key[0][:10]}… log {key[1]}"
            if row is None:
                args = log["args"]
                diffs.append(
                    Difference(
                        f"{label}_missing",
                        subject,
                        f"{label} of {args['amount']} units from {args['provider']} (report "
                        f"{_hex(args['reportHash'])[:10]}…) is on chain, not in the database",
                        {"tx_hash": key[0], "log_index": key[1], "amount": int(args["amount"])},
                    )
                )
                continue
            if log is None:
                diffs.append(
                    Difference(
                        f"{label}_extra",
                        subject,
                        f"the database has a {label} of {int(row.amount)} units for "
                        f"{row.address} that is not on chain",
                        {"tx_hash": key[0], "log_index": key[1], "amount": int(row.amount)},
                    )
                )
                continue
            args = log["args"]
            chain_side = (
                int(args["amount"]),
                Web3.to_checksum_address(args["provider"]),
                _hex(args["reportHash"]).lower(),
            )
            db_side = (
                int(row.amount),
                Web3.to_checksum_address(row.address),
                row.report_hash.lower(),
            )
            if chain_side != db_side:
                diffs.append(
                    Difference(
                        f"{label}_mismatch",
                        subject,
                        f"on chain {chain_side[0]} units from {chain_side[1]} report "
                        f"{chain_side[2][:10]}…; the database has {db_side[0]} units from "
                        f"{db_side[1]} report {db_side[2][:10]}…",
                        {"tx_hash": key[0], "chain": list(chain_side), "db": list(db_side)},
                    )
                )
    return diffs


# ------------------------------------------------------------------------------ entry points


def reconcile(*, w3: Web3 | None = None, block: int | None = None) -> ReconcileResult:
    """Every difference between the database and the chain, read at `block` (default: the last
    block the indexer has made final)."""
    w3 = w3 or chain.get_web3()
    cid = chain.chain_id(w3)
    reset = chain_reset_check(w3=w3)
    if reset is not None:
        return ReconcileResult(cid, None, [], reset=reset)
    if block is None:
        block = _final_block(cid, w3)
    if block is None:
        return ReconcileResult(cid, None, [])
    deployed = dict(
        ContractDeployment.objects.filter(chain_id=cid).values_list("name", "block_number")
    )
    diffs: list[Difference] = []
    try:
        if "escrow" in deployed and "token" in deployed and block >= deployed["escrow"]:
            diffs += _escrow_differences(w3, cid, block)
        if "staking" in deployed and block >= deployed["staking"]:
            diffs += _staking_differences(w3, cid, block)
    except Web3RPCError as exc:
        # Anvil loaded from its state file keeps the blocks but not the state at each of them:
        # until the indexer has made a block after the restart final, there is no state to
        # read at the block the database is final at. Seconds on a live node.
        if "BlockOutOfRange" not in chain.error_message(exc):
            raise
        raise chain.TransientChainError(
            f"the node has no state at block {block} (restarted from a state file?); it will "
            "once the indexer has made a block after the restart final: retry in a few seconds"
        ) from exc
    return ReconcileResult(cid, block, diffs)


def reconcile_alert(*, result: ReconcileResult) -> dict[str, int]:
    """Opens one admin Alert per difference not already alerted on, refreshes the ones still
    seen, and resolves the reconciliation alerts whose difference is gone."""
    if result.reset is not None:
        # Nothing was compared: the open alerts are neither seen nor gone (the reset has its own).
        return {"opened": 0, "seen": 0, "resolved": 0}
    now = timezone.now()
    opened = seen = resolved = 0
    current = {d.fingerprint: d for d in result.differences}
    for fp, diff in current.items():
        kind = f"{ALERT_KIND_PREFIX}:{diff.kind}"
        detail = {
            **diff.detail,
            "subject": diff.subject,
            "chain_id": result.chain_id,
            "block": result.block,
        }
        updated = Alert.objects.filter(fingerprint=fp, resolved_at__isnull=True).update(
            last_seen_at=now, message=diff.line(), detail=detail
        )
        if updated:
            seen += 1
            continue
        try:
            with transaction.atomic():
                Alert.objects.create(
                    kind=kind,
                    fingerprint=fp,
                    message=diff.line(),
                    detail=detail,
                    last_seen_at=now,
                )
            opened += 1
        except IntegrityError:
            seen += 1  # an overlapping run opened it first
    gone = Alert.objects.filter(
        kind__startswith=f"{ALERT_KIND_PREFIX}:", resolved_at__isnull=True
    ).exclude(fingerprint__in=list(current))
    resolved = gone.update(resolved_at=now)
    if opened:
        logger.warning("reconciliation: %s new difference(s) alerted", opened)
    return {"opened": opened, "seen": seen, "resolved": resolved}
