from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketplace.listings import selectors
from marketplace.listings.models import Listing, ReservedTerm
from marketplace.listings.services import MAX_PRICE_PER_HOUR

_PRICE = {"min_value": 1, "max_value": MAX_PRICE_PER_HOUR}


class StrictIntegerField(serializers.IntegerField):
    """Refuses "12", 12.0 and true: money and counts must arrive as JSON integers."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """Text only: DRF's CharField would turn 42 into "42"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ReservedPricesField(serializers.DictField):
    child = StrictIntegerField(**_PRICE)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        unknown = set(value) - set(ReservedTerm.values)
        if unknown:
            raise serializers.ValidationError(
                f"Unknown reserved terms {sorted(unknown)}; use {ReservedTerm.values}."
            )
        return value


# A listing's hardware comes from the verified machine (listings.services._verified_sheet); a
# body that still types it is refused rather than silently ignored, so nobody believes they set
# it.
VERIFIED_FIELDS = (
    "accelerator_kind",
    "vendor",
    "model",
    "accelerator_count",
    "memory_per_accelerator_gb",
    "memory_bandwidth_gbps",
    "interconnect",
    "precisions",
    "vcpu_count",
    "ram_gib",
)


class ListingPublishInputSerializer(serializers.Serializer):
    """Only what the platform cannot know: prices, region, a description, storage and
    network."""

    machine_id = StrictIntegerField(min_value=1)
    region = serializers.RegexField(r"^[a-z0-9][a-z0-9-]{1,39}$")
    description = StrictCharField(
        required=False, default="", allow_blank=True, max_length=2000, trim_whitespace=True
    )
    price_per_hour = StrictIntegerField(**_PRICE)
    interruptible_floor_per_hour = StrictIntegerField(required=False, allow_null=True, **_PRICE)
    reserved_prices = ReservedPricesField(required=False, default=dict)
    storage_gb = StrictIntegerField(min_value=0, max_value=10**7, required=False, default=0)
    network_gbps = StrictIntegerField(min_value=0, max_value=100_000, required=False, default=0)

    def to_internal_value(self, data):
        typed = sorted(set(VERIFIED_FIELDS) & set(data)) if isinstance(data, dict) else []
        if typed:
            raise serializers.ValidationError(
                {
                    name: "Set from what the platform verified on the machine; do not send it."
                    for name in typed
                }
            )
        return super().to_internal_value(data)


class ListingPricesInputSerializer(serializers.Serializer):
    price_per_hour = StrictIntegerField(required=False, **_PRICE)
    interruptible_floor_per_hour = StrictIntegerField(required=False, allow_null=True, **_PRICE)
    reserved_prices = ReservedPricesField(required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Give at least one price to change.")
        if (
            "interruptible_floor_per_hour" in attrs
            and attrs["interruptible_floor_per_hour"] is None
        ):
            attrs.pop("interruptible_floor_per_hour")
            attrs["clear_interruptible_floor"] = True
        return attrs


class ListingStatusInputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Listing.Status.choices)


class ListingOutputSerializer(serializers.ModelSerializer):
    precisions = serializers.ListField(source="precision_list", child=serializers.CharField())
    reserved_prices = serializers.SerializerMethodField()
    machine_id = serializers.IntegerField()
    provider_id = serializers.IntegerField()
    free_accelerators = serializers.SerializerMethodField(
        help_text="Accelerators not held by a funded lease or an unfunded order's hold: what an "
        "order can get without pre-empting anyone."
    )

    class Meta:
        model = Listing
        fields = [
            "id",
            "machine_id",
            "provider_id",
            "status",
            "accelerator_kind",
            "vendor",
            "model",
            "accelerator_count",
            "free_accelerators",
            "memory_per_accelerator_gb",
            "memory_bandwidth_gbps",
            "interconnect",
            "precisions",
            "vcpu_count",
            "ram_gib",
            "storage_gb",
            "network_gbps",
            "region",
            "description",
            "price_per_hour",
            "interruptible_floor_per_hour",
            "reserved_prices",
            "verified_tflops",
            "verified_tflops_by_precision",
            "price_per_tflop_hour",
            "created_at",
        ]
        extra_kwargs = {
            "verified_tflops_by_precision": {
                "help_text": "Whole-machine matmul TFLOP/s per precision, from the newest "
                'verified job at each, e.g. {"fp32": 268.0, "bf16": 1980.5}.'
            }
        }

    def get_free_accelerators(self, listing) -> int:
        # A page has it attached already (one query per page, in the view); a single listing
        # that a write service returned is looked up on its own.
        if not hasattr(listing, "free_accelerators"):
            selectors.listings_attach_free_accelerators([listing])
        return listing.free_accelerators

    def get_reserved_prices(self, listing) -> dict[str, int]:
        return {rp.term: rp.price_per_hour for rp in listing.reserved_prices.all()}


class ListingCheckOutputSerializer(serializers.Serializer):
    kind = serializers.CharField()
    precision = serializers.CharField()
    last_tflops_per_device = serializers.FloatField(
        help_text="TFLOP/s of the newest verified job of this kernel and precision, on one "
        "device (server-timed)."
    )
    last_checked_at = serializers.DateTimeField(help_text="When that job was verified (UTC).")
    verified_jobs = serializers.IntegerField()


class ListingReputationOutputSerializer(serializers.Serializer):
    pass_ratio = serializers.FloatField(
        allow_null=True, help_text="Passed / decided checks over the recent window (0..1)."
    )
    recent_checks = serializers.IntegerField()
    uptime_ratio = serializers.FloatField(
        allow_null=True, help_text="Share of heartbeat samples the machine was online (0..1)."
    )
    score = serializers.FloatField(allow_null=True, help_text="pass_ratio x uptime_ratio.")


class ListingVerificationOutputSerializer(serializers.Serializer):
    last_checked_at = serializers.DateTimeField(
        allow_null=True, help_text="The newest verified check of this machine (UTC)."
    )
    checks = ListingCheckOutputSerializer(many=True)
    reputation = ListingReputationOutputSerializer()


class ListingDetailOutputSerializer(ListingOutputSerializer):
    """A listing as search shows it, plus what the platform checked and when."""

    verification = serializers.SerializerMethodField()

    class Meta(ListingOutputSerializer.Meta):
        fields = [*ListingOutputSerializer.Meta.fields, "verification"]

    @extend_schema_field(ListingVerificationOutputSerializer)
    def get_verification(self, listing) -> dict:
        return ListingVerificationOutputSerializer(
            selectors.listing_verification_public(listing=listing)
        ).data
