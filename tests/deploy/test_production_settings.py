"""Safe defaults for a real deployment: with DEBUG off the process refuses a missing, published,
short or repetitive DJANGO_SECRET_KEY at start, and the production configuration documented in
README ("Configuration") passes `manage.py check --deploy` without a single warning.

Each case is a real `manage.py` subprocess, as an operator would start it. Every variable the case
depends on is passed explicitly: a developer's .env is read only for variables not already set."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from tests.integration.conftest import REPO_ROOT

# The production configuration README documents, with a fresh random key.
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_ALLOWED_HOSTS": "market.example.com",
    "DJANGO_SECURE_PROXY": "true",
    "NUM_PROXIES": "1",
    "DJANGO_SSL_REDIRECT": "true",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_HSTS_PRELOAD": "true",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "key, problem",
    [
        ("", "is not set"),
        ("insecure-local-development-key-change-me", "published placeholder"),
        ("change-me-in-production", "published placeholder"),
        ("django-insecure-" + "x" * 50, "published placeholder"),
        (secrets.token_urlsafe(24), "at least 50"),
        ("ab" * 40, "distinct characters"),
    ],
    ids=["missing", "old-default", "env-example", "django-insecure", "short", "repetitive"],
)
def test_debug_off_with_a_weak_secret_key_stops_at_start_saying_how_to_make_one(key, problem):
    result = manage("check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY=key)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert problem in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr


def test_debug_off_accepts_a_random_key_in_hex_or_urlsafe_form():
    for key in (secrets.token_hex(32), secrets.token_urlsafe(50)):
        result = manage("check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY=key)
        assert result.returncode == 0, result.stderr


def test_debug_on_lets_a_development_machine_start_without_a_key():
    result = manage("check", DJANGO_DEBUG="true", DJANGO_SECRET_KEY="")

    assert result.returncode == 0, result.stderr


def test_documented_production_configuration_passes_check_deploy_without_warnings():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        **PRODUCTION_ENV,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_local_defaults_are_not_mistaken_for_a_deployable_configuration():
    """The same check fails on the local defaults (plain HTTP, no HSTS): it does look."""
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_DEBUG="false",
        DJANGO_SSL_REDIRECT="false",
        DJANGO_HSTS_SECONDS="0",
        DJANGO_SECURE_COOKIES="false",
    )

    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout


def test_production_configuration_trusts_the_proxy_for_scheme_and_client_address():
    code = (
        "from django.conf import settings as s;"
        "print(s.SECURE_PROXY_SSL_HEADER, s.REST_FRAMEWORK['NUM_PROXIES'],"
        " s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)"
    )
    result = manage(
        "shell", "-c", code, DJANGO_SECRET_KEY=secrets.token_urlsafe(50), **PRODUCTION_ENV
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "('HTTP_X_FORWARDED_PROTO', 'https') 1 True True True"
