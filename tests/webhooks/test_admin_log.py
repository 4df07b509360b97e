"""The delivery log in the admin: read-only, amounts in USD with units, no secret anywhere."""

from django.test import Client

from marketplace.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.factories import UserFactory
from tests.webhooks.conftest import endpoint_for, running_lease, scan_and_deliver


def test_staff_read_the_delivery_log_with_usd_and_no_save_or_secret(alice, listing, receiver):
    endpoint = endpoint_for(alice, receiver.url)
    receiver.statuses = [500]
    order = running_lease(alice, listing)
    scan_and_deliver()
    delivery = WebhookDelivery.objects.get()
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    index = admin.get("/admin/").content.decode()
    assert ">Webhooks<" in index and ">Webhook deliveries<" in index
    listing_page = admin.get("/admin/webhooks/webhookdelivery/").content.decode()
    assert f"order:{order.pk}:active" in listing_page
    page = admin.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert "$" in page and "per accelerator-hour" in page  # price_per_hour in USD with its unit
    assert f"{order.escrow_amount:,} units" in page
    assert "500" in page  # the failed try, in the attempts log
    assert 'name="_save"' not in page and "deletelink" not in page
    endpoint_page = admin.get(
        f"/admin/webhooks/webhookendpoint/{endpoint['id']}/change/"
    ).content.decode()
    assert endpoint["secret"] not in endpoint_page
    assert admin.post(f"/admin/webhooks/webhookdelivery/{delivery.pk}/delete/").status_code == 403
    assert WebhookEndpoint.objects.count() == 1
