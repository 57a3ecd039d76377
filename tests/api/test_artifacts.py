"""Artifacts: upload, versions, sanitised names, size cap, download headers."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from sessions_app.artifacts import sanitize_display_name
from sessions_app.models import Artifact
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def upload(
    client, session, data=b"hello", filename="notes.txt", ctype="text/plain", **fields
):
    return client.post(
        f"/api/sessions/{session.pk}/artifacts/",
        {"file": SimpleUploadedFile(filename, data, content_type=ctype), **fields},
        format="multipart",
    )


def test_upload_records_name_version_size_sha256_and_content_type(
    client, session, settings
):
    response = upload(client, session, b"version one")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["name"], data["version"], data["size"], data["session"]) == (
        "notes.txt",
        1,
        11,
        str(session.pk),
    )
    assert data["sha256"] == hashlib.sha256(b"version one").hexdigest()
    assert data["content_type"].startswith("text/plain")
    stored = Artifact.objects.get(pk=data["id"]).file
    assert "notes" not in stored.name and stored.name.startswith("artifacts/")
    assert (settings.MEDIA_ROOT / stored.name).read_bytes() == b"version one"


def test_same_name_gets_the_next_version_and_the_list_shows_all(client, session):
    first = upload(client, session, b"one").json()
    second = upload(
        client, session, b"two", filename="other.bin", name="notes.txt"
    ).json()
    assert (first["version"], second["version"], second["name"]) == (1, 2, "notes.txt")
    listed = client.get(f"/api/sessions/{session.pk}/artifacts/").json()["results"]
    assert sorted(a["version"] for a in listed) == [1, 2]


def test_versions_count_per_session(client, user, agent, session):
    from tests.factories import SessionFactory

    upload(client, session)
    other = SessionFactory(user=user, agent=agent)
    assert upload(client, other).json()["version"] == 1


def test_content_type_falls_back_to_the_file_extension(client, session):
    data = upload(
        client, session, b"{}", "data.json", "application/octet-stream"
    ).json()
    assert data["content_type"] == "application/json"


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\report.pdf", "report.pdf"),
        ("bad\x00name\x07.txt", "badname.txt"),
        ("line\nbreak\r.txt", "linebreak.txt"),
        ("   ", "upload"),
        ("..", "upload"),
        ("", "upload"),
        ("rtl\u202egnp.exe", "rtlgnp.exe"),
        ("a" * 300 + ".txt", "a" * 251 + ".txt"),
        ("caf\u00e9 \u2603.txt", "caf\u00e9 \u2603.txt"),
    ],
)
def test_display_names_are_sanitised(raw, expected):
    assert sanitize_display_name(raw) == expected


def test_a_name_field_with_control_characters_is_sanitised_not_refused(client, session):
    response = upload(client, session, name="dir/evil\x00\x1fname.txt")
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "evilname.txt"


def test_download_streams_the_bytes_with_type_and_rfc6266_disposition(client, session):
    meta = upload(
        client, session, b"caf\xc3\xa9", filename='r\u00e9sum\u00e9 "1".txt'
    ).json()
    response = client.get(f"/api/artifacts/{meta['id']}/download/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"caf\xc3\xa9"
    assert response["Content-Type"].startswith("text/plain")
    assert response["Content-Length"] == "5"
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;")
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == 'r\u00e9sum\u00e9 "1".txt'
    assert '"1"' not in disposition.split(";")[1]


def test_download_accepts_any_accept_header(client, session):
    meta = upload(client, session).json()
    response = client.get(
        f"/api/artifacts/{meta['id']}/download", HTTP_ACCEPT="application/octet-stream"
    )
    assert response.status_code == 200


def test_metadata_endpoint(client, session):
    meta = upload(client, session).json()
    assert (
        client.get(f"/api/artifacts/{meta['id']}/").json()["sha256"] == meta["sha256"]
    )


def test_a_missing_stored_file_is_a_json_404(client, session, settings):
    meta = upload(client, session).json()
    (settings.MEDIA_ROOT / Artifact.objects.get(pk=meta["id"]).file.name).unlink()
    assert_error(client.get(f"/api/artifacts/{meta['id']}/download/"), 404)


def test_upload_without_a_file_is_400(client, session):
    response = client.post(
        f"/api/sessions/{session.pk}/artifacts/", {"name": "nofile"}, format="multipart"
    )
    assert_error(response, 400)


def test_upload_as_json_is_415(client, session):
    response = client.post(
        f"/api/sessions/{session.pk}/artifacts/", {"file": "x"}, format="json"
    )
    assert_error(response, 415)


def test_a_file_just_over_the_cap_is_a_json_413(client, session, settings):
    assert settings.MAX_UPLOAD_BYTES == 25 * 1024 * 1024
    response = upload(
        client, session, b"\0" * (settings.MAX_UPLOAD_BYTES + 1), "big.bin"
    )
    error = assert_error(response, 413)
    assert error["code"] == "payload_too_large"
    assert not Artifact.objects.exists()


def test_a_file_exactly_at_the_cap_is_accepted(client, session, settings):
    settings.MAX_UPLOAD_BYTES = 4096
    assert upload(client, session, b"x" * 4096).status_code == 201
    assert_error(upload(client, session, b"x" * 4097), 413)


def test_a_declared_oversized_body_is_refused_before_reading(client, session, settings):
    response = client.generic(
        "POST",
        f"/api/sessions/{session.pk}/artifacts/",
        b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(settings.MAX_UPLOAD_BYTES * 2),
    )
    assert_error(response, 413)


def test_an_oversized_json_body_is_a_json_413(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post(
        "/api/agents/", {"name": "x", "instructions": "y" * 2000}, format="json"
    )
    assert_error(response, 413)
