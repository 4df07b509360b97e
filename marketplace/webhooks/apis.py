from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.webhooks import selectors, services
from marketplace.webhooks.serializers import (
    DeliveryOutputSerializer,
    EndpointCreateInputSerializer,
    EndpointOutputSerializer,
    EndpointWithSecretOutputSerializer,
)

_SIGNING = (
    " Each delivery is a POST of JSON `{id, type, occurred_at, data}` with the headers "
    "`X-Marketplace-Signature: t=<unix seconds>,v1=<hex>` (a second v1 during the day "
    "after a secret rotation), `X-Marketplace-Event`, "
    "`X-Marketplace-Event-Id` (the same as the body's `id`: deduplicate on it, a delivery may "
    "arrive twice) and `X-Marketplace-Delivery`. To verify: a v1 must equal "
    "hex(HMAC-SHA256(secret, t + '.' + raw body)), compared in constant time, and t must be "
    "within 300 seconds of your clock (replay window). Answer 2xx within 5 seconds; anything "
    "else (a redirect included) is retried with exponential backoff (10 s doubling to 1 h, "
    "jittered) up to 10 tries, then the delivery is marked failed."
)


class EndpointListCreateApi(ListAPIView):
    serializer_class = EndpointOutputSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return EndpointOutputSerializer.Meta.model.objects.none()
        return selectors.endpoint_list_for(user=self.request.user)

    @extend_schema(
        summary="List your webhook endpoints",
        description="Your endpoints, oldest first. Secrets are never shown here.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Register a webhook endpoint",
        description="Registers a URL to receive events about your leases (as a renter) or your "
        "machines and their leases (as a provider owner): lease.active, lease.preempted, "
        "lease.ended, lease.settled, machine.suspended, machine.reinstated, provider.slashed. "
        "An endpoint receives events that happen after it was created. The answer carries the "
        "signing secret, shown this once." + _SIGNING,
        request=EndpointCreateInputSerializer,
        responses={201: EndpointWithSecretOutputSerializer},
    )
    def post(self, request):
        data = EndpointCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(
            user=request.user,
            url=data.validated_data["url"],
            event_types=data.validated_data.get("event_types", []),
            description=data.validated_data.get("description", ""),
        )
        return Response(
            EndpointWithSecretOutputSerializer(endpoint).data, status=status.HTTP_201_CREATED
        )


class EndpointDetailApi(APIView):
    @extend_schema(
        summary="Get a webhook endpoint",
        description="One of your endpoints (without its secret).",
        responses=EndpointOutputSerializer,
    )
    def get(self, request, endpoint_id: int):
        endpoint = selectors.endpoint_get_for(user=request.user, endpoint_id=endpoint_id)
        return Response(EndpointOutputSerializer(endpoint).data)

    @extend_schema(
        summary="Delete a webhook endpoint",
        description="Deletes the endpoint and its delivery log; nothing more is sent to it.",
        responses={204: None},
    )
    def delete(self, request, endpoint_id: int):
        services.endpoint_delete(user=request.user, endpoint_id=endpoint_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretApi(APIView):
    @extend_schema(
        summary="Rotate a webhook endpoint's signing secret",
        description="Returns a new secret, shown this once. Every delivery from now on, "
        "retries included, is signed with it; for 24 hours (WEBHOOK_SECRET_ROLLOVER_SECONDS) "
        "the old secret signs too (a second `v1` in the header), so the receiver can switch "
        "without losing deliveries. If the old secret leaked, rotate twice: the second "
        "rotation ends the first one's rollover.",
        request=None,
        responses=EndpointWithSecretOutputSerializer,
    )
    def post(self, request, endpoint_id: int):
        endpoint = services.endpoint_rotate_secret(user=request.user, endpoint_id=endpoint_id)
        return Response(EndpointWithSecretOutputSerializer(endpoint).data)


class DeliveryListApi(ListAPIView):
    serializer_class = DeliveryOutputSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return DeliveryOutputSerializer.Meta.model.objects.none()
        return selectors.delivery_list_for(
            user=self.request.user, endpoint_id=self.kwargs["endpoint_id"]
        )

    @extend_schema(
        summary="List an endpoint's deliveries",
        description="The delivery log, newest first: each event queued for the endpoint, its "
        "state (pending, succeeded, failed), and every try with the receiver's status code or "
        "the error (timeout, refused address, connection refused).",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
