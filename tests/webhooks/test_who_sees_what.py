"""A renter hears about their own leases; a provider owner about their machines and the leases
on them; nobody about anyone else's, through deliveries or through the API."""

from marketplace.dashboard.services import machine_staff_reinstate, machine_staff_suspend
from marketplace.orders import services as order_services
from marketplace.payments.models import Slash
from marketplace.webhooks.models import WebhookDelivery
from tests.conftest import client_for
from tests.factories import ChainEventFactory, ListingFactory
from tests.webhooks.conftest import Receiver, endpoint_for, running_lease, scan_and_deliver

HASH = "0x" + "ab" * 32


def _receivers(n):
    made = [Receiver() for _ in range(n)]
    for r in made:
        r.thread.start()
    return made


def _stop(receivers):
    for r in receivers:
        r.server.shutdown()
        r.server.server_close()


def test_lease_events_reach_its_renter_and_its_provider_owner_only(
    alice, carol, bob, mallory, listing, allow_loopback
):
    receivers = _receivers(4)
    try:
        for user, r in zip((alice, carol, bob, mallory), receivers, strict=True):
            endpoint_for(user, r.url)
        mallory_listing = ListingFactory(machine__provider__owner=mallory)
        order = running_lease(alice, listing)
        carols = running_lease(carol, mallory_listing, key="carol-lease-1")
        order_services.order_stop_by_renter(order_id=order.pk, user=alice)
        scan_and_deliver()
        alice_r, carol_r, bob_r, mallory_r = receivers
        mine = {f"order:{order.pk}:active", f"order:{order.pk}:ended"}
        theirs = {f"order:{carols.pk}:active"}
        assert {b["id"] for b in alice_r.bodies()} == mine
        assert {b["id"] for b in bob_r.bodies()} == mine
        assert {b["id"] for b in carol_r.bodies()} == theirs
        assert {b["id"] for b in mallory_r.bodies()} == theirs
    finally:
        _stop(receivers)


def test_machine_suspension_reinstatement_and_slash_reach_the_owner_only(
    alice, bob, staff, listing, bob_provider, allow_loopback
):
    alice_r, bob_r = _receivers(2)
    try:
        endpoint_for(alice, alice_r.url)
        endpoint_for(bob, bob_r.url)
        machine_staff_suspend(machine_id=listing.machine_id, staff=staff, reason="bad fans")
        machine_staff_reinstate(machine_id=listing.machine_id, staff=staff, reason="fans fixed")
        event = ChainEventFactory(contract="staking", name="Slashed", block_number=7)
        slash = Slash.objects.create(
            event=event,
            address=bob_provider.wallet_address,
            provider=bob_provider,
            amount=1_500_000,
            report_hash=HASH,
            tx_hash=HASH,
        )
        scan_and_deliver()
        by_type = {b["type"]: b for b in bob_r.bodies()}
        assert set(by_type) == {"machine.suspended", "machine.reinstated", "provider.slashed"}
        assert by_type["machine.suspended"]["data"]["reason"] == "bad fans"
        assert by_type["provider.slashed"]["data"]["amount"] == "1500000"
        assert by_type["provider.slashed"]["id"] == f"slash:{slash.pk}"
        assert alice_r.requests == []
    finally:
        _stop([alice_r, bob_r])


def test_an_endpoint_gets_only_the_event_types_it_chose(alice, listing, receiver):
    endpoint_for(alice, receiver.url, event_types=["lease.ended"])
    order = running_lease(alice, listing)
    scan_and_deliver()
    assert receiver.requests == []
    order_services.order_stop_by_renter(order_id=order.pk, user=alice)
    scan_and_deliver()
    assert [b["type"] for b in receiver.bodies()] == ["lease.ended"]


def test_nobody_reads_another_users_endpoint_or_its_deliveries(alice, carol, listing, receiver):
    endpoint = endpoint_for(alice, receiver.url)
    running_lease(alice, listing)
    scan_and_deliver()
    own = client_for(alice).get(f"/api/v1/webhooks/{endpoint['id']}/deliveries")
    assert own.status_code == 200
    [delivery] = own.json()["results"]
    assert delivery["state"] == "succeeded" and delivery["tries"][0]["status_code"] == 200

    stranger = client_for(carol)
    for method, path in [
        ("get", f"/api/v1/webhooks/{endpoint['id']}"),
        ("get", f"/api/v1/webhooks/{endpoint['id']}/deliveries"),
        ("post", f"/api/v1/webhooks/{endpoint['id']}/rotate-secret"),
        ("delete", f"/api/v1/webhooks/{endpoint['id']}"),
    ]:
        response = getattr(stranger, method)(path)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "webhooks_not_found"
    assert stranger.get("/api/v1/webhooks").json()["results"] == []
    assert WebhookDelivery.objects.filter(endpoint_id=endpoint["id"]).count() == 1
