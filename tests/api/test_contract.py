"""What contract fuzzing found: every bad input is a JSON 4xx, as documented.

Errors are JSON whatever the success would have been (an SSE stream, a file
of any type); a filter parameter present in the query must be valid; the API
takes JSON bodies (forms only where they fit: auth, uploads); JSON nests at
most `MAX_JSON_DEPTH` levels and holds no text PostgreSQL cannot store; a
string field takes a JSON string only, a boolean field `true` or `false`.
"""

from __future__ import annotations

import json
from importlib import import_module

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import QueryDict
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

from core.serializers import StrictBooleanField, StrictChoiceField, StringOnlyMixin
from core.text import MAX_JSON_DEPTH
from sessions_app.api.serializers import SessionSerializer
from tests.api.conftest import assert_error
from tests.factories import AgentFactory, SessionFactory

pytestmark = pytest.mark.django_db


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    return assert_error(response, status, code)


# ---------------------------------------------------------------- errors are JSON


@pytest.mark.parametrize(
    "query, headers",
    [
        ("", {"HTTP_ACCEPT": "text/event-stream"}),
        ("?format=sse", {}),
        ("?stream=true", {}),
    ],
)
def test_errors_of_a_streamed_turn_are_json(client, session, query, headers):
    url = f"/api/sessions/{session.pk}/messages/{query}"
    response = client.post(url, {"content": ""}, format="json", **headers)
    assert_json_error(response, 400, "validation_error")
    missing = f"/api/sessions/{AgentFactory().pk}/messages/{query}"
    response = client.post(missing, {"content": "hi"}, format="json", **headers)
    assert_json_error(response, 404)


@pytest.mark.parametrize("value", ["", "maybe", "yes"])
def test_a_malformed_stream_parameter_is_400(client, session, value):
    response = client.post(
        f"/api/sessions/{session.pk}/messages/?stream={value}",
        {"content": "hi"},
        format="json",
    )
    assert_json_error(response, 400, "validation_error")


@pytest.mark.parametrize("accept", ["image/png", "*/*", "application/octet-stream"])
def test_download_errors_are_json_whatever_the_accept_header(client, accept):
    response = client.get(
        f"/api/artifacts/{AgentFactory().pk}/download/", HTTP_ACCEPT=accept
    )
    assert_json_error(response, 404)


