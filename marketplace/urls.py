from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from marketplace.core.views import HealthApi

api_v1 = [
    path("health", HealthApi.as_view(), name="health"),
    path("", include("marketplace.accounts.urls")),
    path("", include("marketplace.providers.urls")),
    path("", include("marketplace.listings.urls")),
    path("", include("marketplace.orders.urls")),
    path("", include("marketplace.benchmarks.urls")),
    path("", include("marketplace.payments.urls")),
    path("", include("marketplace.workloads.urls")),
    path("", include("marketplace.webhooks.urls")),
]

urlpatterns = [
    path("admin/dashboard/", include("marketplace.dashboard.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

handler400 = "marketplace.core.views.bad_request"
handler403 = "marketplace.core.views.permission_denied"
handler404 = "marketplace.core.views.not_found"
handler500 = "marketplace.core.views.server_error"
