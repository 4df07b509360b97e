"""A real HTTP receiver on a free loopback port, and the setting that lets deliveries reach it
(loopback is refused in production: see marketplace/webhooks/transport.py)."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from marketplace.orders import services as order_services
from marketplace.webhooks import services
from tests.conftest import client_for


class Receiver:
    """Records every request; answers with the queued status codes, then 200."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.delay = 0.0  # seconds before answering: a receiver that hangs
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                time.sleep(receiver.delay)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/marketplace"

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def allow_loopback(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 2


@pytest.fixture
def receiver(allow_loopback):
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def closed_port_url(allow_loopback):
    """A loopback URL nothing listens on: a receiver that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


def endpoint_for(user, url, event_types=None) -> dict:
    """Registers through the API, as an integrator would; returns the answer (with the secret)."""
    body = {"url": url}
    if event_types is not None:
        body["event_types"] = event_types
    response = client_for(user).post("/api/v1/webhooks", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def running_lease(renter, listing, key="lease-0001", **kw):
    made, _ = order_services.order_create(
        renter=renter,
        listing_id=listing.pk,
        pricing_mode=kw.pop("pricing_mode", "on_demand"),
        accelerators=kw.pop("accelerators", 2),
        idempotency_key=key,
        **({"hours": 2} | kw),
    )
    order_services.order_mark_funded(order_id=made.pk)
    order_services.order_mark_starting(order_id=made.pk)
    return order_services.order_activate(order_id=made.pk)


def scan_and_deliver(now=None) -> list[int]:
    services.webhooks_scan(now=now)
    return services.deliveries_send_due(now=now)