def test_a_download_is_served_as_its_own_type(client, session):
    meta = client.post(
        f"/api/sessions/{session.pk}/artifacts/",
        {"file": SimpleUploadedFile("dot.png", b"\x89PNG\r\n", "image/png")},
        format="multipart",
    ).json()
    response = client.get(meta["download_url"], HTTP_ACCEPT="image/png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"


def test_an_empty_multipart_body_is_a_json_400(client, session):
    response = client.generic(
        "POST",
        f"/api/sessions/{session.pk}/artifacts/",
        b"--b--\r\n",
        content_type="multipart/form-data; boundary=b",
    )
    assert_json_error(response, 400)


# ---------------------------------------------------------------- the schema says so


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_error_response_is_documented_as_json_only(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    assert list(response["content"]) == ["application/json"], (
                        method,
                        path,
                        code,
                    )


def test_the_stream_and_the_download_are_documented_as_sent(schema):
    messages = schema["paths"]["/api/sessions/{id}/messages/"]["post"]
    ok = messages["responses"]["200"]["content"]
    # Before OpenAPI 3.2 the schema of an event stream describes one event.
    event = ok["text/event-stream"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert schema["components"]["schemas"][event]["properties"].keys() == {
        "event",
        "id",
        "data",
    }
    assert ok["application/json"]["schema"]["$ref"].endswith("/TurnAnswer")
    assert {"name": "stream", "in": "query"}.items() <= next(
        p for p in messages["parameters"] if p["name"] == "stream"
    ).items()
    download = schema["paths"]["/api/artifacts/{id}/download/"]["get"]
    assert download["responses"]["200"]["content"] == {
        "*/*": {"schema": {"type": "string", "format": "binary"}}
    }


def test_bodies_are_documented_as_json_except_uploads(schema):
    # The auth operations also take forms, but one documented body gives a
    # generated client one way to send it.
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            media_types = set(operation["requestBody"]["content"])
            if path.endswith("/artifacts/"):
                assert media_types == {"multipart/form-data"}
            else:
                assert media_types == {"application/json"}, (method, path)


def test_anonymous_operations_need_no_credentials_and_the_rest_do(schema):
    anonymous = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            if operation["security"] == []:
                anonymous.add(path)
            else:
                assert {"bearerAuth": []} in operation["security"], (method, path)
    assert anonymous == {
        "/api/auth/register/",
        "/api/auth/login/",
        "/api/auth/refresh/",
    }


def test_turn_answers_reference_the_execution_and_event_schemas(schema):
    components = schema["components"]["schemas"]
    for answer in ("TurnAnswer", "RunAnswer"):
        properties = components[answer]["properties"]
        assert properties["execution"] == {"$ref": "#/components/schemas/Execution"}
        assert properties["events"]["items"] == {"$ref": "#/components/schemas/Event"}


def test_operation_descriptions_speak_to_users(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            text = " ".join(
                [operation.get("description", ""), operation.get("summary", "")]
                + [r.get("description", "") for r in operation["responses"].values()]
            )
            for internal in ("DRF", "DESIGN.md", "403 when"):
                assert internal not in text, (method, path, text)


# ---------------------------------------------------------------- strict filters


@pytest.mark.parametrize(
    "url",
    [
        "/api/sessions/?agent=",
        "/api/sessions/?agent=not-a-uuid",
        "/api/executions/?session=",
        "/api/executions/?agent=",
        "/api/executions/?status=",
        "/api/executions/?status=nope",
        "/api/artifacts/?session=",
        "/api/agents/?kind=",
        "/api/agents/?visibility=",
        "/api/agents/?is_active=",
        "/api/agents/?is_active=yes",
        "/api/agents/?is_active=2",
    ],
)
def test_a_filter_parameter_that_is_empty_or_malformed_is_400(client, url):
    error = assert_json_error(client.get(url), 400, "validation_error")
    assert set(error["details"]) == {url.split("?")[1].split("=")[0]}


@pytest.mark.parametrize(
    "value, expected", [("true", True), ("1", True), ("false", False), ("0", False)]
)
def test_is_active_reads_true_and_false(client, user, value, expected):
    AgentFactory(owner=user, is_active=True)
    AgentFactory(owner=user, is_active=False)
    body = client.get(f"/api/agents/?is_active={value}").json()
    assert [agent["is_active"] for agent in body["results"]] == [expected]


def test_text_filters_take_the_empty_string(client, session):
    assert client.get("/api/sessions/?external_session_id=").status_code == 200
    assert client.get("/api/artifacts/?name=").status_code == 200
    assert client.get("/api/marketplace/?category=").status_code == 200


def test_a_filter_for_an_existing_agent_still_filters(client, session, user):
    elsewhere = SessionFactory(user=user, agent=AgentFactory(owner=user))
    body = client.get(f"/api/sessions/?agent={session.agent_id}").json()
    assert [s["id"] for s in body["results"]] == [str(session.pk)]
    unfiltered = client.get("/api/sessions/").json()["results"]
    assert str(elsewhere.pk) in [s["id"] for s in unfiltered]


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize("format_", ["multipart", None])
def test_resource_bodies_must_be_json(client, agent, format_):
    body = {"agent": str(agent.pk), "title": "t"}
    if format_:
        response = client.post("/api/sessions/", body, format=format_)
    else:
        response = client.post(
            "/api/sessions/",
            "agent=x&title=t",
            content_type="application/x-www-form-urlencoded",
        )
    assert_json_error(response, 415, "unsupported_media_type")
    assert client.post("/api/sessions/", body, format="json").status_code == 201


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 5000])
def test_json_nested_too_deep_is_400(client, agent, depth):
    nested = "[" * depth + "]" * depth
    response = client.post(
        "/api/sessions/",
        '{"agent": "' + str(agent.pk) + '", "state": {"a": ' + nested + "}}",
        content_type="application/json",
    )
    assert_json_error(response, 400, "parse_error")


def test_json_nested_up_to_the_limit_is_stored(client, agent):
    depth = MAX_JSON_DEPTH - 2  # the body and `state` are two levels
    nested = json.loads("[" * depth + "]" * depth)
    response = client.post(
        "/api/sessions/",
        {"agent": str(agent.pk), "state": {"a": nested}},
        format="json",
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("key", ["\\udc00", "a\\u0000"])
def test_json_object_keys_with_text_postgresql_cannot_store_are_400(client, agent, key):
    response = client.post(
        "/api/sessions/",
        '{"agent": "' + str(agent.pk) + '", "state": {"' + key + '": 1}}',
        content_type="application/json",
    )
    assert_json_error(response, 400, "parse_error")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"\\udc00": 1}', "unpaired surrogates"),
        ('{"a": "\\u0000"}', "NUL"),
        ('{"a": NaN}', "valid JSON"),
        ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "levels deep"),
        ('{"a": ' + "[" * 200 + "]" * 200 + "}", "levels deep"),
    ],
)
def test_a_json_object_field_decoded_from_form_text_is_as_strict(
    rf, user, agent, text, message
):
    form = QueryDict(mutable=True)
    form.update({"agent": str(agent.pk), "state": text})
    request = rf.post("/")
    request.user = user
    serializer = SessionSerializer(data=form, context={"request": request})
    assert not serializer.is_valid()
    assert message in str(serializer.errors["state"][0])


