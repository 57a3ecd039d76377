"""Executions stored before delegation become the roots of one-node trees, and
their usage counters fill the columns reports add up (sessions_app 0004)."""

from __future__ import annotations

BEFORE = [
    ("accounts", "0004_webhook_secret"),
    ("agents", "0003_workflow_and_webhooks"),
    ("sessions_app", "0003_attachments_as_references"),
]
AFTER = [("sessions_app", "0004_execution_trees_usage_and_durability")]


def test_old_executions_are_their_own_roots_with_usage_columns(migrator):
    apps = migrator(BEFORE)
    User = apps.get_model("accounts", "User")
    Agent = apps.get_model("agents", "Agent")
    Session = apps.get_model("sessions_app", "Session")
    AgentExecution = apps.get_model("sessions_app", "AgentExecution")
    user = User.objects.create(username="ann", email="ann@example.com")
    agent = Agent.objects.create(owner=user, name="Old", slug="old")
    session = Session.objects.create(agent=agent, user=user)
    counted = AgentExecution.objects.create(
        session=session,
        agent=agent,
        user=user,
        usage={"requests": 2, "input_tokens": 30, "output_tokens": 7, "tool_calls": 1},
    )
    empty = AgentExecution.objects.create(session=session, agent=agent, user=user)

    apps = migrator(AFTER)
    AgentExecution = apps.get_model("sessions_app", "AgentExecution")
    counted = AgentExecution.objects.get(pk=counted.pk)
    assert (counted.root_id, counted.parent_id, counted.depth) == (counted.pk, None, 0)
    assert (counted.requests, counted.input_tokens, counted.output_tokens) == (2, 30, 7)
    assert counted.cost_usd is None and counted.priced is False
    empty = AgentExecution.objects.get(pk=empty.pk)
    assert empty.root_id == empty.pk
    assert (empty.requests, empty.input_tokens, empty.output_tokens) == (0, 0, 0)
