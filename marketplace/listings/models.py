from django.db import models
from django.db.models import Q

from marketplace.core.models import TimestampedModel
from marketplace.providers.models import Machine, Provider

# Billing is per second on chain, so an hourly price must be a whole number of token units per
# second: with 6 decimals that is a price grid of 0.0036 USD per hour.
SECONDS_PER_HOUR = 3600


class Interconnect(models.TextChoices):
    NVLINK = "nvlink", "NVLink"
    INFINIBAND = "infiniband", "InfiniBand"
    PCIE = "pcie", "PCIe"
    NEURONLINK = "neuronlink", "NeuronLink"
    NONE = "none", "None"


class Precision(models.TextChoices):
    FP32 = "fp32", "FP32"
    TF32 = "tf32", "TF32"
    BF16 = "bf16", "BF16"
    FP16 = "fp16", "FP16"
    FP8 = "fp8", "FP8"
    INT8 = "int8", "INT8"


class ReservedTerm(models.TextChoices):
    ONE_MONTH = "1m", "1 month"
    ONE_YEAR = "1y", "1 year"
    THREE_YEARS = "3y", "3 years"


RESERVED_TERM_SECONDS = {
    ReservedTerm.ONE_MONTH: 30 * 86400,
    ReservedTerm.ONE_YEAR: 365 * 86400,
    ReservedTerm.THREE_YEARS: 3 * 365 * 86400,
}


SEARCHABLE = Q(is_searchable=True)


class Listing(TimestampedModel):
    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        CLOSED = "closed"

    machine = models.ForeignKey(Machine, on_delete=models.PROTECT, related_name="listings")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="listings")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # Denormalised "active listing on a listed machine", kept by the services that change either
    # side, so search filters one indexed column instead of joining machines on every request.
    is_searchable = models.BooleanField(default=False)

    accelerator_kind = models.CharField(max_length=20, choices=Machine.AcceleratorKind.choices)
    vendor = models.CharField(max_length=50)
    model = models.CharField(max_length=100)
    accelerator_count = models.PositiveIntegerField()
    memory_per_accelerator_gb = models.PositiveIntegerField()
    memory_bandwidth_gbps = models.PositiveIntegerField(help_text="GB/s per accelerator")
    interconnect = models.CharField(max_length=20, choices=Interconnect.choices)
    # Stored as ",fp32,bf16," so "supports X" is a portable LIKE on SQLite and PostgreSQL.
    precisions = models.CharField(max_length=64)
    vcpu_count = models.PositiveIntegerField()
    ram_gib = models.PositiveIntegerField()
    storage_gb = models.PositiveIntegerField()
    network_gbps = models.PositiveIntegerField()
    region = models.CharField(max_length=40)
    # The owner's own words (what the machine is good for, the host's network, support): shown
    # to renters as text, never parsed; the hardware facts beside it are the verified ones.
    description = models.TextField(max_length=2000, blank=True, default="")

    # Integer token units (6 decimals) per accelerator-hour, each a multiple of 3600.
    price_per_hour = models.PositiveBigIntegerField()
    interruptible_floor_per_hour = models.PositiveBigIntegerField(null=True, blank=True)

    # Set only by the benchmarks app from verified jobs: whole-machine fp32-family TFLOP/s.
    verified_tflops = models.FloatField(null=True, blank=True)
    # price_per_hour × accelerator_count / verified_tflops, kept with both inputs for sorting.
    price_per_tflop_hour = models.PositiveBigIntegerField(null=True, blank=True)
    # Whole-machine matmul TFLOP/s per precision from the newest verified job at each one, e.g.
    # {"fp32": 268.0, "bf16": 1980.5}: kept on the row (by publishing and by a receiver of verified
    # jobs, see listings.receivers) so search shows it without reading benchmark jobs.
    verified_tflops_by_precision = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["machine"],
                condition=~Q(status="closed"),
                name="one_open_listing_per_machine",
            ),
        ]
        # Partial indexes over searchable rows, one per sort order: a search walks one in order
        # and stops after a page, instead of sorting every match. (SQLite cannot seek on a
        # leading boolean column for `WHERE is_searchable`, but it matches the partial index.)
        indexes = [
            models.Index(
                fields=["price_per_hour", "id"], condition=SEARCHABLE, name="search_by_price"
            ),
            models.Index(
                fields=["verified_tflops", "id"], condition=SEARCHABLE, name="search_by_tflops"
            ),
            models.Index(
                fields=["price_per_tflop_hour", "id"],
                condition=SEARCHABLE,
                name="search_by_price_per_tflop",
            ),
            models.Index(
                fields=["region", "price_per_hour", "id"],
                condition=SEARCHABLE,
                name="search_by_region_price",
            ),
            # Equality filters that leave the sort order sparse in matches: a model or a fabric
            # that is dear sits at the far end of the price index (checked with EXPLAIN ANALYZE
            # at a million listings; see docs/architecture.md, "Search at a million listings").
            models.Index(
                fields=["model", "price_per_hour", "id"],
                condition=SEARCHABLE,
                name="search_by_model_price",
            ),
            models.Index(
                fields=["interconnect", "price_per_hour", "id"],
                condition=SEARCHABLE,
                name="search_by_fabric_price",
            ),
            # SQLite sorted a region's matches by figure in a temporary B-tree (30 ms at 20,000).
            models.Index(
                fields=["region", "verified_tflops", "id"],
                condition=SEARCHABLE,
                name="search_by_region_tflops",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.accelerator_count}× {self.model} in {self.region}"

    @property
    def precision_list(self) -> list[str]:
        return [p for p in self.precisions.split(",") if p]


class ReservedPrice(models.Model):
    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="reserved_prices")
    term = models.CharField(max_length=4, choices=ReservedTerm.choices)
    price_per_hour = models.PositiveBigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["listing", "term"], name="one_price_per_term"),
        ]

    def __str__(self) -> str:
        return f"{self.term}: {self.price_per_hour}/h"