def test_the_auth_views_still_take_forms(api_client):
    response = api_client.post(
        "/api/auth/register",
        {"username": "formuser", "email": "f@example.com", "password": "x"},
        format="multipart",
    )
    assert_json_error(response, 400, "validation_error")
    assert "password" in response.json()["error"]["details"]


@pytest.mark.parametrize(
    "body",
    [
        {"is_active": 0},
        {"is_active": "yes"},
        {"tools": [{"tool": "test_clock", "enabled": 1}]},
        {"tools": [{"tool": "test_clock", "requires_approval": "on"}]},
    ],
)
def test_booleans_are_json_booleans(client, agent, body):
    response = client.patch(f"/api/agents/{agent.pk}/", body, format="json")
    assert_json_error(response, 400, "validation_error")
    assert (
        client.patch(
            f"/api/agents/{agent.pk}/", {"is_active": False}, format="json"
        ).json()["is_active"]
        is False
    )


# ---------------------------------------------------------------- strings are strings


@pytest.mark.parametrize(
    "method, url, body, field",
    [
        ("patch", "/api/agents/{agent}/", {"instructions": 0}, "instructions"),
        ("patch", "/api/agents/{agent}/", {"name": 1.5}, "name"),
        ("patch", "/api/agents/{agent}/", {"description": True}, "description"),
        ("patch", "/api/agents/{agent}/", {"model": ["offline"]}, "model"),
        ("patch", "/api/agents/{agent}/", {"visibility": 0}, "visibility"),
        ("patch", "/api/agents/{agent}/", {"tools": [{"tool": 1}]}, "tools"),
        ("post", "/api/sessions/", {"agent": "{agent}", "title": 5}, "title"),
        (
            "post",
            "/api/sessions/",
            {"agent": "{agent}", "external_session_id": {"a": "b"}},
            "external_session_id",
        ),
        ("post", "/api/sessions/", {"agent": 5}, "agent"),
        ("patch", "/api/sessions/{session}/", {"title": False}, "title"),
        ("post", "/api/sessions/{session}/messages/", {"content": 0}, "content"),
        (
            "post",
            "/api/sessions/{session}/messages/",
            {"content": "hi", "client_message_id": 7},
            "client_message_id",
        ),
        (
            "post",
            "/api/sessions/{session}/messages/",
            {"content": "hi", "multitask": 1},
            "multitask",
        ),
        (
            "post",
            "/api/sessions/{session}/messages/",
            {"content": "hi", "attachments": [5]},
            "attachments",
        ),
        ("post", "/api/agents/{agent}/run/", {"input": 42}, "input"),
        ("post", "/api/agents/{agent}/run/", {"input": "hi", "session": 0}, "session"),
        ("post", "/api/marketplace/", {"agent": "{agent}", "title": 3}, "title"),
        ("post", "/api/marketplace/", {"agent": "{agent}", "tags": [1]}, "tags"),
    ],
)
def test_a_string_field_refuses_any_other_json_type(
    client, agent, session, method, url, body, field
):
    ids = {"agent": str(agent.pk), "session": str(session.pk)}
    body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()}
    response = getattr(client, method)(url.format(**ids), body, format="json")
    error = assert_json_error(response, 400, "validation_error")
    assert field in error["details"], error


