from rest_framework import serializers

from marketplace.webhooks.models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint


class EndpointCreateInputSerializer(serializers.Serializer):
    url = serializers.URLField(
        max_length=500,
        help_text="Where deliveries are POSTed. Must resolve to public addresses only; "
        "redirects are not followed.",
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        required=False,
        allow_empty=False,
        max_length=len(EventType.values),
        help_text="The event types to receive; all of them when left out.",
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)


class EndpointOutputSerializer(serializers.ModelSerializer):
    event_types = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField(help_text="UTC, ISO 8601.")
    secret_rotated_at = serializers.DateTimeField(
        allow_null=True, help_text="UTC, ISO 8601; null until the secret is first rotated."
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "event_types",
            "description",
            "is_active",
            "created_at",
            "secret_rotated_at",
        ]


class EndpointWithSecretOutputSerializer(EndpointOutputSerializer):
    secret = serializers.CharField(
        help_text="The signing secret. Shown only in this answer (creation or rotation): store "
        "it now."
    )

    class Meta(EndpointOutputSerializer.Meta):
        fields = [*EndpointOutputSerializer.Meta.fields, "secret"]


class AttemptOutputSerializer(serializers.ModelSerializer):
    started_at = serializers.DateTimeField(help_text="UTC, ISO 8601.")
    duration_ms = serializers.IntegerField(help_text="Milliseconds the POST took.")

    class Meta:
        model = WebhookAttempt
        fields = ["number", "started_at", "duration_ms", "status_code", "error"]


class DeliveryOutputSerializer(serializers.ModelSerializer):
    occurred_at = serializers.DateTimeField(help_text="When the event happened, UTC, ISO 8601.")
    created_at = serializers.DateTimeField(help_text="When it was queued, UTC, ISO 8601.")
    next_attempt_at = serializers.DateTimeField(
        help_text="UTC, ISO 8601: the earliest next try while the state is pending."
    )
    delivered_at = serializers.DateTimeField(allow_null=True, help_text="UTC, ISO 8601.")
    payload = serializers.JSONField(help_text="The JSON body POSTed (amounts in token units).")
    tries = AttemptOutputSerializer(many=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_key",
            "event_type",
            "occurred_at",
            "state",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
            "payload",
            "tries",
        ]
