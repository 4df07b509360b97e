"""The operator sees a provider's collateral on the provider's and the machine's admin pages."""

from __future__ import annotations

from django.urls import reverse

from marketplace.payments.models import ContractDeployment, Stake
from tests.factories import ListingFactory
from tests.payments.helpers import BOB, USDC


def test_provider_and_machine_pages_show_stake_requirement_and_shortfall(
    operator_client, bob_provider
):
    listing = ListingFactory(machine__provider=bob_provider)  # 8 GPUs: 250 USDC required
    ContractDeployment.objects.create(
        chain_id=31337, name="staking", address="0x" + "11" * 20, block_number=1, tx_hash="0x"
    )
    Stake.objects.create(chain_id=31337, address=BOB, staked=100 * USDC, provider=bob_provider)
    expected = (
        "staked $100.00 (100,000,000 units); locked by leases $0.00 (0 units); "
        "free $100.00 (100,000,000 units); required $250.00 (250,000,000 units) "
        "(x1, 0 rejected recently): short by $150.00 (150,000,000 units)"
    )
    for url in (
        reverse("admin:providers_provider_change", args=[bob_provider.pk]),
        reverse("admin:providers_machine_change", args=[listing.machine_id]),
    ):
        page = operator_client.get(url).content.decode()
        assert expected in page, url
