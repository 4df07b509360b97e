"""The web tier's own failures, recorded as platform incidents (see PlatformIncident)."""

import logging

logger = logging.getLogger(__name__)


def _caller(request) -> str:
    # DRF copies the authenticated principal onto the Django request: an agent's is an
    # AgentPrincipal (machine_id), a signed-in user's is a User.
    user = getattr(request, "user", None)
    machine_id = getattr(user, "machine_id", None)
    if machine_id is not None:
        return f"machine:{machine_id}"
    if getattr(user, "is_authenticated", False) and getattr(user, "pk", None) is not None:
        return f"user:{user.pk}"
    return ""


def on_request_exception(sender, request=None, **kwargs) -> None:
    """Django answers an unhandled exception with a 500: the request failed through no fault of
    whoever sent it. Never raises: when the database is what failed, the health probe and the
    heartbeat-gap check still see the outage."""
    from marketplace.benchmarks.services import platform_incident_server_error

    try:
        path = getattr(request, "path", "")
        platform_incident_server_error(
            caused_by=_caller(request) if request is not None else "",
            detail=f"500 on {getattr(request, 'method', '')} {path}"[:200],
        )
    except Exception:  # noqa: BLE001 - a failing error hook must not mask the original error
        logger.exception("could not record a platform incident for a server error")
