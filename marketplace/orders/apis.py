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
    @extend_schema(responses=OrderOutputSerializer)
    def get(self, request, order_id: int):
        return Response(
            OrderOutputSerializer(
                selectors.order_get_for(user=request.user, order_id=order_id)
            ).data
        )


class OrderCancelApi(APIView):
    @extend_schema(request=None, responses=OrderOutputSerializer)
    def post(self, request, order_id: int):
        order = services.order_cancel(
            order_id=order_id, user=request.user, reason="cancelled by renter"
        )
        return Response(OrderOutputSerializer(order).data)


class OrderStopApi(APIView):
    @extend_schema(request=None, responses=OrderOutputSerializer)
    def post(self, request, order_id: int):
        order = services.order_stop_by_renter(order_id=order_id, user=request.user)
        return Response(OrderOutputSerializer(order).data)
