"""Platform incidents: windows in which the platform itself was failing, so that a deadline or
a heartbeat missed inside one is nobody's fault."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from marketplace.benchmarks.models import PlatformIncident
from marketplace.providers.models import Machine


def platform_incident_server_error(
    *, caused_by: str = "", detail: str = "", now: datetime | None = None
) -> PlatformIncident:
    """A 5xx answer: the platform failed a request around `now`. The window is padded on both
    sides (the agent's retries around it may have failed too); consecutive errors from the
    same caller extend one row instead of writing one row each."""
    now = now or timezone.now()
    pad = timedelta(seconds=settings.PLATFORM_INCIDENT_PAD_SECONDS)
    extended = PlatformIncident.objects.filter(
        source=PlatformIncident.Source.SERVER_ERROR,
        caused_by=caused_by,
        ended_at__gte=now - pad,
    ).update(ended_at=now + pad, updated_at=now)
    incident = (
        PlatformIncident.objects.filter(
            source=PlatformIncident.Source.SERVER_ERROR, caused_by=caused_by
        )
        .order_by("-pk")
        .first()
    )
    if extended and incident is not None:
        return incident
    return PlatformIncident.objects.create(
        source=PlatformIncident.Source.SERVER_ERROR,
        started_at=now - pad,
        ended_at=now + pad,
        caused_by=caused_by,
        detail=detail[:2000],
    )


def platform_health_probe() -> PlatformIncident | None:
    """Beat: asks the API's health endpoint over HTTP, as an agent would reach it (a crashed or
    wedged web tier answers nothing, or a 5xx). Outside any transaction: it waits on the
    network. Does nothing when PLATFORM_HEALTH_URL is empty."""
    import requests

    url = settings.PLATFORM_HEALTH_URL
    if not url:
        return None
    try:
        response = requests.get(url, timeout=settings.PLATFORM_HEALTH_TIMEOUT_SECONDS)
        healthy, detail = response.status_code == 200, f"{url}: HTTP {response.status_code}"
    except requests.RequestException as exc:
        healthy, detail = False, f"{url}: {type(exc).__name__}: {exc}"
    return platform_health_observed(healthy=healthy, detail=detail)


@transaction.atomic
def platform_health_observed(
    *, healthy: bool, detail: str = "", now: datetime | None = None
) -> PlatformIncident | None:
    """Beat's probe of the API's health endpoint: a failure opens an incident (back-dated to
    the previous probe, since the API may have been failing since then), a success closes it.
    Returns the open incident, or None when healthy."""
    now = now or timezone.now()
    source = PlatformIncident.Source.HEALTH_PROBE
    open_ = (
        PlatformIncident.objects.select_for_update()
        .filter(source=source, ended_at__isnull=True)
        .order_by("pk")
    )
    if healthy:
        open_.update(ended_at=now, updated_at=now)
        return None
    incident = open_.first()
    if incident is None:
        since = now - timedelta(seconds=settings.PLATFORM_HEALTH_PROBE_SECONDS)
        incident = PlatformIncident.objects.create(
            source=source, started_at=since, detail=detail[:2000]
        )
    return incident


def _heartbeat_gap(now: datetime) -> PlatformIncident | None:
    """Most recently alive machines stopped heartbeating at once: far likelier that we stopped
    receiving heartbeats (web tier down, a network partition on our side) than that they all
    died together. Records (or extends) a heartbeat_gap incident over the silent span."""
    timeout = timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
    recently_alive = Machine.objects.exclude(state=Machine.State.SUSPENDED).filter(
        last_heartbeat_at__gte=now - settings.PLATFORM_HEARTBEAT_GAP_LOOKBACK * timeout
    )
    total = recently_alive.count()
    silent = recently_alive.filter(last_heartbeat_at__lt=now - timeout)
    silent_count = silent.count()
    if (
        total < settings.PLATFORM_HEARTBEAT_GAP_MIN_MACHINES
        or silent_count < total * settings.PLATFORM_HEARTBEAT_GAP_FRACTION
    ):
        return None
    oldest = min(silent.values_list("last_heartbeat_at", flat=True))
    source = PlatformIncident.Source.HEARTBEAT_GAP
    incident = (
        PlatformIncident.objects.filter(source=source, ended_at__gte=oldest).order_by("pk").first()
    )
    detail = f"{silent_count} of {total} recently alive machines silent for over {timeout}"
    if incident is not None:
        PlatformIncident.objects.filter(pk=incident.pk).update(
            ended_at=now, detail=detail, updated_at=now
        )
        return incident
    return PlatformIncident.objects.create(
        source=source, started_at=oldest, ended_at=now, detail=detail
    )


def platform_failing_during(
    *, start: datetime, end: datetime, machine: Machine | None = None
) -> bool:
    """Whether a platform incident overlaps [start, end]. A 5xx that the machine's own agent
    or owner caused does not excuse that machine: nobody buys an excuse by crashing us."""
    overlapping = PlatformIncident.objects.filter(started_at__lte=end).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gte=start)
    )
    if machine is not None:
        owner_id = machine.provider.owner_id if machine.provider_id else None
        overlapping = overlapping.exclude(
            caused_by__in=[f"machine:{machine.pk}", f"user:{owner_id}"]
        )
    return overlapping.exists()


def _platform_recovering(now: datetime) -> bool:
    """An incident is open, or closed less than one heartbeat timeout ago: agents have not had
    the time to get a heartbeat through yet, so a stale one says nothing about them."""
    since = now - timedelta(seconds=settings.HEARTBEAT_TIMEOUT_SECONDS)
    # Not a single 5xx: one failed request does not stop heartbeats, and anyone able to cause
    # one must not be able to pause liveness checks for everybody.
    return (
        PlatformIncident.objects.exclude(source=PlatformIncident.Source.SERVER_ERROR)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=since), started_at__lte=now)
        .exists()
    )
