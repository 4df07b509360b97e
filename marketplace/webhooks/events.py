"""What each source of events reads, and the events a row stands for.

Every event is derived from a row another app wrote in the transaction of its decision, and
from fields that row keeps afterwards (an order's started_at stays set after it ends), so a
scan that runs late still sees every event, never just the latest state. An event's key names
the event itself ("order:12:ended"), so reading a row again yields the same keys."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q

from marketplace.benchmarks.models import Verdict
from marketplace.dashboard.models import MachineStaffAction
from marketplace.orders.models import Order
from marketplace.payments.models import Slash
from marketplace.webhooks.models import EventType, WebhookEndpoint


@dataclass(frozen=True)
class Event:
    key: str
    type: str
    occurred_at: datetime
    # The users who may see it: a lease's renter and its provider's owner; a machine's owner.
    recipients: frozenset[int]
    data: dict = field(hash=False)


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _order_data(order: Order) -> dict:
    return {
        "order_id": order.pk,
        "lease_id": order.lease_id,
        "listing_id": order.listing_id,
        "machine_id": order.machine_id,
        "pricing_mode": order.pricing_mode,
        "accelerators": order.accelerators,
        "price_per_hour": order.price_per_hour,
        "duration_seconds": order.duration_seconds,
        "escrow_amount": order.escrow_amount,
    }


def order_events(order: Order) -> list[Event]:
    recipients = frozenset({order.renter_id, order.provider.owner_id})
    base = _order_data(order)
    events = []
    if order.started_at:
        events.append(
            Event(
                key=f"order:{order.pk}:active",
                type=EventType.LEASE_ACTIVE,
                occurred_at=order.started_at,
                recipients=recipients,
                data={**base, "started_at": _time(order.started_at)},
            )
        )
    if order.ended_at:
        # A lease ends once; pre-emption is its own type because an interruptible renter acts on
        # it (bids again), but it shares the key so no lease ends twice.
        preempted = order.end_reason == "preempted"
        events.append(
            Event(
                key=f"order:{order.pk}:ended",
                type=EventType.LEASE_PREEMPTED if preempted else EventType.LEASE_ENDED,
                occurred_at=order.ended_at,
                recipients=recipients,
                data={
                    **base,
                    "started_at": _time(order.started_at),
                    "ended_at": _time(order.ended_at),
                    "end_reason": order.end_reason,
                    "billable_seconds": order.billable_seconds,
                    "amount_owed": order.amount_owed,
                    "refund_amount": order.refund_amount,
                },
            )
        )
    if order.settled_at:
        events.append(
            Event(
                key=f"order:{order.pk}:settled",
                type=EventType.LEASE_SETTLED,
                occurred_at=order.settled_at,
                recipients=recipients,
                data={
                    **base,
                    "ended_at": _time(order.ended_at),
                    "settled_at": _time(order.settled_at),
                    "end_reason": order.end_reason,
                    "billable_seconds": order.billable_seconds,
                    "amount_owed": order.amount_owed,
                    "refund_amount": order.refund_amount,
                },
            )
        )
    return events


def staff_action_events(action: MachineStaffAction) -> list[Event]:
    suspended = action.action == MachineStaffAction.Action.SUSPEND
    return [
        Event(
            key=f"staff_action:{action.pk}",
            type=EventType.MACHINE_SUSPENDED if suspended else EventType.MACHINE_REINSTATED,
            occurred_at=action.created_at,
            recipients=frozenset({action.machine.provider.owner_id}),
            data={
                "machine_id": action.machine_id,
                "machine_name": action.machine.name,
                "by": "staff",
                "reason": action.reason,
                "state_before": action.state_before,
                "state_after": action.state_after,
            },
        )
    ]


def verdict_events(verdict: Verdict) -> list[Event]:
    return [
        Event(
            key=f"verdict:{verdict.pk}",
            type=EventType.MACHINE_SUSPENDED,
            occurred_at=verdict.created_at,
            recipients=frozenset({verdict.machine.provider.owner_id}),
            data={
                "machine_id": verdict.machine_id,
                "machine_name": verdict.machine.name,
                "by": "verification",
                "reason": verdict.reason,
                "benchmark_job_id": verdict.job_id,
                "report_hash": verdict.report_hash,
            },
        )
    ]


def slash_events(slash: Slash) -> list[Event]:
    return [
        Event(
            key=f"slash:{slash.pk}",
            type=EventType.PROVIDER_SLASHED,
            occurred_at=slash.created_at,
            recipients=frozenset({slash.provider.owner_id}),
            data={
                "provider_id": slash.provider_id,
                "wallet_address": slash.address,
                # uint256 token units as a decimal string: JSON numbers lose precision above 2**53.
                "amount": str(int(slash.amount)),
                "report_hash": slash.report_hash,
                "tx_hash": slash.tx_hash,
            },
        )
    ]


@dataclass(frozen=True)
class Source:
    name: str
    # (since, subscribed) -> the rows changed at or after `since` that concern a subscribed user
    # (a queryset of user ids): a scan reads only what some endpoint will receive.
    rows: "callable"
    events: "callable"  # (row) -> list[Event]


def subscribed_users():
    return WebhookEndpoint.objects.filter(is_active=True).values("user_id")


def _orders(since: datetime, subscribed) -> Iterable[Order]:
    # updated_at, not the transition times: it is set in the transaction of every transition.
    return (
        Order.objects.filter(updated_at__gte=since)
        .filter(Q(renter_id__in=subscribed) | Q(provider__owner_id__in=subscribed))
        .select_related("provider")
        .order_by("pk")
    )


def _staff_actions(since: datetime, subscribed) -> Iterable[MachineStaffAction]:
    return (
        MachineStaffAction.objects.filter(
            created_at__gte=since, machine__provider__owner_id__in=subscribed
        )
        .select_related("machine__provider")
        .order_by("pk")
    )


def _verdicts(since: datetime, subscribed) -> Iterable[Verdict]:
    # A failed job's verdict is written in the transaction that suspends the machine
    # (benchmarks' _machine_penalise); a lapse (kind liveness) takes the machine offline instead.
    return (
        Verdict.objects.filter(
            created_at__gte=since,
            kind=Verdict.Kind.FAIL,
            penalised=True,
            machine__provider__owner_id__in=subscribed,
        )
        .select_related("machine__provider")
        .order_by("pk")
    )


def _slashes(since: datetime, subscribed) -> Iterable[Slash]:
    return (
        Slash.objects.filter(created_at__gte=since, provider__owner_id__in=subscribed)
        .select_related("provider")
        .order_by("pk")
    )


SOURCES = (
    Source("orders", _orders, order_events),
    Source("machine_staff_actions", _staff_actions, staff_action_events),
    Source("verdicts", _verdicts, verdict_events),
    Source("slashes", _slashes, slash_events),
)
