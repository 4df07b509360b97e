"""The agent channel: the ASGI application that provider agents talk to (Procfile `channel`,
served by uvicorn; see uvicorn.conf in the Procfile and docs/architecture.md).

Agents long-poll for work and for challenges. Under WSGI each waiting agent holds a server
thread; here the three hot paths (GET /agent/jobs/next, GET /agent/jobs/<id>/challenge, POST
/agent/heartbeat) are coroutines that wait on a Redis wake-up (marketplace.benchmarks.wakeups),
so a waiting agent costs a coroutine and a socket. Everything else under /api/v1/agent/ (and
the health check) is served by Django's WSGI handler, with the site's middleware, inside the
same bounded pool of database threads: Django's ASGI handler would run each such request in
a thread of its own, and with persistent connections (CONN_MAX_AGE) leave a database
connection behind with each of those threads. Nothing else is served here: renters, owners
and the admin use the WSGI site.

The fast paths keep the site's hostile-traffic contract: every error is the JSON error shape
(the DRF views' own exception handler, or status_error here), a body nested too deep is the
same 400 as ApiBodyDepthMiddleware's, an oversized body a 413, an unexpected error a 500 that
is recorded like Django's (got_request_exception). The request line is limited as gunicorn
limits it on the WSGI site (MAX_TARGET_BYTES; h11 bounds the buffering of an incomplete one).
"""

from __future__ import annotations

import gc
import io
import logging
import os

import django
from django.core.exceptions import DisallowedHost

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
django.setup(set_prefix=False)

from asgiref.wsgi import WsgiToAsgiInstance  # noqa: E402
from django.conf import settings  # noqa: E402 - after django.setup() above
from django.core.handlers.asgi import ASGIRequest  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.core.signals import got_request_exception  # noqa: E402
from django.urls import Resolver404, resolve  # noqa: E402

from marketplace.benchmarks import apis as benchmark_apis  # noqa: E402
from marketplace.core.db_pool import in_db_thread  # noqa: E402
from marketplace.core.exceptions import error_body  # noqa: E402
from marketplace.core.middleware import status_error  # noqa: E402
from marketplace.providers import apis as provider_apis  # noqa: E402
from workers.verification import MAX_ANSWER_BYTES, safe_json  # noqa: E402

logger = logging.getLogger(__name__)

# Garbage collection, tuned for thousands of waiting agents per process. Each waiting poll holds
# a few hundred tracked objects for its whole wait, so they all reach the oldest generation, and
# CPython's default (a full collection after every 10 collections of the middle one) scanned
# that whole heap every ~12 s in each worker: at 5,000 agents, 38 pauses of 0.36-0.53 s in four
# minutes, each stalling every agent of its worker, and the dispatch p95 (1-2.6 s) was made of
# them. A full collection after 100 instead, with what the import left frozen out of the scans
# (gc.freeze, 155,000 objects), made it 4 in the same time and the p95 0.83 s, for 43 MB more
# per worker of cyclic garbage awaiting collection. The young generations keep their defaults:
# a larger first threshold made each young collection take 0.1 s.
gc.collect()
gc.freeze()
gc.set_threshold(700, 10, 100)

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


async def _read_body(receive, cap: int) -> tuple[bytes, bool]:
    """(the first cap bytes of the body, whether that was all of it). Reading stops at cap: the
    rest is never buffered."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return b"".join(chunks)[:cap], False
        if not message.get("more_body", False):
            return b"".join(chunks), True


async def _send(send, response) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
    body = response.content
    if not any(k.lower() == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _serve_fast(scope, receive, send, endpoint, kwargs) -> None:
    body, complete = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440)
    if not complete:
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


_wsgi_handler = WSGIHandler()


def _run_wsgi(scope, body: bytes):
    """One request through Django's WSGI handler (its signals close or keep this pool thread's
    database connection, as under gunicorn). Returns (status, headers, body)."""
    bridge = WsgiToAsgiInstance(None)
    bridge.scope = scope
    environ = bridge.build_environ(scope, io.BytesIO(body))
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = int(status.split(" ", 1)[0]), headers

    result = _wsgi_handler(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()  # request_finished: Django's end of the request
    return started["status"], started["headers"], content


async def _serve_wsgi(scope, receive, send) -> None:
    # The views read at most their own cap + 1 bytes (the largest: an answer) and judge an
    # over-limit body themselves, as under gunicorn: they get its first bytes, never more.
    body, _ = await _read_body(receive, MAX_ANSWER_BYTES + 1)
    status, headers, content = await in_db_thread(_run_wsgi, scope, body)
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if not any(k.lower() == b"content-length" for k, _ in raw):
        raw.append((b"content-length", str(len(content)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


async def application(scope, receive, send):
    if scope["type"] == "http":
        path = scope["path"]
        if (
            len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
            > MAX_TARGET_BYTES
        ):
            return await _send(send, status_error(414))
        if not (path.startswith(AGENT_PREFIX) or path in SERVED_PATHS):
            # Only the agent API lives on this port: say where the rest is, in the error shape.
            return await _send(
                send,
                status_error(404, "This server carries the agent channel (/api/v1/agent/) only."),
            )
        endpoint, kwargs = _fast_path(scope)
        if endpoint is not None:
            return await _serve_fast(scope, receive, send, endpoint, kwargs)
        return await _serve_wsgi(scope, receive, send)
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    raise ValueError(f"the agent channel serves HTTP only, not {scope['type']}")
