"""Limits of section 9: sizes checked before any query, outages told apart
from bugs, turn rates and caps, server maxima for usage and models."""

from __future__ import annotations

import pytest

from testing.live import outside_env
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


# ---- sizes before queries ----------------------------------------------------


def test_register_with_a_huge_username_is_a_validation_error_not_an_outage(
    api_client, user
):
    """The uniqueness lookup never runs on a value past the field's length
    (SQLite refuses such a LIKE pattern once a row is compared with it, which
    answered 503)."""
    response = api_client.post(
        "/api/auth/register",
        {"username": "u" * 100_000, "email": "a@example.com", "password": "x" * 12},
        format="json",
    )
    error = assert_error(response, 400, "validation_error")
    assert "username" in error["details"]


def test_register_with_a_huge_email_is_a_validation_error(api_client, user):
    response = api_client.post(
        "/api/auth/register",
        {"username": "someone", "email": "a" * 100_000 + "@example.com"},
        format="json",
    )
    assert_error(response, 400, "validation_error")


def test_a_huge_search_term_is_answered_without_a_database_error(client, agent):
    response = client.get("/api/agents/", {"search": "%_" * 40_000})
    assert response.status_code in (200, 400), response.content[:300]


def test_a_search_of_too_many_words_is_a_400_not_a_server_error(client, agent):
    response = client.get("/api/agents/", {"search": " ".join(["a"] * 1000)})
    assert_error(response, 400, "validation_error")


def test_an_overlong_filter_value_is_a_400_before_any_query(client, user):
    from tests.factories import ListingFactory

    ListingFactory(publisher=user)
    response = client.get("/api/marketplace/", {"category": "c" * 60_000})
    assert_error(response, 400, "invalid_request")


# ---- outages and bugs ----------------------------------------------------------


def _refused_query_error():
    """A real OperationalError of a query the database refuses (it is up)."""
    from django.db import OperationalError, connection, transaction

    with (
        pytest.raises(OperationalError) as caught,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        if connection.vendor == "sqlite":
            cursor.execute("SELECT 'x' LIKE %s", ["%" * 60_000])
        else:
            cursor.execute("SET LOCAL statement_timeout = 1")
            cursor.execute("SELECT pg_sleep(1)")
    return caught.value


def _unreachable_database_error():
    """A real OperationalError of a database that cannot be reached."""
    from django.db import OperationalError, connection
    from django.db.utils import load_backend

    settings_dict = {**connection.settings_dict, "OPTIONS": {}}
    if connection.vendor == "sqlite":
        settings_dict["NAME"] = "/nonexistent-directory/agentry.sqlite3"
    else:
        settings_dict.update(HOST="127.0.0.1", PORT=1)
    backend = load_backend(settings_dict["ENGINE"])
    unreachable = backend.DatabaseWrapper(settings_dict, alias="unreachable")
    with pytest.raises(OperationalError) as caught:
        unreachable.ensure_connection()
    return caught.value


def test_a_query_the_database_refuses_is_a_logged_500_not_an_outage(caplog):
    from core.errors import api_exception_handler, outage

    error = _refused_query_error()
    assert outage(error) is None
    response = api_exception_handler(error, {})
    assert response.status_code == 500
    assert response.data["error"]["code"] == "server_error"
    assert "Retry-After" not in response
    assert "request failed on a database error" in caplog.text


def test_a_database_that_cannot_be_reached_is_a_503_outage():
    from core.errors import api_exception_handler

    response = api_exception_handler(_unreachable_database_error(), {})
    assert response.status_code == 503
    assert response.data["error"]["code"] == "database_unavailable"
    assert response["Retry-After"]


# ---- body sizes and text lengths -------------------------------------------------

MIB = 1024 * 1024


def test_a_resource_body_over_1_mib_is_a_413_json_error(client, agent):
    body = {"name": "Big", "model": "test", "instructions": "x" * (2 * MIB)}
    response = client.post("/api/agents/", body, format="json")
    assert_error(response, 413, "payload_too_large")
    response = client.patch(f"/api/agents/{agent.pk}/", body, format="json")
    assert_error(response, 413, "payload_too_large")
    agent.refresh_from_db()
    assert agent.version == 1


def test_a_form_body_over_1_mib_is_a_413_json_error(api_client):
    response = api_client.post(
        "/api/auth/login", {"username": "someone", "password": "x" * (2 * MIB)}
    )
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("path", "field", "limit"),
    [
        ("/api/agents/", "name", 200),
        ("/api/agents/", "description", 10_000),
        ("/api/agents/", "instructions", 100_000),
        ("/api/agents/", "model", 200),
        ("/api/sessions/", "title", 200),
        ("/api/sessions/", "external_session_id", 200),
        ("/api/marketplace/", "title", 200),
        ("/api/marketplace/", "description", 10_000),
        ("/api/marketplace/", "category", 100),
    ],
)
def test_every_text_field_has_a_maximum_length(client, agent, path, field, limit):
    base = {
        "/api/agents/": {"name": "Helper", "model": "test"},
        "/api/sessions/": {"agent": str(agent.pk)},
        "/api/marketplace/": {"agent": str(agent.pk), "title": "Listing"},
    }[path]
    response = client.post(path, {**base, field: "y" * (limit + 1)}, format="json")
    error = assert_error(response, 400, "validation_error")
    assert field in error["details"]
    if field != "model":  # a model name must also name a provider
        response = client.post(path, {**base, field: "y" * limit}, format="json")
        assert response.status_code == 201, response.content[:300]


