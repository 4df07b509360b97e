from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


class HealthApi(APIView):
    """Liveness and database reachability; also the trivial endpoint benchmarks compare to."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        responses=inline_serializer("Health", {"status": serializers.CharField()}),
    )
    def get(self, request):
        connection.ensure_connection()
        return Response({"status": "ok"})


def not_found(request, exception=None):
    from django.http import JsonResponse

    return JsonResponse(
        {"error": {"code": "not_found", "message": "No such resource.", "detail": {}}}, status=404
    )


def server_error(request):
    from django.http import JsonResponse

    return JsonResponse(
        {"error": {"code": "server_error", "message": "Internal error.", "detail": {}}}, status=500
    )
