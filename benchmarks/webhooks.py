"""What the webhook outbox costs: one beat scan over a busy window, a re-scan of the same window
(the overlap re-reads it every 10 s), and deliveries per second to a local receiver.

    DATABASE_URL=sqlite:////tmp/wh-bench.sqlite3 .venv/bin/python benchmarks/webhooks.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mkt_x .venv/bin/python benchmarks/webhooks.py

The database named by DATABASE_URL is migrated and filled (use an empty, throwaway one).
ORDERS leases changed inside one overlap window, on LISTINGS listings of one provider, rented
by RENTERS renters of whom SUBSCRIBED have an endpoint. Targets: a scan takes under a tenth of
its 10 s beat interval (1 s); a re-scan that finds nothing new likewise; a beat run of
WEBHOOK_DELIVERY_BATCH = 20 deliveries to healthy receivers ends well inside its 5 s interval
(>= 20 deliveries/s).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + "k3y-x9Qz" * 8)
os.environ.setdefault("DJANGO_DEBUG", "true")
os.environ["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "true"

ORDERS, LISTINGS, RENTERS, SUBSCRIBED = 5_000, 50, 100, 10


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from marketplace.accounts.models import User
    from marketplace.orders.models import Order
    from marketplace.webhooks import services
    from marketplace.webhooks.models import WebhookDelivery, WebhookEndpoint
    from tests.factories import ListingFactory, ProviderFactory, UserFactory

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"

    owner = UserFactory(username="bench-owner", role=User.Role.PROVIDER_OWNER)
    provider = ProviderFactory(owner=owner)
    listings = [ListingFactory(machine__provider=provider) for _ in range(LISTINGS)]
    renters = [UserFactory(username=f"bench-renter-{i}") for i in range(RENTERS)]
    for renter in renters[:SUBSCRIBED]:
        services.endpoint_create(user=renter, url=url, event_types=["lease.active"])
    # Endpoints exist before the events, as in production.
    WebhookEndpoint.objects.update(created_at=timezone.now() - timezone.timedelta(hours=1))
    now = timezone.now()
    Order.objects.bulk_create(
        [
            Order(
                renter=renters[i % RENTERS],
                listing=listings[i % LISTINGS],
                machine_id=listings[i % LISTINGS].machine_id,
                provider=provider,
                state=Order.State.ACTIVE,
                pricing_mode="on_demand",
                accelerators=1,
                price_per_hour=2_000_000,
                rate_per_second=555,
                duration_seconds=3600,
                escrow_amount=555 * 3600,
                lease_id=f"0x{i:064x}",
                idempotency_key=f"bench-{i}",
                request_fingerprint="x",
                funded_at=now,
                started_at=now,
            )
            for i in range(ORDERS)
        ],
        batch_size=1000,
    )
    expected = ORDERS * SUBSCRIBED // RENTERS

    started = time.perf_counter()
    queued = services.webhooks_scan(now=now)
    scan = time.perf_counter() - started
    started = time.perf_counter()
    again = services.webhooks_scan(now=now + timezone.timedelta(seconds=10))
    rescan = time.perf_counter() - started
    assert queued["orders"] == expected and again["orders"] == 0, (queued, again)

    started = time.perf_counter()
    sent = 0
    while batch := services.deliveries_send_due(now=timezone.now(), limit=20):
        sent += len(batch)
        if sent >= 500:
            break
    send = time.perf_counter() - started
    ok = WebhookDelivery.objects.filter(state="succeeded").count()
    server.shutdown()

    vendor = connection.vendor
    print(
        f"webhooks outbox on {vendor}: {ORDERS:,} leases changed in the window, "
        f"{SUBSCRIBED} of {RENTERS} renters subscribed"
    )
    print(f"  scan:    {scan:6.3f} s for {queued['orders']:,} new deliveries   target < 1 s")
    print(f"  re-scan: {rescan:6.3f} s, nothing new                      target < 1 s")
    print(f"  send:    {sent / send:6.1f} deliveries/s ({ok} succeeded)          target >= 20/s")


if __name__ == "__main__":
    main()