def test_listing_tags_are_bounded_in_number_and_length(client, agent):
    base = {"agent": str(agent.pk), "title": "Listing"}
    for tags in (["t"] * 21, ["t" * 51]):
        response = client.post(
            "/api/marketplace/", {**base, "tags": tags}, format="json"
        )
        assert_error(response, 400, "validation_error")


# ---- server maxima and allowed models ---------------------------------------------


def test_a_null_usage_limit_means_the_servers_maximum_never_unlimited(settings):
    from agents.factory import usage_limits_for

    settings.AGENTRY_MAX_REQUESTS, settings.AGENTRY_MAX_TOOL_CALLS = 7, 9
    settings.AGENTRY_MAX_TOTAL_TOKENS = 1000
    limits = usage_limits_for(
        {
            "usage_limits": {
                "request_limit": None,
                "tool_calls_limit": None,
                "total_tokens_limit": None,
            }
        }
    )
    assert (limits.request_limit, limits.tool_calls_limit) == (7, 9)
    assert limits.total_tokens_limit == 1000
    # A maximum lowered after an agent was saved clamps it at run time.
    saved = usage_limits_for({"usage_limits": {"request_limit": 50}})
    assert saved.request_limit == 7


def test_usage_limits_above_the_maximum_are_refused_on_save(client, settings):
    settings.AGENTRY_MAX_REQUESTS = 10
    body = {"name": "Greedy", "model": "test"}
    response = client.post(
        "/api/agents/",
        {**body, "usage_limits": {"request_limit": 11}},
        format="json",
    )
    assert "at most 10" in assert_error(response, 400)["message"]
    response = client.post(
        "/api/agents/",
        {**body, "usage_limits": {"request_limit": None}},
        format="json",
    )
    assert response.status_code == 201, response.content


def test_a_huge_model_timeout_is_refused_and_clamped_at_run_time(client, settings):
    from agents.factory import model_settings_for

    response = client.post(
        "/api/agents/",
        {"name": "Patient", "model": "test", "model_settings": {"timeout": 1e9}},
        format="json",
    )
    error = assert_error(response, 400, "validation_error")
    assert "model_settings" in error["details"]
    clamped = model_settings_for({"model_settings": {"timeout": 1e9}})
    assert clamped["timeout"] == settings.AGENTRY_MAX_MODEL_TIMEOUT


def test_allowed_models_narrow_what_agents_may_use(client, agent, settings):
    settings.AGENTRY_ALLOWED_MODELS = ["openai:*", "anthropic:claude-*"]
    for refused in ("groq:llama-3", "anthropic:other"):
        response = client.post(
            "/api/agents/", {"name": "X", "model": refused}, format="json"
        )
        assert "not allowed" in assert_error(response, 400)["message"]
    for allowed in ("openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5", "offline"):
        response = client.post(
            "/api/agents/", {"name": "X", "model": allowed}, format="json"
        )
        assert response.status_code == 201, response.content


def test_the_test_model_is_refused_without_debug_at_the_settings_default(
    client, settings
):
    """`test` runs only with DEBUG=1 unless AGENTRY_ALLOW_TEST_MODEL says so
    (the suite turns it on; here it is back at its default, unset)."""
    from agents.factory import AgentConfigError, resolve_model

    settings.DEBUG = False
    settings.AGENTRY_ALLOW_TEST_MODEL = None
    response = client.post(
        "/api/agents/", {"name": "T", "model": "test"}, format="json"
    )
    assert "development only" in assert_error(response, 400)["message"]
    with pytest.raises(AgentConfigError):
        resolve_model("test")
    settings.DEBUG = True
    response = client.post(
        "/api/agents/", {"name": "T", "model": "test"}, format="json"
    )
    assert response.status_code == 201, response.content


def test_the_test_model_setting_is_unset_by_default_in_a_server_process():
    """With nothing in the environment the setting is None: it follows DEBUG."""
    import subprocess
    import sys

    from django.conf import settings as django_settings

    env = outside_env()
    env.update(
        SECRET_KEY="limits-" + "x" * 50, DJANGO_SETTINGS_MODULE="config.settings"
    )
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; "
            "print(settings.AGENTRY_ALLOW_TEST_MODEL, settings.DEBUG)",
        ],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.stdout.split() == ["None", "False"], probe.stderr
