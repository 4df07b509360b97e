import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.permissions import IsRenter
from marketplace.core.errors import ApplicationError
from marketplace.orders import selectors, services
from marketplace.orders.filters import OrderFilter
from marketplace.orders.serializers import OrderCreateInputSerializer, OrderOutputSerializer

_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{8,100}$")

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description=(
        "8–100 characters [A-Za-z0-9._:-]; a retry with the same key returns the same order."
    ),
)


class OrderListCreateApi(ListAPIView):
    serializer_class = OrderOutputSerializer
    filterset_class = OrderFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return self.serializer_class.Meta.model.objects.none()
        return selectors.order_list_for(user=self.request.user)

    @extend_schema(
        summary="List orders",
        description="A renter's own orders; a provider owner's, the orders on their machines; "
        "staff, all. Newest first, filterable by state.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create an order (rent accelerators)",
        description="Orders `accelerators` of a listing: `on_demand` for `hours`, `reserved` "
        "for a `reserved_term`, or `interruptible` with a `bid_per_hour` at or above the "
        "listing's floor (a higher funded bid may pre-empt it). The order is `created` and "
        "holds the accelerators until `hold_expires_at` (UTC, 600 s by default); pay for it "
        "before then with GET /api/v1/orders/{order_id}/funding (approve, then fund). "
        "Prices are token units per accelerator-hour (6 decimals: 1,000,000 units = 1 USD); "
        "`escrow_amount` is the whole deposit. The Idempotency-Key header makes a retry safe: "
        "the same key and body return the first order (200), another body is a 422. Renters "
        "only; 409 when the listing lacks free accelerators or the renter has too many unpaid "
        "orders.",
        request=OrderCreateInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: OrderOutputSerializer, 200: OrderOutputSerializer},
    )
    def post(self, request):
        if not IsRenter().has_permission(request, self):
            self.permission_denied(request, message=IsRenter.message)
        key = request.headers.get("Idempotency-Key", "")
        if not _IDEMPOTENCY_KEY.match(key):
            raise ApplicationError(
                "An Idempotency-Key header of 8–100 characters [A-Za-z0-9._:-] is required.",
                code="orders_idempotency_key_required",
            )
        data = OrderCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order, created = services.order_create(
            renter=request.user, idempotency_key=key, **data.validated_data
        )
        return Response(
            OrderOutputSerializer(order).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class OrderDetailApi(APIView):
    @extend_schema(
        summary="Get an order",
        description="One order, for its renter, the owner of its machine, or staff (404 for "
        "anyone else). `state` moves created → funded → active → completed | cancelled | "
        "failed → settled; `amount_owed_now` is what the lease has cost so far, to the "
        "second, in token units.",
        responses=OrderOutputSerializer,
    )
    def get(self, request, order_id: int):
        return Response(
            OrderOutputSerializer(
                selectors.order_get_for(user=request.user, order_id=order_id)
            ).data
        )


class OrderCancelApi(APIView):
    @extend_schema(
        summary="Cancel an order",
        description="Cancels an order that has not started (created or funded): it releases "
        "its accelerators and a deposit already made is refunded in full at settlement. A "
        "running lease is ended with POST /api/v1/orders/{order_id}/stop instead. Renter or "
        "staff; 409 from any other state.",
        request=None,
        responses=OrderOutputSerializer,
    )
    def post(self, request, order_id: int):
        order = services.order_cancel(
            order_id=order_id, user=request.user, reason="cancelled by renter"
        )
        return Response(OrderOutputSerializer(order).data)


class OrderStopApi(APIView):
    @extend_schema(
        summary="Stop a running lease",
        description="Ends an active lease now. On-demand and interruptible leases pay for the "
        "seconds used and get the rest of the escrow back; a reserved term is a commitment "
        "and pays in full. Settlement on chain follows (state `settled`, webhook "
        "`lease.settled`). Renter or staff; 409 if the lease is not active (already stopped, "
        "or never started).",
        request=None,
        responses=OrderOutputSerializer,
    )
    def post(self, request, order_id: int):
        order = services.order_stop_by_renter(order_id=order_id, user=request.user)
        return Response(OrderOutputSerializer(order).data)
