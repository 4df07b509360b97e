"""Publishes a listing for the demo provider's newest verified machine (CPU sheet), so it shows
up in GET /api/v1/listings with its measured TFLOP/s."""

from django.core.management.base import BaseCommand, CommandError

from marketplace.benchmarks.models import BenchmarkJob
from marketplace.benchmarks.services import _record_listing_tflops
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
        precisions = sorted(
            set(
                BenchmarkJob.objects.filter(machine=machine, state="verified").values_list(
                    "precision", flat=True
                )
            )
        )
        listing = listing_publish(
            user=machine.provider.owner,
            machine_id=machine.pk,
            accelerator_kind="cpu",
            vendor=machine.accelerator_vendor or "generic",
            model=machine.accelerator_model[:100],
            accelerator_count=1,
            memory_per_accelerator_gb=max(1, machine.ram_gib),
            memory_bandwidth_gbps=20,
            interconnect="none",
            precisions=precisions or ["fp32"],
            vcpu_count=machine.vcpu_count,
            ram_gib=machine.ram_gib,
            storage_gb=50,
            network_gbps=1,
            region="local",
            price_per_hour=36_000,  # 0.036 USD per hour, a multiple of 3600 units
            interruptible_floor_per_hour=18_000,
        )
        fp32 = (
            BenchmarkJob.objects.filter(machine=machine, state="verified", kind="matmul")
            .filter(precision="fp32")
            .order_by("-finished_at")
            .first()
        )
        if fp32 is not None:
            # Onboarding recorded the figure on listings that existed then; this one is new.
            _record_listing_tflops(machine.pk, fp32.measured_tflops)
        listing.refresh_from_db()
        self.stdout.write(
            f"listing {listing.pk} for machine {machine.pk}: {listing.verified_tflops} TFLOP/s"
        )
