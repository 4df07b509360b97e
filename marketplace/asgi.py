"""The agent channel: the ASGI application that provider agents talk to (Procfile `channel`,
served by uvicorn; see uvicorn.conf in the Procfile and docs/architecture.md).

Agents long-poll for work and for challenges. Under WSGI each waiting agent holds a server
thread; here the three hot paths (GET /agent/jobs/next, GET /agent/jobs/<id>/challenge, POST
/agent/heartbeat) are coroutines that wait on a Redis wake-up (marketplace.benchmarks.wakeups),
so a waiting agent costs a coroutine and a socket. Everything else under /api/v1/agent/ (and
the health check) goes through Django's ASGI handler and its middleware as usual. Nothing
else is served here: renters, owners and the admin use the WSGI site.

The fast paths keep the site's hostile-traffic contract: every error is the JSON error shape
(the DRF views' own exception handler, or status_error here), a body nested too deep is the
same 400 as ApiBodyDepthMiddleware's, an oversized body a 413, an unexpected error a 500 that
is recorded like Django's (got_request_exception). The request line is limited as gunicorn
limits it on the WSGI site (MAX_TARGET_BYTES; h11 bounds the buffering of an incomplete one).
"""

from __future__ import annotations

import io
import logging
import os

from django.core.asgi import get_asgi_application
from django.core.exceptions import DisallowedHost

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402 - after django.setup() above
from django.core.handlers.asgi import ASGIRequest  # noqa: E402
from django.core.signals import got_request_exception  # noqa: E402
from django.urls import Resolver404, resolve  # noqa: E402

from marketplace.benchmarks import apis as benchmark_apis  # noqa: E402
from marketplace.benchmarks.wakeups import in_db_thread  # noqa: E402
from marketplace.core.exceptions import error_body  # noqa: E402
from marketplace.core.middleware import status_error  # noqa: E402
from marketplace.providers import apis as provider_apis  # noqa: E402
from workers.verification import safe_json  # noqa: E402

logger = logging.getLogger(__name__)

AGENT_PREFIX = "/api/v1/agent/"
# The WSGI site's request-line limit (gunicorn.conf.py), here in the error shape: uvicorn's h11
# bounds only what it buffers of a request still arriving, not a line that comes in one read.
MAX_TARGET_BYTES = 8190
SERVED_PATHS = ("/api/v1/health",)

# (method, DRF view class) -> the coroutine that serves it.
FAST_PATHS = {
    ("GET", benchmark_apis.AgentJobNextApi): benchmark_apis.agent_job_next_channel,
    ("GET", benchmark_apis.AgentJobChallengeApi): benchmark_apis.agent_job_challenge_channel,
    ("POST", provider_apis.AgentHeartbeatApi): provider_apis.agent_heartbeat_channel,
}


def _fast_path(scope):
    try:
        match = resolve(scope["path"])
    except Resolver404:
        return None, {}
    view_class = getattr(match.func, "view_class", None)
    return FAST_PATHS.get((scope["method"], view_class)), match.kwargs


async def _read_body(receive, cap: int) -> bytes | None:
    """The request body, or None once it grows past cap."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send, response) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
    body = response.content
    if not any(k.lower() == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _serve_fast(scope, receive, send, endpoint, kwargs) -> None:
    body = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440)
    if body is None:
        return await _send(send, status_error(413))
    if body and body[:2] != b"\x1f\x8b":
        # The same answer as ApiBodyDepthMiddleware gives on every other route.
        try:
            safe_json.check_depth(body)
        except safe_json.JsonTooDeep as exc:
            from django.http import JsonResponse

            return await _send(
                send,
                JsonResponse(
                    error_body("malformed_request", f"JSON parse error - {exc}"), status=400
                ),
            )
        except UnicodeDecodeError:
            pass
    request = ASGIRequest(scope, io.BytesIO(body))
    try:
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it on every other route
    except DisallowedHost:
        return await _send(send, status_error(400))
    try:
        response = await endpoint(request, **kwargs)
    except Exception:
        logger.exception("agent channel: %s %s failed", scope["method"], scope["path"])
        await in_db_thread(got_request_exception.send, sender=None, request=request)
        response = status_error(500)
    await _send(send, response)


async def application(scope, receive, send):
    if scope["type"] == "http":
        path = scope["path"]
        if (
            len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
            > MAX_TARGET_BYTES
        ):
            await _read_body(receive, 0)
            return await _send(send, status_error(414))
        if not (path.startswith(AGENT_PREFIX) or path in SERVED_PATHS):
            # Only the agent API lives on this port: say where the rest is, in the error shape.
            await _read_body(receive, 0)
            return await _send(
                send,
                status_error(404, "This server carries the agent channel (/api/v1/agent/) only."),
            )
        endpoint, kwargs = _fast_path(scope)
        if endpoint is not None:
            return await _serve_fast(scope, receive, send, endpoint, kwargs)
    return await django_application(scope, receive, send)
