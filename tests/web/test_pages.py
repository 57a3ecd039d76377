"""The browser pages, through Django's test client: sign-in, registration,
sign-out and the chat shell (its behaviour in a real browser is in tests/browser)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

User = get_user_model()


def csrf_token_of(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "the form carries no CSRF token"
    return match.group(1)


@pytest.fixture
def browser_client() -> Client:
    """A client that, like a browser talking to the real server, is held to CSRF."""
    return Client(enforce_csrf_checks=True)


def sign_in(client: Client, username: str, password: str = DEFAULT_PASSWORD):
    page = client.get("/login/")
    return client.post(
        "/login/",
        {
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": csrf_token_of(page.content.decode()),
        },
    )


def test_anonymous_root_shows_the_sign_in_form_with_a_register_link(browser_client):
    response = browser_client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="username"' in html and 'name="password"' in html
    assert 'href="/register/"' in html
    assert "chat/app.js" not in html


def test_pages_forbid_inline_script_through_their_content_security_policy(
    browser_client,
):
    for path in ("/", "/login/", "/register/"):
        policy = browser_client.get(path)["Content-Security-Policy"]
        assert "script-src 'self'" in policy, path
        assert "unsafe-inline" not in policy, path
        assert "object-src 'none'" in policy, path


def test_sign_in_leads_to_the_chat_page(browser_client):
    user = UserFactory()
    response = sign_in(browser_client, user.username)
    assert response.status_code == 302 and response["Location"] == "/"

    chat = browser_client.get("/")
    html = chat.content.decode()
    assert chat.status_code == 200
    assert 'type="module"' in html and "chat/app.js" in html
    assert '<meta name="csrf-token" content="' in html
    assert 'href="/api/docs/"' in html
    assert user.username in html
    assert "no-store" in chat["Cache-Control"]


def test_wrong_password_stays_on_the_sign_in_page_with_an_error(browser_client):
    user = UserFactory()
    response = sign_in(browser_client, user.username, "not-the-password")
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()
    assert "_auth_user_id" not in browser_client.session


def test_sign_in_without_the_csrf_token_is_refused(browser_client):
    user = UserFactory()
    response = browser_client.post(
        "/login/", {"username": user.username, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 403


def test_admin_link_is_shown_to_staff_only(client):
    client.force_login(UserFactory())
    assert 'href="/admin/"' not in client.get("/").content.decode()
    client.force_login(UserFactory(is_staff=True))
    assert 'href="/admin/"' in client.get("/").content.decode()


def test_sign_out_is_post_only(client):
    client.force_login(UserFactory())
    assert client.get("/logout/").status_code == 405
    response = client.post("/logout/")
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session
    assert 'name="password"' in client.get("/").content.decode()


def test_register_creates_an_ordinary_user_and_signs_it_in(browser_client):
    form = browser_client.get("/register/").content.decode()
    response = browser_client.post(
        "/register/",
        {
            "username": "newcomer",
            "email": "newcomer@example.com",
            "password1": "A-long-enough-pass-42",
            "password2": "A-long-enough-pass-42",
            "csrfmiddlewaretoken": csrf_token_of(form),
        },
    )
    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get(username="newcomer")
    assert (user.email, user.role, user.is_staff) == (
        "newcomer@example.com",
        "user",
        False,
    )
    assert user.check_password("A-long-enough-pass-42")
    assert browser_client.session["_auth_user_id"] == str(user.pk)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"password2": "Something-else-42"}, "The two passwords differ."),
        ({"password1": "password", "password2": "password"}, "too common"),
        ({"email": "taken@example.com"}, "already exists"),
        ({"username": "Taken"}, "already exists"),
        ({"email": "not-an-email"}, "valid email"),
    ],
)
def test_register_refuses_what_the_api_refuses(client, fields, message):
    UserFactory(username="taken", email="taken@example.com")
    body = {
        "username": "someone",
        "email": "someone@example.com",
        "password1": "A-long-enough-pass-42",
        "password2": "A-long-enough-pass-42",
        **fields,
    }
    response = client.post("/register/", body)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not User.objects.filter(username__iexact=body["username"]).exclude(
        username="taken"
    )


def test_pages_answer_without_their_trailing_slash(client):
    assert client.get("/login").status_code == 200
    assert client.get("/register").status_code == 200


def test_signed_in_users_are_sent_from_sign_in_and_register_to_the_chat(client):
    client.force_login(UserFactory())
    assert client.get("/login/")["Location"] == "/"
    assert client.get("/register/")["Location"] == "/"


def test_sign_in_counts_against_the_api_login_rate_limit(browser_client, api_client):
    user = UserFactory()
    for _ in range(20):
        refused = api_client.post(
            "/api/auth/login",
            {"username": user.username, "password": "Wrong-password-1"},
            format="json",
        )
        assert refused.status_code == 401
    response = sign_in(browser_client, user.username)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many attempts" in response.content.decode()
    assert "_auth_user_id" not in browser_client.session


def test_registration_is_rate_limited_like_the_api(client):
    body = {
        "username": "someone",
        "email": "someone@example.com",
        "password1": "A-long-enough-pass-42",
        "password2": "not the same",
    }
    for _ in range(60):
        assert client.post("/register/", body).status_code == 200
    response = client.post("/register/", {**body, "password2": body["password1"]})
    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()
    assert not User.objects.filter(username="someone").exists()
