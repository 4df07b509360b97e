from django.urls import path

from marketplace.listings import apis

urlpatterns = [
    path("listings", apis.ListingSearchApi.as_view(), name="listing-search"),
    path("listings/mine", apis.MyListingsApi.as_view(), name="listing-mine"),
    path("listings/<int:listing_id>", apis.ListingDetailApi.as_view(), name="listing-detail"),
    path(
        "listings/<int:listing_id>/prices", apis.ListingPricesApi.as_view(), name="listing-prices"
    ),
    path(
        "listings/<int:listing_id>/status", apis.ListingStatusApi.as_view(), name="listing-status"
    ),
]