def test_a_refused_number_is_not_stored_as_text(client, agent):
    response = client.patch(
        f"/api/agents/{agent.pk}/", {"instructions": 0}, format="json"
    )
    assert assert_json_error(response, 400, "validation_error")["details"] == {
        "instructions": ["Not a valid string."]
    }
    agent.refresh_from_db()
    assert agent.instructions != "0"
    response = client.patch(
        f"/api/agents/{agent.pk}/", {"instructions": "0"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["instructions"] == "0"


@pytest.mark.parametrize(
    "path, body",
    [
        ("register", {"username": 12345, "email": "n@example.com", "password": "x"}),
        ("register", {"username": "numbers", "email": ["n@example.com"]}),
        ("login", {"username": 12345, "password": "secret"}),
        ("login", {"username": "someone", "password": 12345678}),
    ],
)
def test_auth_fields_refuse_json_that_is_not_a_string(api_client, path, body):
    response = api_client.post(f"/api/auth/{path}", body, format="json")
    assert_json_error(response, 400, "validation_error")


def test_text_that_reads_as_a_number_still_works_in_forms(api_client, client, session):
    # Form fields are always text, so strict string fields take them as before.
    response = api_client.post(
        "/api/auth/login",
        {"username": "12345", "password": "67890"},
        format="multipart",
    )
    assert_json_error(response, 401)
    response = client.post(
        f"/api/sessions/{session.pk}/artifacts/",
        {"file": SimpleUploadedFile("n.txt", b"1"), "name": "3.5"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "3.5"


def _api_serializers() -> list[type[serializers.BaseSerializer]]:
    import_module(settings.ROOT_URLCONF)  # every API view and its serializers
    found, pending = [], [serializers.BaseSerializer]
    while pending:
        for cls in pending.pop().__subclasses__():
            pending.append(cls)
            if cls.__module__.split(".")[0] in {"accounts", "agents", "sessions_app"}:
                found.append(cls)
    return found


def _lenient_fields(field: serializers.Field, path: str):
    """Writable fields under `field` that would coerce a JSON type into another."""
    if field.read_only:
        return
    if isinstance(field, serializers.ListSerializer):
        yield from _lenient_fields(field.child, f"{path}[]")
    elif isinstance(field, serializers.Serializer):
        for name, child in field.fields.items():
            yield from _lenient_fields(child, f"{path}.{name}")
    elif isinstance(field, serializers.ListField | serializers.DictField):
        yield from _lenient_fields(field.child, f"{path}[]")
    elif isinstance(field, serializers.ManyRelatedField):
        yield from _lenient_fields(field.child_relation, path)
    elif isinstance(field, serializers.PrimaryKeyRelatedField):
        if field.pk_field is None:
            yield path
        else:
            yield from _lenient_fields(field.pk_field, path)
    else:
        for lenient, strict in _STRICT_VARIANTS:
            if isinstance(field, lenient) and not isinstance(field, strict):
                yield path


_STRICT_VARIANTS = [
    (serializers.CharField, StringOnlyMixin),
    (serializers.UUIDField, StringOnlyMixin),
    (serializers.ChoiceField, StrictChoiceField),
    (serializers.BooleanField, StrictBooleanField),
]


def test_every_api_serializer_takes_strict_strings_and_booleans():
    classes = _api_serializers()
    assert {"AgentSerializer", "SessionSerializer", "LoginSerializer"} <= {
        cls.__name__ for cls in classes
    }
    lenient = [
        found
        for cls in classes
        for found in _lenient_fields(cls(), f"{cls.__module__}.{cls.__name__}")
    ]
    assert lenient == [], "use the strict fields of core.serializers"
