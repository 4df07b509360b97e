import pytest

from marketplace.accounts.models import ApiToken, User
from marketplace.core.tokens import token_hash

pytestmark = pytest.mark.django_db


def test_signup_returns_a_token_that_authenticates(anon):
    response = anon.post(
        "/api/v1/auth/signup",
        {"username": "alice", "password": "correct horse battery", "role": "renter"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    token = response.json()["token"]
    anon.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = anon.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert me.json()["role"] == "renter"


def test_tokens_are_stored_only_as_hashes(anon):
    raw = anon.post(
        "/api/v1/auth/signup",
        {"username": "alice", "password": "correct horse battery", "role": "renter"},
        format="json",
    ).json()["token"]
    stored = ApiToken.objects.get()
    assert stored.key_hash == token_hash(raw)
    assert raw not in {stored.key_hash, stored.display_prefix}


def test_signup_refuses_a_taken_username_with_409(anon, alice):
    response = anon.post(
        "/api/v1/auth/signup",
        {"username": "alice", "password": "correct horse battery", "role": "renter"},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "accounts_username_taken"


def test_signup_refuses_staff_as_a_self_chosen_role(anon):
    response = anon.post(
        "/api/v1/auth/signup",
        {"username": "eve", "password": "correct horse battery", "role": "staff"},
        format="json",
    )
    assert response.status_code == 400
    assert "role" in response.json()["error"]["detail"]
    assert not User.objects.filter(username="eve").exists()


def test_signup_refuses_a_weak_password_without_creating_the_user(anon):
    response = anon.post(
        "/api/v1/auth/signup",
        {"username": "eve", "password": "12345678", "role": "renter"},
        format="json",
    )
    assert response.status_code == 400
    assert not User.objects.filter(username="eve").exists()


def test_login_with_a_wrong_password_is_401(anon, alice):
    response = anon.post(
        "/api/v1/auth/tokens", {"username": "alice", "password": "nope-nope"}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "accounts_bad_credentials"


def test_login_then_revoke_makes_the_token_useless(anon, alice):
    raw = anon.post(
        "/api/v1/auth/tokens",
        {"username": "alice", "password": "correct horse battery"},
        format="json",
    ).json()["token"]
    anon.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert anon.delete("/api/v1/auth/tokens/current").status_code == 204
    response = anon.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_login_is_throttled_per_client(anon, alice, settings):
    from django.core.cache import cache

    cache.clear()
    statuses = [
        anon.post("/api/v1/auth/tokens", {"username": "alice", "password": "x"}, format="json")
        for _ in range(40)
    ]
    assert statuses[-1].status_code == 429
    assert statuses[-1].json()["error"]["code"] == "throttled"
