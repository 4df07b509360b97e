from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.payments import selectors
from marketplace.payments.serializers import (
    FundingOutputSerializer,
    OrderChainOutputSerializer,
    ProviderChainOutputSerializer,
)


class OrderFundingApi(APIView):
    @extend_schema(responses={200: FundingOutputSerializer})
    def get(self, request, order_id: int):
        data = selectors.order_funding_instructions(user=request.user, order_id=order_id)
        return Response(FundingOutputSerializer(data).data)


class OrderChainApi(APIView):
    @extend_schema(responses={200: OrderChainOutputSerializer})
    def get(self, request, order_id: int):
        data = selectors.order_chain_state(user=request.user, order_id=order_id)
        return Response(OrderChainOutputSerializer(data).data)


class ProviderChainApi(APIView):
    # Stakes, slashes and rewards are public on chain anyway; any signed-in user may read them.
    @extend_schema(responses={200: ProviderChainOutputSerializer})
    def get(self, request, provider_id: int):
        data = selectors.provider_chain_state(provider_id=provider_id)
        return Response(ProviderChainOutputSerializer(data).data)
