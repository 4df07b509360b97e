"""One error shape for every 4xx: {"error": {"code", "message", "detail"}}."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from marketplace.core.errors import ApplicationError

logger = logging.getLogger(__name__)

_DRF_CODES = {
    drf_exceptions.ParseError: "malformed_request",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.ValidationError: "invalid_input",
}


def error_body(code: str, message: str, detail=None) -> dict:
    return {"error": {"code": code, "message": message, "detail": detail or {}}}


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.extra), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        return Response(
            error_body("invalid_input", "The input is not valid.", detail),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real server error: let Django log it and answer 500

    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    refusal = getattr(context.get("request"), "credential_refusal", None)
    if isinstance(exc, drf_exceptions.NotAuthenticated) and refusal:
        # Credentials were sent but are of a kind this endpoint does not take (an agent's on
        # the user API): "not provided" would send the caller looking for a missing header.
        code, message = refusal
        response.data = error_body(code, message)
        return response
    if isinstance(exc, drf_exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        message = "The input is not valid."
    else:
        detail = {}
        message = str(exc.detail) if hasattr(exc, "detail") else str(exc)
        if isinstance(exc, drf_exceptions.Throttled) and exc.wait is not None:
            detail = {"retry_after_seconds": int(exc.wait)}
    response.data = error_body(code, message, detail)
    return response
