from rest_framework import serializers

from marketplace.listings.models import ReservedTerm
from marketplace.listings.serializers import StrictIntegerField
from marketplace.orders import selectors
from marketplace.orders.models import Order
from marketplace.orders.services import MAX_ON_DEMAND_HOURS


class OrderCreateInputSerializer(serializers.Serializer):
    listing_id = StrictIntegerField(min_value=1)
    pricing_mode = serializers.ChoiceField(choices=Order.PricingMode.choices)
    accelerators = StrictIntegerField(min_value=1, max_value=4096)
    hours = StrictIntegerField(min_value=1, max_value=MAX_ON_DEMAND_HOURS, required=False)
    reserved_term = serializers.ChoiceField(choices=ReservedTerm.choices, required=False)
    bid_per_hour = StrictIntegerField(min_value=1, max_value=10**12, required=False)


class OrderOutputSerializer(serializers.ModelSerializer):
    listing_id = serializers.IntegerField()
    machine_id = serializers.IntegerField()
    provider_id = serializers.IntegerField()
    renter_id = serializers.IntegerField()
    used_seconds = serializers.SerializerMethodField()
    amount_owed_now = serializers.SerializerMethodField()
    refund_amount = serializers.IntegerField(allow_null=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "state",
            "listing_id",
            "machine_id",
            "provider_id",
            "renter_id",
            "pricing_mode",
            "reserved_term",
            "accelerators",
            "price_per_hour",
            "rate_per_second",
            "duration_seconds",
            "escrow_amount",
            "lease_id",
            "created_at",
            "hold_expires_at",
            "funded_at",
            "started_at",
            "ended_at",
            "settled_at",
            "end_reason",
            "used_seconds",
            "billable_seconds",
            "amount_owed",
            "amount_owed_now",
            "refund_amount",
        ]

    def get_used_seconds(self, order) -> int:
        return selectors.order_used_seconds(order=order)

    def get_amount_owed_now(self, order) -> int:
        return selectors.order_amount_owed(order=order)
