"""Receivers that misbehave cost one bounded attempt each, never a hung worker or a trusted
impostor."""

import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from marketplace.webhooks import services
from marketplace.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.webhooks.conftest import endpoint_for, running_lease, scan_and_deliver


def test_a_receiver_that_hangs_times_out_and_is_retried_later(alice, listing, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    receiver.delay = 3
    endpoint_for(alice, receiver.url)
    running_lease(alice, listing)
    scan_and_deliver()
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "pending" and delivery.attempts == 1
    assert "timed out" in delivery.last_error.lower() or "timeout" in delivery.last_error.lower()
    assert delivery.tries.get().duration_ms < 3000  # gave up before the receiver answered


def test_an_https_receiver_with_an_untrusted_certificate_gets_no_event(
    alice, listing, allow_loopback, tmp_path
):
    """The connection goes to the address that was checked, but TLS still verifies the
    certificate against the URL's host: pinning the address does not switch verification off."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    bodies = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint_for(alice, f"https://127.0.0.1:{server.server_address[1]}/hook")
        running_lease(alice, listing)
        scan_and_deliver()
    finally:
        server.shutdown()
        server.server_close()
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "pending" and delivery.last_status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.last_error or "SSL" in delivery.last_error
    assert bodies == []


def test_a_disabled_endpoint_fails_its_pending_deliveries_without_sending(alice, listing, receiver):
    endpoint = endpoint_for(alice, receiver.url)
    running_lease(alice, listing)
    services.webhooks_scan()
    WebhookEndpoint.objects.filter(pk=endpoint["id"]).update(is_active=False)
    services.deliveries_send_due()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.last_error) == ("failed", "endpoint disabled")
    assert receiver.requests == []
