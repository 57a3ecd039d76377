"""Logging out everywhere ends every token and browser session of the user;
websocket tickets are bought by signed-in users only."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.services import token_pair_for
from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def test_logout_all_refuses_every_earlier_token_and_a_new_login_works(user):
    first, second = token_pair_for(user), token_pair_for(user)
    client = bearer(first["access_token"])
    assert client.get("/api/auth/me").status_code == 200

    assert (
        client.post("/api/auth/logout", {"all": True}, format="json").status_code == 204
    )

    for pair in (first, second):
        answer = bearer(pair["access_token"]).get("/api/auth/me")
        assert answer.status_code == 401, answer.content
        assert "revoked" in answer.json()["error"]["message"]
        refreshed = APIClient().post(
            "/api/auth/refresh", {"refresh_token": pair["refresh_token"]}, format="json"
        )
        assert refreshed.status_code == 401
    login = APIClient().post(
        "/api/auth/login",
        {"username": user.username, "password": DEFAULT_PASSWORD},
        format="json",
    )
    assert login.status_code == 200
    assert bearer(login.json()["access_token"]).get("/api/auth/me").status_code == 200


def test_logout_all_ends_browser_sessions(user):
    browser = APIClient()
    browser.force_login(user)
    assert browser.get("/api/auth/me").status_code == 200
    other = token_pair_for(user)
    assert (
        bearer(other["access_token"])
        .post("/api/auth/logout", {"all": True}, format="json")
        .status_code
        == 204
    )
    assert browser.get("/api/auth/me").status_code in (401, 403)


def test_logout_without_all_still_needs_the_refresh_token(user):
    client = bearer(token_pair_for(user)["access_token"])
    answer = client.post("/api/auth/logout", {}, format="json")
    assert answer.status_code == 400
    assert "refresh_token" in answer.json()["error"]["details"]
    answer = client.post("/api/auth/logout", {"all": "yes"}, format="json")
    assert answer.status_code == 400


def test_a_ws_ticket_is_bought_by_signed_in_users_only(user):
    answer = bearer(token_pair_for(user)["access_token"]).post("/api/auth/ws-ticket/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert set(body) == {"ticket", "expires_in"}
    assert body["expires_in"] == 30 and len(body["ticket"]) >= 32
    assert APIClient().post("/api/auth/ws-ticket/").status_code == 401
    assert APIClient().post("/api/auth/ws-ticket").status_code == 401
