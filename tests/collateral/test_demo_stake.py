"""`make run`'s demo provider stakes what its machine needs before the demo listing is made."""

from __future__ import annotations

from django.core.management import call_command

from marketplace.accounts.models import User
from marketplace.listings.services import listing_publish
from marketplace.payments.collateral import provider_collateral
from marketplace.providers.models import Machine
from tests.factories import MachineFactory, ProviderFactory, UserFactory
from tests.payments.helpers import BOB, USDC


def test_demo_stake_covers_the_demo_machine_so_it_can_be_listed(deployed, capsys):
    owner = UserFactory(username="demo-provider", role=User.Role.PROVIDER_OWNER)
    provider = ProviderFactory(owner=owner, wallet_address=BOB)
    machine = MachineFactory(provider=provider, accelerator_count=1, state=Machine.State.VERIFIED)

    call_command("demo_stake")
    # The machine's 75 USDC and 10 USDC of headroom for the demo renter's leases.
    assert f"staked {85 * USDC} units" in capsys.readouterr().out
    state = provider_collateral(provider_id=provider.pk, adding_machine_id=machine.pk)
    assert (state.staked, state.shortfall) == (85 * USDC, 0)
    listing = listing_publish(
        user=owner, machine_id=machine.pk, region="local", price_per_hour=36_000
    )
    assert listing.is_searchable
    call_command("demo_stake")  # run again (a restart): nothing more to stake
    assert "already covers" in capsys.readouterr().out
