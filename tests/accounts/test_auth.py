"""Register, login, refresh, logout and me; every token misuse is a 401 error body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import User
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:500]
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["message"]
    return error


def login(client: APIClient, user: User, password: str = DEFAULT_PASSWORD, **kwargs):
    return client.post(
        "/api/auth/login",
        {"username": user.username, "password": password},
        **kwargs,
    )


def make_jwt(claims: dict, key: str, alg: str = "HS256") -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    head += "." + b64(json.dumps(claims).encode())
    signature = (
        b""
        if alg == "none"
        else hmac.new(key.encode(), head.encode(), hashlib.sha256).digest()
    )
    return f"{head}.{b64(signature)}"


def access_claims(user: User, **override) -> dict:
    now = int(time.time())
    return {
        "token_type": "access",
        "exp": now + 3600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": str(user.pk),
        **override,
    }


@pytest.fixture
def tokens(api_client, user) -> dict:
    response = login(api_client, user, format="json")
    assert response.status_code == 200, response.content
    return response.json()


# ---------------------------------------------------------------- register


def test_register_creates_a_user_with_role_user_and_hides_the_password(api_client):
    body = {
        "username": "alice",
        "email": "alice@example.com",
        "password": "Sturdy-pass-42",
    }
    response = api_client.post("/api/auth/register", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["username"], data["email"], data["role"]) == (
        "alice",
        "alice@example.com",
        "user",
    )
    assert "password" not in data and "Sturdy-pass-42" not in response.content.decode()
    assert User.objects.get(pk=data["id"]).check_password("Sturdy-pass-42")


@pytest.mark.parametrize("field", ["username", "email"])
def test_register_refuses_a_taken_username_or_email_in_any_case(
    api_client, user, field
):
    body = {
        "username": "newname",
        "email": "new@example.com",
        "password": "Sturdy-pass-42",
    }
    body[field] = getattr(user, field).upper()
    error = assert_error(
        api_client.post("/api/auth/register", body, format="json"), 400
    )
    assert field in error["details"]


@pytest.mark.parametrize("missing", ["username", "email", "password"])
def test_register_requires_every_field(api_client, missing):
    body = {"username": "bob", "email": "bob@example.com", "password": "Sturdy-pass-42"}
    del body[missing]
    error = assert_error(
        api_client.post("/api/auth/register", body, format="json"), 400
    )
    assert missing in error["details"]


@pytest.mark.parametrize(
    "password", ["short", "password123", "12345678901", "bob-example"]
)
def test_register_applies_djangos_password_validators(api_client, password):
    body = {"username": "bob-example", "email": "bob@example.com", "password": password}
    error = assert_error(
        api_client.post("/api/auth/register", body, format="json"), 400
    )
    assert "password" in error["details"]


def test_register_works_without_trailing_slash_and_with_it(api_client):
    for n, path in enumerate(["/api/auth/register", "/api/auth/register/"]):
        body = {
            "username": f"u{n}x",
            "email": f"u{n}@example.com",
            "password": "Sturdy-pass-42",
        }
        assert api_client.post(path, body, format="json").status_code == 201


# ---------------------------------------------------------------- login


@pytest.mark.parametrize("fmt", ["json", "multipart"])
def test_login_answers_a_bearer_token_pair_for_json_and_form_bodies(
    api_client, user, fmt
):
    response = login(api_client, user, format=fmt)
    assert response.status_code == 200, response.content
    pair = response.json()
    assert (
        pair["token_type"] == "bearer"
        and pair["access_token"]
        and pair["refresh_token"]
    )
    assert pair["expires_in"] == int(
        settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access_token']}")
    assert api_client.get("/api/auth/me").json()["username"] == user.username


def test_login_accepts_urlencoded_form(api_client, user):
    response = api_client.post(
        "/api/auth/login",
        f"username={user.username}&password={DEFAULT_PASSWORD}",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("case", ["wrong_password", "unknown_user", "inactive_user"])
def test_login_with_bad_credentials_or_inactive_user_is_401(api_client, user, case):
    password = "Wrong-password-1" if case == "wrong_password" else DEFAULT_PASSWORD
    if case == "unknown_user":
        user = User(username="nobody-here")
    if case == "inactive_user":
        User.objects.filter(pk=user.pk).update(is_active=False)
    assert_error(login(api_client, user, password, format="json"), 401)


def test_login_is_throttled_with_a_429_error_body(api_client, user):
    for _ in range(20):
        assert (
            login(api_client, user, "Wrong-password-1", format="json").status_code
            == 401
        )
    error = assert_error(login(api_client, user, format="json"), 429)
    assert error["details"]["retry_after_seconds"] > 0


def test_login_is_limited_per_account_whatever_the_address(api_client, user, settings):
    """A password guesser spread over many addresses still stops at
    AGENTRY_LOGIN_RATE per account (the per-address limit does not see it)."""
    for n in range(20):
        answer = login(
            api_client,
            user,
            "Wrong-password-1",
            format="json",
            REMOTE_ADDR=f"10.0.{n}.1",
        )
        assert answer.status_code == 401
    fresh_address = login(api_client, user, format="json", REMOTE_ADDR="10.9.9.9")
    error = assert_error(fresh_address, 429)
    assert error["details"]["retry_after_seconds"] > 0
    # Another account from those addresses is not affected.
    other = UserFactory()
    assert (
        login(api_client, other, format="json", REMOTE_ADDR="10.0.0.1").status_code
        == 200
    )


def test_login_account_names_share_one_limit_in_any_case(api_client, user):
    for n in range(20):
        name = user.username.upper() if n % 2 else f"  {user.username} "
        api_client.post(
            "/api/auth/login",
            {"username": name, "password": "Wrong-password-1"},
            format="json",
            REMOTE_ADDR=f"10.1.{n}.1",
        )
    assert_error(login(api_client, user, format="json", REMOTE_ADDR="10.2.0.1"), 429)


def test_login_malformed_json_is_400(api_client):
    response = api_client.post(
        "/api/auth/login", '{"username": ', content_type="application/json"
    )
    assert_error(response, 400)


def test_login_with_a_json_array_body_is_400(api_client):
    response = api_client.post(
        "/api/auth/login", "[1, 2]", content_type="application/json"
    )
    assert_error(response, 400)


# ---------------------------------------------------------------- me


def test_me_returns_the_authenticated_user(auth_client, user):
    data = auth_client(user).get("/api/auth/me/").json()
    assert (data["id"], data["username"], data["email"]) == (
        str(user.pk),
        user.username,
        user.email,
    )


def test_me_for_a_deactivated_user_is_401(auth_client, user):
    client = auth_client(user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert_error(client.get("/api/auth/me"), 401)


# ---------------------------------------------------------------- refresh and logout


def test_refresh_rotates_and_the_new_pair_works(api_client, tokens, user):
    response = api_client.post(
        "/api/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json"
    )
    assert response.status_code == 200, response.content
    new = response.json()
    assert new["token_type"] == "bearer" and new["expires_in"] > 0
    assert new["refresh_token"] != tokens["refresh_token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {new['access_token']}")
    assert api_client.get("/api/auth/me").json()["username"] == user.username


def test_a_refresh_token_works_only_once(api_client, tokens):
    body = {"refresh_token": tokens["refresh_token"]}
    assert api_client.post("/api/auth/refresh", body, format="json").status_code == 200
    assert_error(api_client.post("/api/auth/refresh", body, format="json"), 401)


@pytest.mark.parametrize("which", ["garbage", "access_token", "empty"])
def test_refresh_rejects_anything_but_a_refresh_token(api_client, tokens, which):
    value = {
        "garbage": "not.a.token",
        "access_token": tokens["access_token"],
        "empty": "x",
    }[which]
    assert_error(
        api_client.post("/api/auth/refresh", {"refresh_token": value}, format="json"),
        401,
    )


def test_refresh_without_a_token_is_400(api_client):
    assert_error(api_client.post("/api/auth/refresh", {}, format="json"), 400)


def test_refresh_for_a_deactivated_user_is_401(api_client, tokens, user):
    User.objects.filter(pk=user.pk).update(is_active=False)
    body = {"refresh_token": tokens["refresh_token"]}
    assert_error(api_client.post("/api/auth/refresh", body, format="json"), 401)


def test_logout_kills_the_refresh_token(api_client, tokens):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    body = {"refresh_token": tokens["refresh_token"]}
    assert api_client.post("/api/auth/logout", body, format="json").status_code == 204
    assert_error(api_client.post("/api/auth/refresh", body, format="json"), 401)
    assert_error(api_client.post("/api/auth/logout", body, format="json"), 401)


def test_logout_needs_a_user(api_client, tokens):
    body = {"refresh_token": tokens["refresh_token"]}
    assert_error(api_client.post("/api/auth/logout", body, format="json"), 401)


def test_logout_refuses_another_users_refresh_token(auth_client, other_user, tokens):
    body = {"refresh_token": tokens["refresh_token"]}
    assert_error(
        auth_client(other_user).post("/api/auth/logout", body, format="json"), 401
    )
    assert APIClient().post("/api/auth/refresh", body, format="json").status_code == 200


# ---------------------------------------------------------------- bad credentials on protected routes

BAD_AUTHORIZATION = {
    "garbage": lambda user, tokens: "Bearer garbage",
    "bare_scheme": lambda user, tokens: "Bearer",
    "three_parts": lambda user, tokens: "Bearer a b",
    "empty_segments": lambda user, tokens: "Bearer ..",
    "wrong_signing_key": lambda user, tokens: (
        "Bearer " + make_jwt(access_claims(user), "not-the-signing-key")
    ),
    "secret_key_instead_of_jwt_key": lambda user, tokens: (
        "Bearer " + make_jwt(access_claims(user), settings.SECRET_KEY)
    ),
    "alg_none": lambda user, tokens: (
        "Bearer " + make_jwt(access_claims(user), "", alg="none")
    ),
    "expired": lambda user, tokens: (
        "Bearer "
        + make_jwt(
            access_claims(user, exp=int(time.time()) - 60),
            settings.SIMPLE_JWT["SIGNING_KEY"],
        )
    ),
    "unknown_user": lambda user, tokens: (
        "Bearer "
        + make_jwt(
            access_claims(user, user_id=str(uuid.uuid4())),
            settings.SIMPLE_JWT["SIGNING_KEY"],
        )
    ),
    "non_uuid_user": lambda user, tokens: (
        "Bearer "
        + make_jwt(
            access_claims(user, user_id="1 OR 1=1"), settings.SIMPLE_JWT["SIGNING_KEY"]
        )
    ),
    "tampered_payload": lambda user, tokens: (
        "Bearer " + tampered(tokens["access_token"])
    ),
    "refresh_token_as_access": lambda user, tokens: "Bearer " + tokens["refresh_token"],
    "basic_credentials": lambda user, tokens: (
        "Basic "
        + base64.b64encode(f"{user.username}:{DEFAULT_PASSWORD}".encode()).decode()
    ),
    "long": lambda user, tokens: "Bearer " + "a" * 8000,
    "non_ascii": lambda user, tokens: b"Bearer \xc3\xbf\xff\xfe".decode("latin-1"),
}


def tampered(token: str) -> str:
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["user_id"] = str(uuid.uuid4())
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{signature}"


@pytest.mark.parametrize("case", BAD_AUTHORIZATION)
def test_malformed_or_forged_credentials_are_401(api_client, user, tokens, case):
    header = BAD_AUTHORIZATION[case](user, tokens)
    error = assert_error(api_client.get("/api/auth/me", HTTP_AUTHORIZATION=header), 401)
    assert (
        "Bearer"
        in api_client.get("/api/auth/me", HTTP_AUTHORIZATION=header)["WWW-Authenticate"]
    )
    assert error["code"]


PROTECTED = [
    ("get", "/api/auth/me"),
    ("post", "/api/auth/logout"),
    ("get", "/api/agents/"),
    ("post", "/api/agents/"),
    ("get", "/api/sessions/"),
    ("post", "/api/sessions/"),
    ("get", "/api/executions/"),
    ("get", "/api/tools/"),
    ("get", "/api/marketplace/"),
    ("post", "/api/marketplace/"),
    ("get", f"/api/sessions/{uuid.uuid4()}/events/"),
    ("get", f"/api/artifacts/{uuid.uuid4()}/download/"),
]


@pytest.mark.parametrize("method,path", PROTECTED)
def test_protected_routes_without_credentials_are_401(api_client, method, path):
    assert_error(getattr(api_client, method)(path, {}, format="json"), 401)


# ---------------------------------------------------------------- concurrency


@pytest.mark.django_db(transaction=True)
def test_the_same_refresh_token_sent_concurrently_succeeds_at_most_once():
    user = UserFactory()
    raw = login(APIClient(), user, format="json").json()["refresh_token"]
    attempts = 6
    barrier = threading.Barrier(attempts)
    statuses: list[int] = []

    def refresh() -> None:
        try:
            barrier.wait(timeout=10)
            response = APIClient().post(
                "/api/auth/refresh", {"refresh_token": raw}, format="json"
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=refresh) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200] + [401] * (attempts - 1), statuses
