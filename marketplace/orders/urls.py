from django.urls import path

from marketplace.orders import apis

urlpatterns = [
    path("orders", apis.OrderListCreateApi.as_view(), name="order-list"),
    path("orders/<int:order_id>", apis.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<int:order_id>/cancel", apis.OrderCancelApi.as_view(), name="order-cancel"),
    path("orders/<int:order_id>/stop", apis.OrderStopApi.as_view(), name="order-stop"),
]
