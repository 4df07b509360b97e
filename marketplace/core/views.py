from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.db import connection
from django.views import csrf, defaults
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.core.middleware import status_error


class HealthApi(APIView):
    """Liveness and database reachability; also the trivial endpoint benchmarks compare to."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        summary="Health check",
        description='`{"status": "ok"}` when the server is up and reaches its database. '
        "No credentials needed.",
        responses=inline_serializer("Health", {"status": serializers.CharField()}),
    )
    def get(self, request):
        connection.ensure_connection()
        return Response({"status": "ok"})


# Django's error handlers (marketplace/urls.py) and CSRF failure view. The admin is HTML for
# people and keeps Django's pages; everything else is an API client's and gets the error shape.
# A bad Host header arrives here as a 400: never call request.get_host() in these views.


def _html(request) -> bool:
    return request.path.startswith("/admin/")


def bad_request(request, exception=None):
    if _html(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, DisallowedHost):
        return status_error(400, "The Host header names a host this server does not serve.")
    if isinstance(exception, RequestDataTooBig):
        return status_error(413, "The request body is larger than this server accepts.")
    return status_error(400, "The request could not be understood.")


def permission_denied(request, exception=None):
    if _html(request):
        return defaults.permission_denied(request, exception)
    return status_error(403, "You do not have permission to perform this action.")


def not_found(request, exception=None):
    if _html(request):
        return defaults.page_not_found(request, exception)
    return status_error(404, "No such resource.")


def server_error(request):
    if _html(request):
        return defaults.server_error(request)
    return status_error(500, "Internal error.")


def csrf_failure(request, reason=""):
    if _html(request):
        return csrf.csrf_failure(request, reason)
    return status_error(403, f"CSRF check failed: {reason}")
