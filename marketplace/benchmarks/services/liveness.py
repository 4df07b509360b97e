"""Heartbeat liveness: machines that stopped answering go offline and their broken leases get a
liveness verdict (unless the platform's own outage explains the silence)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketplace.benchmarks.models import Verdict
from marketplace.benchmarks.services.incidents import (
    _heartbeat_gap,
    _platform_recovering,
    platform_failing_during,
)
from marketplace.benchmarks.services.verdicts import _announce_failure, _verdict_record
from marketplace.providers.models import Machine


def _liveness_report_hash(report: dict[str, Any]) -> str:
    canonical = json.dumps(report, sort_keys=True, separators=(",", ":"))
    return "0x" + hashlib.sha256(canonical.encode()).hexdigest()


def machines_expire_heartbeats() -> list[int]:
    """Beat: every machine whose heartbeat is stale lapses (see machine_heartbeat_lapsed), unless
    most of them fell silent at once, which is recorded as our outage first: one look at the
    whole fleet per sweep, not one per silent machine. Returns the machines taken offline."""
    from marketplace.providers.selectors import machines_with_stale_heartbeat

    with transaction.atomic():
        _heartbeat_gap(timezone.now())
    return [
        machine_id
        for machine_id in machines_with_stale_heartbeat().values_list("pk", flat=True)
        if machine_heartbeat_lapsed(machine_id=machine_id) is not None
    ]


@transaction.atomic
def machine_heartbeat_lapsed(*, machine_id: int) -> list[int] | None:
    """A machine stopped answering heartbeats. It goes offline; its active leases fail (the
    renter pays only the seconds it ran) and its unstarted ones cancel. Breaking a running
    lease is a breach like a failed verification: a liveness verdict, written here with the
    leases it ended, is the report behind the slash and the one their settlements cite.

    The platform's own failures are nobody's fault. While an outage is open (or closed less
    than one heartbeat timeout ago) nothing lapses: agents get one timeout to reach us again.
    A lapse whose silent span [last heartbeat, now] overlaps an incident still takes the
    machine offline and ends its leases (a renter must not pay for a machine nobody can see),
    but its verdict does not penalise: no slash, no lost reward.

    Returns the ended order ids, or None when the machine came back meanwhile (or the
    platform is still recovering)."""
    from marketplace.orders.models import Order
    from marketplace.orders.services import orders_end_for_machine
    from marketplace.providers.services import machine_mark_offline

    now = timezone.now()
    if _platform_recovering(now):
        return None
    machine = machine_mark_offline(machine_id=machine_id)
    if machine is None:
        return None
    ended = orders_end_for_machine(machine_id=machine_id, reason="machine offline")
    broken = sorted(
        Order.objects.filter(pk__in=ended, state=Order.State.FAILED).values_list("pk", flat=True)
    )
    if not broken:
        return ended
    silent_since = machine.last_heartbeat_at or machine.state_changed_at or now
    excused = platform_failing_during(
        start=silent_since,
        end=now,
        machine=Machine.objects.select_related("provider").get(pk=machine_id),
    )
    report = {
        "kind": "liveness",
        "machine_id": machine_id,
        "last_heartbeat_at": machine.last_heartbeat_at.isoformat()
        if machine.last_heartbeat_at
        else None,
        "detected_at": now.isoformat(),
        "heartbeat_timeout_seconds": settings.HEARTBEAT_TIMEOUT_SECONDS,
        "broken_orders": broken,
        "platform_incident": excused,
    }
    verdict = _verdict_record(
        key=f"liveness-{machine_id}-{int(now.timestamp())}",
        kind=Verdict.Kind.LIVENESS,
        machine_id=machine_id,
        job=None,
        report_hash=_liveness_report_hash(report),
        report=report,
        reason="machine_offline_platform_incident" if excused else "machine_offline",
        penalised=not excused,
        order_ids=ended,
    )
    _announce_failure(verdict)
    return ended
