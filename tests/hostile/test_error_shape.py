"""Issue 8 §4: every error under /api/ is the JSON error shape {"error": {code, message,
detail}}, whichever layer answers it (DRF, Django's handlers, Django's DEBUG pages); the admin,
which people read, keeps Django's HTML pages."""

import json

import pytest
from rest_framework.test import APIClient

from tests.api.helpers import assert_error
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

# Pass str.isdigit() but not int(): superscript two, circled one.
UNICODE_DIGITS = ["²", "①", "¹²"]


def _client() -> APIClient:
    # Answers what a real server would instead of re-raising the view's exception in the test.
    return APIClient(raise_request_exception=False)


@pytest.mark.parametrize("raw", UNICODE_DIGITS)
def test_search_page_with_unicode_digits_is_not_found(raw, listing):
    assert_error(_client().get("/api/v1/listings", {"page": raw}), 404, "not_found")


@pytest.mark.parametrize("raw", UNICODE_DIGITS)
def test_search_page_size_with_unicode_digits_is_invalid_input(raw, listing):
    assert_error(_client().get("/api/v1/listings", {"page_size": raw}), 400, "invalid_input")


@pytest.mark.parametrize("raw", UNICODE_DIGITS)
def test_list_page_size_with_unicode_digits_is_invalid_input(raw, alice):
    """The default pagination (every other list) had the same isdigit() check."""
    client = client_for(alice)
    client.raise_request_exception = False
    assert_error(client.get("/api/v1/orders", {"page_size": raw}), 400, "invalid_input")


def test_arabic_indic_and_oversized_page_numbers_are_refused(listing):
    client = _client()
    assert_error(client.get("/api/v1/listings", {"page": "١"}), 404, "not_found")
    assert_error(client.get("/api/v1/listings", {"page": "9" * 5000}), 404, "not_found")
    assert _client().get("/api/v1/listings", {"page": "1", "page_size": "5"}).status_code == 200


def test_bad_host_under_the_api_is_the_error_shape():
    response = _client().get("/api/v1/health", HTTP_HOST="evil.example")
    assert_error(response, 400, "bad_request")


def test_bad_host_on_the_admin_keeps_djangos_page():
    response = _client().get("/admin/login/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_a_crashing_api_view_answers_the_error_shape(monkeypatch):
    def crash(self, request):
        raise RuntimeError("a bug")

    monkeypatch.setattr("marketplace.core.views.HealthApi.get", crash)
    assert_error_5xx(_client().get("/api/v1/health"))


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_api_errors_are_the_error_shape_even_with_debug_pages(settings, monkeypatch, debug):
    """With DEBUG on, Django answers a 404 and a 500 with its HTML debug pages, and a bad Host
    with its technical 400; under /api/ they are rewritten into the error shape."""
    settings.DEBUG = debug

    def crash(self, request):
        raise RuntimeError("a bug")

    client = _client()
    assert_error(client.get("/api/v1/no-such-route"), 404, "not_found")
    assert_error(client.get("/api/v1/health", HTTP_HOST="evil.example"), 400, "bad_request")
    monkeypatch.setattr("marketplace.core.views.HealthApi.get", crash)
    assert_error_5xx(client.get("/api/v1/health"))


def test_a_body_over_the_upload_limit_is_a_413_in_the_error_shape(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"username": "%s", "password": "p", "role": "renter"}' % ("x" * 2000)
    response = _client().post("/api/v1/auth/signup", body, content_type="application/json")
    assert_error(response, 413, "payload_too_large")


def test_not_found_outside_the_api_and_admin_is_the_error_shape():
    """Clients that forget the /api/v1 prefix are API clients too."""
    assert_error(_client().get("/v1/listings"), 404, "not_found")


def test_not_found_in_the_admin_keeps_djangos_page(staff):
    client = APIClient(raise_request_exception=False)
    client.force_login(staff)
    response = client.get("/admin/dashboard/machines/999999/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_csrf_failure_under_the_api_is_the_error_shape(rf):
    from marketplace.core.views import csrf_failure

    response = csrf_failure(rf.post("/api/v1/orders"), reason="CSRF cookie not set.")
    assert response.status_code == 403
    assert json.loads(response.content)["error"]["code"] == "permission_denied"
    assert csrf_failure(rf.post("/admin/login/"))["Content-Type"].startswith("text/html")


def assert_error_5xx(response) -> None:
    assert response.status_code == 500, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    error = response.json()["error"]
    assert set(error) == {"code", "message", "detail"} and error["code"] == "server_error", error
    assert "a bug" not in error["message"]  # nothing of the exception leaks to the client
