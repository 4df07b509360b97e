"""Reads for the market dashboard. Every query aggregates in the database and is bounded: by a
time window, by a LIMIT, or by the small number of states, kinds and precisions."""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    Count,
    DecimalField,
    Exists,
    F,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Window,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, RowNumber, TruncDay
from django.utils import timezone

from marketplace.benchmarks.models import BenchmarkJob, MachineUptime, Verdict
from marketplace.benchmarks.services import NO_FAULT_REASONS
from marketplace.core.errors import NotFoundError
from marketplace.core.models import Alert
from marketplace.dashboard.models import MachineStaffAction, MarketSnapshot
from marketplace.listings.models import Listing
from marketplace.orders.models import Order
from marketplace.payments.models import ChainEvent, ChainTransaction, Stake
from marketplace.providers.models import Machine

Job = BenchmarkJob.State
DECIDED = (Job.VERIFIED, Job.REJECTED, Job.EXPIRED)
# Machines that answer heartbeats and are not barred: what "online" means on the dashboard.
REACHABLE_STATES = (Machine.State.REGISTERED, Machine.State.VERIFIED, Machine.State.LISTED)
MAX_MODELS = 12
MAX_SNAPSHOTS = 2016  # a week of 5-minute snapshots; a longer window would be downsampled
MAX_MACHINE_JOBS = 300
MAX_REJECTIONS = 50


def _escrowed_orders():
    # Funded on chain and not yet settled: the money is in the escrow contract, whatever the
    # lease's state (a completed or cancelled lease keeps it there until settlement confirms).
    return Order.objects.filter(funded_at__isnull=False).exclude(state=Order.State.SETTLED)


# Offline, and barred again when its heartbeats resume: for an operator, a suspended machine.
SUSPENDED_OFFLINE = Q(state=Machine.State.OFFLINE, resume_state=Machine.State.SUSPENDED)
SUSPENDED = Q(state=Machine.State.SUSPENDED) | SUSPENDED_OFFLINE


def machines_by_state() -> dict[str, int]:
    """Machines per state, where a suspended machine that is also offline counts as suspended:
    it stays barred when it returns (resume_state), and an operator counting suspensions must
    not lose it because its heartbeats stopped."""
    suspended_offline = SUSPENDED_OFFLINE
    rows = (
        Machine.objects.exclude(suspended_offline)
        .values_list("state")
        .annotate(n=Count("pk"))
        .values_list("state", "n")
    )
    by_state = dict(rows)
    also_suspended = Machine.objects.filter(suspended_offline).count()
    if also_suspended:
        by_state[Machine.State.SUSPENDED] = (
            by_state.get(Machine.State.SUSPENDED, 0) + also_suspended
        )
    return by_state


