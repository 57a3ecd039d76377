"""Contract fuzzing: schemathesis against `/api/schema/` on a live server.

Every operation of the OpenAPI schema is exercised by an authenticated user
(Bearer token) with generated valid and invalid inputs, and every response is
held to all of schemathesis's checks (`AGENTRY_FUZZ_CHECKS` narrows them): no
5xx, status codes, bodies, content types and headers as documented, invalid
input refused, valid input accepted, no use of a deleted object, and the
rest. One check is configured (schemathesis.toml next to this file):
`positive_data_acceptance` also takes the documented 400 for refusals no
schema can express (NUL in text, a reference to an object that does not exist
or is not yours, a taken username, a model whose provider is unknown).

The run is bounded by examples, not time: `AGENTRY_FUZZ_EXAMPLES` per
operation (default 8), seeded, deterministic generation, one worker, so every
run sends the same cases whatever the machine's speed, and a failure
reproduces. schemathesis gets no `--max-time`: with one, its fuzzing and
stateful phases repeat until the time is spent, so a faster machine would test
more. `AGENTRY_FUZZ_SECONDS` (default 300) only kills a run that hangs. The
report is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("AGENTRY_FUZZ_EXAMPLES", "8"))
SECONDS = int(os.environ.get("AGENTRY_FUZZ_SECONDS", "300"))
SEED = int(os.environ.get("AGENTRY_FUZZ_SEED", "20261202"))
#: A comma-separated list of check names runs only those. Unset, every check
#: runs as configured in schemathesis.toml (`--checks all` on the command line
#: would override its per-operation settings).
CHECKS = os.environ.get("AGENTRY_FUZZ_CHECKS", "")
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def live(stack_factory):
    """A server, a user, and an agent and session of theirs to find."""
    stack = stack_factory()
    server = stack.server()
    api = stack.user(server)
    agent = api.create_agent(model="offline")
    session = api.create_session(agent["id"])
    return stack, server, api, session


@pytest.mark.parametrize("path", ["auth/login", "sessions/{session}/artifacts"])
def test_a_multipart_body_daphne_cannot_parse_gets_the_json_error(live, path):
    # Twisted under daphne used to answer these itself: a bare 400, no body.
    _, server, api, session = live
    response = httpx.post(
        f"{server.url}/api/{path.format(session=session['id'])}/",
        content=b"--b--",
        headers={**api.headers, "Content-Type": "multipart/form-data; boundary=b"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.timeout(SECONDS + 120)
def test_every_response_matches_the_schema_and_none_is_a_5xx(live, tmp_path):
    stack, server, api, session = live

    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis),
        "--config-file",
        str(CONFIG),
        "run",
        f"{server.url}/api/schema/?format=json",
        "--url",
        server.url,
        "--header",
        f"Authorization: Bearer {api.token}",
        "--max-examples",
        str(EXAMPLES),
        # The report prints "Seed: not used in the deterministic mode", but an
        # explicit seed still seeds each operation's generation and stateful runs.
        "--seed",
        str(SEED),
        # Also keeps no example database: no run replays an earlier one's cases.
        "--generation-deterministic",
        "--request-timeout",
        "30",
        # One worker: two would race each other's deletes and updates, which
        # makes what a CI run finds depend on timing rather than the seed.
        "--workers",
        "1",
        # Logging out would revoke nothing the run needs, but the refresh and
        # logout operations need a refresh token the generator cannot know.
        "--exclude-path-regex",
        "^/api/auth/(logout|refresh)",
        "--no-color",
    ]
    if CHECKS:
        command += ["--checks", CHECKS]
    try:
        done = subprocess.run(
            command,
            env={**os.environ, "AGENTRY_FUZZ_SESSION": session["id"]},
            capture_output=True,
            text=True,
            timeout=SECONDS,
            cwd=tmp_path,
            check=False,
        )
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        returncode = None
        stdout, stderr = (_text(exc.stdout), _text(exc.stderr))
    report = stdout + stderr
    saved = stack.logs / "schemathesis.txt"
    saved.write_text(report)
    print(f"schemathesis report: {saved}\n{report[-3000:]}")
    assert returncode is not None, f"no result in {SECONDS} s\n{report[-12000:]}"
    assert returncode == 0, report[-12000:]


def _text(output: str | bytes | None) -> str:
    # What a timed-out run printed arrives as bytes, even in text mode.
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""
