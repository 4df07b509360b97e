"""Issue 8 §4 through the real server: gunicorn answered a request line over 4,094 bytes with its
own HTML 414, so a long search never reached Django. gunicorn.conf.py raises the limit to the
most gunicorn allows; what Django answers under /api/ is the error shape, and nothing longer
takes a worker down."""

import socket
from urllib.parse import urlencode

import pytest
import requests

from tests.hostile.test_nested_json import assert_error_shape

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _search_url(base: str, length: int) -> str:
    """A search whose query string brings the request line to about `length` bytes: real filters
    plus a client's own opaque parameter (a saved-search state), which the API ignores."""
    query = urlencode({"kind": "gpu", "model": "H100", "min_count": 1, "sort": "price"})
    path = f"/api/v1/listings?{query}&client_state="
    return base + path + "x" * (length - len(path) - len("GET  HTTP/1.1"))


def test_a_6kb_search_url_reaches_django_and_gets_json(gunicorn, listing):
    response = requests.get(_search_url(gunicorn.url, 6 * 1024), timeout=30)

    assert response.status_code == 200, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    assert "results" in response.json()


def test_a_request_line_over_gunicorns_maximum_harms_no_worker(gunicorn):
    response = requests.get(_search_url(gunicorn.url, 9 * 1024), timeout=30)

    assert 400 <= response.status_code < 500  # gunicorn's own refusal, before Django
    assert requests.get(f"{gunicorn.url}/api/v1/health", timeout=10).status_code == 200
    gunicorn.assert_workers_unchanged()


@pytest.mark.parametrize("query", [{"page": "²"}, {"page_size": "①"}, {"page": "1" * 100}])
def test_unicode_digit_paging_through_gunicorn_is_a_4xx_in_the_error_shape(gunicorn, query):
    response = requests.get(f"{gunicorn.url}/api/v1/listings", params=query, timeout=30)
    assert_error_shape(response)
    gunicorn.assert_workers_unchanged()


def test_a_bad_host_header_through_gunicorn_is_the_error_shape(gunicorn):
    response = requests.get(
        f"{gunicorn.url}/api/v1/health", headers={"Host": "evil.example"}, timeout=30
    )
    error = assert_error_shape(response, 400)
    assert error["code"] == "bad_request"


def test_a_header_line_just_under_the_field_limit_reaches_django(gunicorn):
    """An 8 KB Authorization header (a long bearer token) is Django's to refuse, not gunicorn's."""
    response = requests.get(
        f"{gunicorn.url}/api/v1/auth/me",
        headers={"Authorization": "Token " + "x" * 8000},
        timeout=30,
    )
    assert_error_shape(response, 401)


def test_a_raw_garbage_request_line_harms_no_worker(gunicorn):
    with socket.create_connection(("127.0.0.1", gunicorn.port), timeout=10) as sock:
        sock.sendall(b"\x00\xff GARBAGE / HTTP/9.9\r\n\r\n")
        sock.recv(1024)
    assert requests.get(f"{gunicorn.url}/api/v1/health", timeout=10).status_code == 200
    gunicorn.assert_workers_unchanged()