def market_now(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    by_state = machines_by_state()
    alive_since = now - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
    online = Machine.objects.filter(
        state__in=REACHABLE_STATES, last_heartbeat_at__gte=alive_since
    ).count()
    escrow = _escrowed_orders().aggregate(amount=Sum("escrow_amount"), orders=Count("pk"))
    return {
        "machines_by_state": by_state,
        "machines_total": sum(by_state.values()),
        "machines_online": online,
        "escrow_amount": int(escrow["amount"] or 0),
        "escrow_orders": escrow["orders"],
    }


def price_per_tflop_by_model(*, limit: int = MAX_MODELS) -> list[dict[str, Any]]:
    """Min, median and max of price per verified TFLOP-hour (token units) over searchable
    listings, per accelerator model; the `limit` models with the most listings."""
    priced = Listing.objects.filter(is_searchable=True, price_per_tflop_hour__isnull=False)
    rows = list(
        priced.values("model")
        .annotate(
            listings=Count("pk"),
            low=Min("price_per_tflop_hour"),
            high=Max("price_per_tflop_hour"),
        )
        .order_by("-listings", "model")[:limit]
    )
    for row in rows:
        # No portable MEDIAN aggregate (SQLite has none): read the middle one or two values by
        # OFFSET, so at most two rows per model leave the database.
        count = row["listings"]
        middle = list(
            priced.filter(model=row["model"])
            .order_by("price_per_tflop_hour")
            .values_list("price_per_tflop_hour", flat=True)[(count - 1) // 2 : count // 2 + 1]
        )
        row["median"] = round(sum(middle) / len(middle))
    rows.sort(key=lambda r: (r["median"], r["model"]))
    return rows


def market_snapshots(*, days: int = 7, now: datetime | None = None) -> list[MarketSnapshot]:
    now = now or timezone.now()
    recent = MarketSnapshot.objects.filter(taken_at__gte=now - timedelta(days=days))
    # The newest MAX_SNAPSHOTS, returned oldest first for drawing.
    return list(reversed(recent.order_by("-taken_at")[:MAX_SNAPSHOTS]))


def _decided_jobs(since: datetime):
    # Jobs that ended for reasons that are not the machine's fault (its suite failed elsewhere,
    # it was never dispatched) say nothing about honesty; reputation leaves them out too.
    return BenchmarkJob.objects.filter(state__in=DECIDED, finished_at__gte=since).exclude(
        outcome_reason__in=NO_FAULT_REASONS
    )


def _with_ratio(row: dict[str, Any]) -> dict[str, Any]:
    decided = row["verified"] + row["rejected"] + row["expired"]
    row["decided"] = decided
    row["ratio"] = row["verified"] / decided if decided else None
    return row


_OUTCOMES = {
    "verified": Count("pk", filter=Q(state=Job.VERIFIED)),
    "rejected": Count("pk", filter=Q(state=Job.REJECTED)),
    "expired": Count("pk", filter=Q(state=Job.EXPIRED)),
}


def pass_ratio_by_kind_precision(
    *, days: int = 30, now: datetime | None = None
) -> list[dict[str, Any]]:
    now = now or timezone.now()
    rows = (
        _decided_jobs(now - timedelta(days=days))
        .values("kind", "precision")
        .annotate(**_OUTCOMES)
        .order_by("kind", "precision")
    )
    return [_with_ratio(dict(row)) for row in rows]


def pass_ratio_by_day(*, days: int = 14, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or timezone.now()
    rows = (
        _decided_jobs(now - timedelta(days=days))
        .annotate(day=TruncDay("finished_at"))
        .values("day")
        .annotate(**_OUTCOMES)
        .order_by("day")
    )
    return [_with_ratio(dict(row)) for row in rows]


def machines_for_dashboard(*, limit: int = 50) -> list[dict[str, Any]]:
    """Machines with the most decided jobs, for links to their benchmark history."""
    return list(
        Machine.objects.annotate(
            decided=Count("benchmark_jobs", filter=Q(benchmark_jobs__state__in=DECIDED)),
            rejected=Count("benchmark_jobs", filter=Q(benchmark_jobs__state=Job.REJECTED)),
        )
        .order_by("-decided", "pk")
        .values(
            "pk",
            "name",
            "state",
            "resume_state",
            "accelerator_model",
            "accelerator_count",
            "provider__name",
            "decided",
            "rejected",
        )[:limit]
    )


def machine_benchmark_history(*, machine_id: int) -> dict[str, Any]:
    machine = Machine.objects.select_related("provider").filter(pk=machine_id).first()
    if machine is None:
        raise NotFoundError("No such machine.", code="dashboard_machine_not_found")
    jobs = list(
        BenchmarkJob.objects.filter(machine_id=machine_id, state__in=DECIDED)
        .order_by("-finished_at", "-pk")
        .values(
            "pk",
            "kind",
            "precision",
            "state",
            "purpose",
            "finished_at",
            "measured_tflops",
            "outcome_reason",
            "outcome_detail",
        )[:MAX_MACHINE_JOBS]
    )
    jobs.reverse()
    rejections = (
        BenchmarkJob.objects.filter(machine_id=machine_id, state__in=(Job.REJECTED, Job.EXPIRED))
        .values("outcome_reason")
        .annotate(n=Count("pk"), last=Max("finished_at"))
        .order_by("-n", "outcome_reason")
    )
    return {
        "machine": machine,
        "jobs": jobs,
        "rejection_reasons": list(rejections),
        "recent_failures": [j for j in reversed(jobs) if j["state"] != Job.VERIFIED][
            :MAX_REJECTIONS
        ],
    }


# --- money and orders over time ---------------------------------------------------------------

SETTLEMENT_EVENTS = ("LeaseSettled", "LeaseFailed")
MAX_OPEN_ALERTS = 20


def _amount(arg: str):
    # uint256 arguments are stored as decimal strings in the JSON (numbers would lose precision).
    return Cast(KeyTextTransform(arg, "args"), DecimalField(max_digits=78, decimal_places=0))


def revenue_by_day(*, days: int = 30, now: datetime | None = None) -> list[dict[str, Any]]:
    """Per day, from the final settlement events on chain (the money that actually moved):
    `billed` (what renters paid for seconds used = provider + fee), `fees` (the platform's part)
    and `settlements`. A day is the day the event was indexed."""
    now = now or timezone.now()
    rows = (
        ChainEvent.objects.filter(
            name__in=SETTLEMENT_EVENTS, is_final=True, created_at__gte=now - timedelta(days=days)
        )
        .annotate(day=TruncDay("created_at"))
        .values("day")
        .annotate(
            provider=Sum(_amount("providerAmount")),
            fees=Sum(_amount("feeAmount")),
            refunds=Sum(_amount("refundAmount")),
            settlements=Count("pk"),
        )
        .order_by("day")
    )
    out = []
    for row in rows:
        provider, fees = int(row["provider"] or 0), int(row["fees"] or 0)
        out.append(
            {
                "day": row["day"],
                "billed": provider + fees,
                "fees": fees,
                "provider": provider,
                "refunds": int(row["refunds"] or 0),
                "settlements": row["settlements"],
            }
        )
    return out


def order_volume_by_day(*, days: int = 30, now: datetime | None = None) -> list[dict[str, Any]]:
    """Orders created per day, and of those how many were funded on chain and how much escrow
    they put up (token units)."""
    now = now or timezone.now()
    rows = (
        Order.objects.filter(created_at__gte=now - timedelta(days=days))
        .annotate(day=TruncDay("created_at"))
        .values("day")
        .annotate(
            created=Count("pk"),
            funded=Count("pk", filter=Q(funded_at__isnull=False)),
            escrowed=Coalesce(
                Sum("escrow_amount", filter=Q(funded_at__isnull=False)),
                0,
                output_field=IntegerField(),
            ),
        )
        .order_by("day")
    )
    return [dict(row) for row in rows]


def open_alerts(*, limit: int = MAX_OPEN_ALERTS) -> dict[str, Any]:
    alerts = Alert.objects.filter(resolved_at__isnull=True)
    return {
        "count": alerts.count(),
        "newest": list(alerts.order_by("-last_seen_at", "-pk")[:limit]),
    }


# --- the admin's pages ------------------------------------------------------------------------


def _split(order: Order, events: list[ChainEvent]) -> dict[str, Any] | None:
    """Provider / fee / refund: as the chain settled it when the event is indexed, otherwise as
    the settlement will split it at the current fee (the contract's formula, integer division)."""
    closing = [e for e in events if e.name in SETTLEMENT_EVENTS]
    if closing:
        args = closing[-1].args
        return {
            "source": "chain",
            "event": closing[-1],
            "seconds": int(args["secondsUsed"]),
            "provider": int(args["providerAmount"]),
            "fee": int(args["feeAmount"]),
            "refund": int(args["refundAmount"]),
        }
    if order.amount_owed is None:
        return None
    fee = order.amount_owed * settings.PLATFORM_FEE_BPS // 10_000
    return {
        "source": "expected",
        "event": None,
        "seconds": order.billable_seconds,
        "provider": order.amount_owed - fee,
        "fee": fee,
        "refund": order.escrow_amount - order.amount_owed,
    }


def order_chain_story(*, order_id: int) -> dict[str, Any]:
    """What happened to an order's money, for its admin page: the escrow events on chain, the
    transactions the platform sent, the settlement split, what pre-empted it and the verdict
    that ended it."""
    order = Order.objects.select_related("preempted_by").filter(pk=order_id).first()
    if order is None:
        raise NotFoundError("No such order.", code="dashboard_order_not_found")
    events = list(
        ChainEvent.objects.filter(Q(lease_id=order.lease_id) | Q(order=order)).order_by(
            "block_number", "log_index"
        )
    )
    return {
        "order": order,
        "events": events,
        "transactions": list(ChainTransaction.objects.filter(order=order).order_by("pk")),
        "split": _split(order, events),
        "preempted_by": order.preempted_by,
        "preempted": list(order.preempted_orders.order_by("pk")),
        "verdicts": list(order.verdicts.select_related("job").order_by("pk")),
        "report_hashes": sorted(
            {e.args.get("reportHash", "") for e in events if e.name == "LeaseFailed"} - {""}
        ),
    }


def machine_reason_history(*, machine_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """Why a machine was suspended or reinstated, newest first: the staff's actions with their
    reasons, and the penalising verdicts that suspended it automatically."""
    staff = [
        {
            "at": a.created_at,
            "what": a.action,
            "reason": a.reason,
            "who": a.staff.username,
            "states": f"{a.state_before} → {a.state_after}",
        }
        for a in MachineStaffAction.objects.filter(machine_id=machine_id).select_related("staff")[
            :limit
        ]
    ]
    automatic = [
        {
            "at": v.created_at,
            "what": f"{v.kind} verdict",
            "reason": v.reason,
            "who": "verification",
            "states": "",
        }
        for v in Verdict.objects.filter(machine_id=machine_id, penalised=True).order_by("-pk")[
            :limit
        ]
    ]
    return sorted(staff + automatic, key=lambda row: row["at"], reverse=True)[:limit]


def machines_for_admin(queryset: QuerySet[Machine]) -> QuerySet[Machine]:
    """The machine list's figures in the one query of the page: the verified TFLOP/s of its open
    listing, active leases, and the stake of its provider's wallet (token units)."""
    open_listing = Listing.objects.filter(machine=OuterRef("pk")).exclude(
        status=Listing.Status.CLOSED
    )
    stake = Stake.objects.filter(address=OuterRef("provider__wallet_address")).order_by(
        "-updated_at"
    )
    return queryset.select_related("provider").annotate(
        verified_tflops=Subquery(open_listing.values("verified_tflops")[:1]),
        active_leases=Count("orders", filter=Q(orders__state=Order.State.ACTIVE), distinct=True),
        stake_units=Subquery(stake.values("staked")[:1]),
        has_open_listing=Exists(open_listing),
    )


def machine_reputations(*, machine_ids: list[int]) -> dict[int, dict[str, Any]]:
    """benchmarks.selectors.machine_reputation for a page of machines in two queries instead of
    two per machine: each machine's last BENCHMARK_REPUTATION_WINDOW decided jobs (a window
    function ranks them per machine, newest first), and their uptime rows. Same figures; a test
    compares the two."""
    ranked = (
        BenchmarkJob.objects.filter(machine_id__in=machine_ids, state__in=DECIDED)
        .exclude(outcome_reason__in=NO_FAULT_REASONS)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("machine_id")],
                order_by=[F("finished_at").desc(), F("pk").desc()],
            )
        )
        .filter(rank__lte=settings.BENCHMARK_REPUTATION_WINDOW)
        .values_list("machine_id", "state")
    )
    tally = {pk: [0, 0] for pk in machine_ids}  # [decided, passed]
    for machine_id, state in ranked:
        tally[machine_id][0] += 1
        tally[machine_id][1] += state == Job.VERIFIED
    uptimes = {u.machine_id: u for u in MachineUptime.objects.filter(machine_id__in=machine_ids)}
    out = {}
    for pk, (decided, passed) in tally.items():
        uptime = uptimes.get(pk)
        pass_ratio = passed / decided if decided else None
        uptime_ratio = uptime.online_samples / uptime.samples if uptime and uptime.samples else None
        score = None
        if pass_ratio is not None:
            score = pass_ratio * (uptime_ratio if uptime_ratio is not None else 1.0)
        out[pk] = {
            "recent_jobs": decided,
            "passed_jobs": passed,
            "pass_ratio": pass_ratio,
            "uptime_samples": uptime.samples if uptime else 0,
            "uptime_ratio": uptime_ratio,
            "score": score,
        }
    return out
