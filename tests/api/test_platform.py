"""Health, the error body on every failure, and the OpenAPI schema."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.utils import load_backend

from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def test_health_reports_database_and_cache(api_client):
    for path in ("/health", "/health/"):
        response = api_client.get(path)
        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["database"], body["cache"]) == (
            "healthy",
            "ok",
            "ok",
        )
        assert body["timestamp"] and body["service"]


@pytest.fixture
def unreachable_database():
    """This thread's default connection swapped for one to a database that
    cannot be reached (a closed port, or a file in a missing directory)."""
    real = connections["default"]
    settings_dict = {**real.settings_dict}
    if real.vendor == "postgresql":
        settings_dict.update(HOST="127.0.0.1", PORT="1", OPTIONS={"connect_timeout": 1})
    else:
        settings_dict.update(
            NAME="/nonexistent-directory/agentry/db.sqlite3", OPTIONS={}
        )
    broken = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(
        settings_dict, "default"
    )
    connections["default"] = broken
    try:
        yield
    finally:
        broken.close()
        connections["default"] = real


def test_health_is_503_with_the_same_shape_when_the_database_is_unreachable(
    api_client, unreachable_database
):
    response = api_client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]) == ("unhealthy", "unavailable")
    assert {"timestamp", "service", "cache"} <= body.keys()


def test_health_refuses_writes_with_a_json_405(api_client):
    assert_error(api_client.post("/health"), 405)


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/api/nothing-here/", "/api/agents/x/y/z", "/api/"])
def test_unknown_api_paths_are_a_json_404_with_and_without_debug(
    client, settings, debug, path
):
    settings.DEBUG = debug
    assert_error(client.get(path), 404)


def test_unknown_method_is_a_json_405(client):
    assert_error(client.put("/api/agents/", {}, format="json"), 405)


@pytest.mark.parametrize(
    "body", ['{"name": ', "[", '{"name": "a"} trailing', "\x00", '"just a string"']
)
def test_malformed_json_is_400(client, body):
    response = client.post("/api/agents/", body, content_type="application/json")
    assert_error(response, 400)


def test_a_lookup_that_is_not_a_uuid_is_404(client):
    assert_error(client.get("/api/agents/not-a-uuid/"), 404)
    assert_error(client.get("/api/sessions/%00/"), 404)


def test_schema_generates_without_warnings():
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        "/dev/null",
        stdout=io.StringIO(),
    )


def test_schema_and_docs_are_served_anonymously(api_client):
    response = api_client.get(
        "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    assert response.status_code == 200
    doc = json.loads(response.content)
    assert str(doc["openapi"]).startswith("3")
    for path in (
        "/api/auth/login",
        "/api/agents/",
        "/api/agents/{id}/",
        "/api/sessions/{id}/events/",
        "/api/tools/",
        "/api/executions/",
        "/api/marketplace/",
        "/api/artifacts/{id}/download/",
    ):
        assert any(p.rstrip("/") == path.rstrip("/") for p in doc["paths"]), path
    docs = api_client.get("/api/docs/")
    assert docs.status_code == 200 and "html" in docs["Content-Type"]


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_api_docs_pages_load_every_asset_from_this_server(api_client, page):
    html = api_client.get(page).content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/static/"), asset
        response = api_client.get(asset)
        assert response.status_code == 200, asset
        response.close()
