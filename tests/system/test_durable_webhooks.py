"""A webhook retry waiting when its process is killed is made after a restart.

One `inline` web process (it runs turns and delivers webhooks) on PostgreSQL
and Redis; the receiver fails twice, then answers. The process is killed with
SIGKILL while the second attempt waits for its backoff, then started again:
the restarted process makes the second and third attempts from the stored
pending delivery, so the delivery is still three attempts, none lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testing.fake_openai import FAKE_MODEL
from tests.system.conftest import wait_for
from tests.system.test_background import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: Long enough that the kill lands while the second attempt waits.
RETRY_BASE = 3


@pytest.fixture(scope="module")
def stack(stack_factory):
    stack = stack_factory(
        AGENTRY_WEBHOOK_RETRY_BASE=str(RETRY_BASE), AGENTRY_ALLOW_PRIVATE_URLS="1"
    )
    stack.web = stack.server("web")
    return stack


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(failures=2)
    yield receiver
    receiver.close()


def test_a_retry_pending_when_its_process_is_killed_is_made_after_the_restart(
    stack, receiver
):
    api = stack.user(stack.web)
    agent = api.create_agent(model=FAKE_MODEL)
    accepted = api.post(
        f"/api/agents/{agent['id']}/runs/",
        json={"input": "[[tokens=3]] report", "webhook_url": receiver.url},
    )
    assert accepted.status_code == 202, accepted.text
    execution_id = accepted.json()["execution"]["id"]

    def deliveries(count: int) -> Any:
        def enough() -> list[dict[str, Any]]:
            page = api.get(f"/api/executions/{execution_id}/deliveries/").json()
            return page["results"] if len(page["results"]) >= count else []

        return enough

    wait_for(deliveries(1), timeout=60, what="the first attempt")
    stack.web.kill()
    [(attempt, pending_url)] = stack.db.execute(
        "SELECT attempt, url FROM automation_pendingwebhook "
        "WHERE execution_id::text = %s",
        execution_id,
    )
    assert (attempt, pending_url) == (2, receiver.url), "the retry is stored"
    assert len(receiver.bodies) == 1

    stack.web.start()
    # Housekeeping (deliveries among it) starts with the first request.
    done = wait_for(deliveries(3), timeout=90, what="the attempts after the restart")
    assert [(d["attempt"], d["status_code"]) for d in done] == [
        (1, 500),
        (2, 500),
        (3, 204),
    ]
    assert len(receiver.bodies) == 3
    assert not stack.db.execute("SELECT id FROM automation_pendingwebhook")
