"""Publishes a listing for the demo provider's newest verified machine, so it shows up in
GET /api/v1/listings with its measured TFLOP/s. The owner sets prices and region; the hardware
(kind, model, devices, precisions) is what onboarding verified."""

from django.core.management.base import BaseCommand, CommandError

from marketplace.listings.models import Listing
from marketplace.listings.services import listing_publish
from marketplace.providers.models import Machine

from .demo_provider import USERNAME


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options):
        machines = Machine.objects.filter(provider__owner__username=USERNAME).order_by("-pk")
        machine = machines.first()
        if machine is None:
            raise CommandError("No demo machine: run demo_provider and register the agent first.")
        existing = Listing.objects.filter(machine=machine).exclude(status="closed").first()
        if existing is not None:
            self.stdout.write(f"machine {machine.pk} already has listing {existing.pk}")
            return
        if machine.state != Machine.State.VERIFIED:
            raise CommandError(
                f"Machine {machine.pk} is '{machine.state}': wait until onboarding passes."
            )
        listing = listing_publish(
            user=machine.provider.owner,
            machine_id=machine.pk,
            storage_gb=50,
            network_gbps=1,
            region="local",
            price_per_hour=36_000,  # 0.036 USD per hour, a multiple of 3600 units
            interruptible_floor_per_hour=18_000,
        )
        self.stdout.write(
            f"listing {listing.pk} for machine {machine.pk}: {listing.verified_tflops} TFLOP/s"
        )
