from django.urls import path

from marketplace.payments import apis

urlpatterns = [
    path("orders/<int:order_id>/funding", apis.OrderFundingApi.as_view(), name="order-funding"),
    path("orders/<int:order_id>/chain", apis.OrderChainApi.as_view(), name="order-chain"),
    path(
        "providers/<int:provider_id>/chain",
        apis.ProviderChainApi.as_view(),
        name="provider-chain",
    ),
    path(
        "providers/<int:provider_id>/staking",
        apis.ProviderStakingApi.as_view(),
        name="provider-staking",
    ),
    path("credits/<str:address>", apis.CreditApi.as_view(), name="credit"),
]
