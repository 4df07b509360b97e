"""Middleware that keeps hostile or unexpected traffic under /api/ inside the API's contract:
a nested body is a 400 whatever the route, and every error is the JSON error shape."""

from http import HTTPStatus

from django.conf import settings
from django.http import JsonResponse

from marketplace.core.exceptions import error_body
from workers.verification import safe_json

API_PREFIX = "/api/"
GZIP_MAGIC = b"\x1f\x8b"

# Codes for errors that Django (not DRF) answers; DRF's own use the same names.
STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
}
# Headers that carry meaning on an error and must survive the rewrite.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Vary")


def is_api_request(request) -> bool:
    return request.path.startswith(API_PREFIX)


def status_error(status: int, message: str | None = None) -> JsonResponse:
    code = STATUS_CODES.get(status) or ("server_error" if status >= 500 else "error")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return JsonResponse(error_body(code, message or f"{phrase}."), status=status)


class ApiErrorShapeMiddleware:
    """Outermost: an error answered under /api/ by anything but the API's exception handler
    (Django's DEBUG pages, a response built by a middleware, a non-DRF view) is rewritten into
    the error shape with its status kept. Clients then need one error parser, not two."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code < 400
            or not is_api_request(request)
            or getattr(response, "streaming", False)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        shaped = status_error(response.status_code)
        for header in _KEPT_HEADERS:
            if header in response:
                shaped[header] = response[header]
        return shaped


class ApiBodyDepthMiddleware:
    """Refuses a body nested deeper than safe_json.MAX_DEPTH on every API route, before any view
    runs, including routes that never read their body: the answer to a nested body is the same
    400 everywhere. Parsers bound the depth again themselves; this layer makes the answer
    uniform and keeps a hostile body from reaching view code at all.

    Skipped, and left to the route's own parser: gzip bodies (the agent's answers, which the
    benchmark services inflate with a cap and parse with safe_json) and bodies larger than
    DATA_UPLOAD_MAX_MEMORY_SIZE (which request.body would refuse to buffer)."""

    METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            request.method in self.METHODS
            and is_api_request(request)
            and self._scannable(request)
            and request.body[:2] != GZIP_MAGIC  # no JSON text starts with 0x1f
        ):
            try:
                safe_json.check_depth(request.body)
            except safe_json.JsonTooDeep as exc:
                return JsonResponse(
                    error_body("malformed_request", f"JSON parse error - {exc}"), status=400
                )
            except UnicodeDecodeError:
                pass  # not UTF-8/16/32: the route's parser decides (and refuses) it
        return self.get_response(request)

    @staticmethod
    def _scannable(request) -> bool:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return False
        cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        return length > 0 and (cap is None or length <= cap) and encoding in ("", "identity")
