"""Turns stored before attachments became references lose their files' bytes
and text to a reference line (migration sessions_app 0003)."""

from __future__ import annotations

import base64

# Every app is pinned: later migrations add columns the historical models of
# this point do not fill.
BEFORE = [
    ("accounts", "0003_header_credentials_to_secrets"),
    ("agents", "0002_tool_approval_ttl_and_edit"),
    ("sessions_app", "0002_pinned_versions_and_approval_audit"),
]
AFTER = [("sessions_app", "0003_attachments_as_references")]
IMAGE = base64.b64encode(b"\x89PNG" + b"\0" * 3000).decode()


def stored_turn():
    """Messages as the runner stored them when prompts carried the files."""
    return [
        {
            "kind": "request",
            "parts": [
                {
                    "part_kind": "user-prompt",
                    "content": [
                        "look at these",
                        "\n\nAttached file 'notes.txt':\n" + "secret text " * 500,
                        {"kind": "binary", "data": IMAGE, "media_type": "image/png"},
                    ],
                },
                {
                    "part_kind": "tool-return",
                    "tool_name": "view_artifact",
                    "content": [
                        {"kind": "binary", "data": IMAGE, "media_type": "image/png"}
                    ],
                },
            ],
        },
        {"kind": "response", "parts": [{"part_kind": "text", "content": "seen"}]},
    ]


def test_old_turns_keep_reference_lines_instead_of_their_files(migrator):
    apps = migrator(BEFORE)
    User = apps.get_model("accounts", "User")
    Agent = apps.get_model("agents", "Agent")
    Session = apps.get_model("sessions_app", "Session")
    AgentExecution = apps.get_model("sessions_app", "AgentExecution")
    user = User.objects.create(username="ann", email="ann@example.com")
    agent = Agent.objects.create(owner=user, name="Eyes", slug="eyes")
    session = Session.objects.create(agent=agent, user=user)
    with_files = AgentExecution.objects.create(
        session=session, agent=agent, user=user, messages=stored_turn()
    )
    plain = [
        {"kind": "request", "parts": [{"part_kind": "user-prompt", "content": "hi"}]}
    ]
    without = AgentExecution.objects.create(
        session=session, agent=agent, user=user, messages=plain
    )

    apps = migrator(AFTER)
    AgentExecution = apps.get_model("sessions_app", "AgentExecution")
    messages = AgentExecution.objects.get(pk=with_files.pk).messages
    prompt, tool_return = messages[0]["parts"]
    assert prompt["content"] == [
        "look at these",
        "\n\n[Attached file 'notes.txt'; its text is not kept in the conversation]",
        "[image/png content attached to this message, 3004 bytes; not kept in the conversation]",
    ]
    assert tool_return["content"] == [
        "[image/png content returned by the tool, 3004 bytes; not kept in the conversation]"
    ]
    assert messages[1] == stored_turn()[1]
    assert IMAGE not in str(messages) and "secret text" not in str(messages)
    assert AgentExecution.objects.get(pk=without.pk).messages == plain
