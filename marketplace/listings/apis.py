from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.permissions import IsProviderOwner
from marketplace.core.pagination import CappedCountPagination
from marketplace.listings import search_cache, selectors, services
from marketplace.listings.filters import ListingSearchFilter
from marketplace.listings.serializers import (
    ListingDetailOutputSerializer,
    ListingOutputSerializer,
    ListingPricesInputSerializer,
    ListingPublishInputSerializer,
    ListingStatusInputSerializer,
)

# What a search page depends on: its filters and its place in the results.
SEARCH_PARAMS = frozenset([*ListingSearchFilter.base_filters, "page", "page_size", "cursor"])


class ListingSearchApi(ListAPIView):
    """Public search over listings on verified machines."""

    permission_classes = [AllowAny]
    serializer_class = ListingOutputSerializer
    filterset_class = ListingSearchFilter
    pagination_class = CappedCountPagination

    def get_queryset(self):
        return selectors.listing_search()

    def list(self, request, *args, **kwargs):
        # A rendered page is the same for every caller; see search_cache for invalidation.
        key = search_cache.key_for(request, params=SEARCH_PARAMS)
        cached = search_cache.lookup(key)
        if cached.body is not None:
            return HttpResponse(cached.body, content_type="application/json")
        queryset = self.filter_queryset(self.get_queryset())
        # Several model names matched (the filter strips the value as this does): read each
        # one's rows along its own (model, price) index; see CappedCountPagination._fetch.
        fragment = request.query_params.get("model", "").strip()
        if fragment:
            self.page_partition = ("model", selectors.listing_models_matching(fragment))
        rows = self.paginate_queryset(queryset.values(*selectors.SEARCH_COLUMNS))
        results, next_change = selectors.listings_search_rows(
            rows, holds_anywhere="min_free" in request.query_params
        )
        body = JSONRenderer().render(self.paginator.get_paginated_response(results).data)
        seconds = search_cache.ttl_seconds()
        if next_change is not None:
            seconds = min(seconds, (next_change - timezone.now()).total_seconds())
        search_cache.store(key, generation=cached.generation, body=body, seconds=seconds)
        return HttpResponse(body, content_type="application/json")

    @extend_schema(request=ListingPublishInputSerializer, responses={201: ListingOutputSerializer})
    def post(self, request):
        if not IsProviderOwner().has_permission(request, self):
            self.permission_denied(request, message=IsProviderOwner.message)
        data = ListingPublishInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        listing = services.listing_publish(user=request.user, **data.validated_data)
        return Response(ListingOutputSerializer(listing).data, status=status.HTTP_201_CREATED)


class ListingDetailApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=ListingDetailOutputSerializer)
    def get(self, request, listing_id: int):
        return Response(
            ListingDetailOutputSerializer(selectors.listing_get_public(listing_id=listing_id)).data
        )


class MyListingsApi(ListAPIView):
    permission_classes = [IsProviderOwner]
    serializer_class = ListingOutputSerializer
    # The same paginated schema component as search: one pagination for listing pages.
    pagination_class = CappedCountPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return self.serializer_class.Meta.model.objects.none()
        return selectors.listing_list_for_owner(user=self.request.user)

    def paginate_queryset(self, queryset):
        return selectors.listings_attach_free_accelerators(super().paginate_queryset(queryset))


class ListingPricesApi(APIView):
    permission_classes = [IsProviderOwner]

    @extend_schema(request=ListingPricesInputSerializer, responses=ListingOutputSerializer)
    def patch(self, request, listing_id: int):
        data = ListingPricesInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        listing = services.listing_update_prices(
            listing_id=listing_id, user=request.user, **data.validated_data
        )
        return Response(ListingOutputSerializer(listing).data)


class ListingStatusApi(APIView):
    permission_classes = [IsProviderOwner]

    @extend_schema(request=ListingStatusInputSerializer, responses=ListingOutputSerializer)
    def post(self, request, listing_id: int):
        data = ListingStatusInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        listing = services.listing_set_status(
            listing_id=listing_id, user=request.user, status=data.validated_data["status"]
        )
        return Response(ListingOutputSerializer(listing).data)
