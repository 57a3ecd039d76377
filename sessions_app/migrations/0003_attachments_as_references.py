"""Turns stored before attachments became references: their files' bytes and
inlined text leave `AgentExecution.messages`, a line saying what was there stays.

Earlier runs kept each attachment in the stored prompt (base64 for media, the
file's text after an "Attached file 'name':" line) and every later turn of the
session loaded and re-sent it. The rewrite is self-contained: it reads the JSON
as those runs wrote it, not through today's code.
"""

from django.db import migrations

INLINED_FILE_PREFIX = "\n\nAttached file "


def _binary_line(item, origin):
    data = str(item.get("data") or "")
    size = len(data) * 3 // 4 - (len(data) - len(data.rstrip("=")))
    media_type = item.get("media_type") or "binary"
    return (
        f"[{media_type} content {origin}, {size} bytes; not kept in the conversation]"
    )


def _prompt(items):
    kept = []
    for item in items:
        if isinstance(item, dict) and item.get("kind") == "binary":
            kept.append(_binary_line(item, "attached to this message"))
        elif isinstance(item, str) and item.startswith(INLINED_FILE_PREFIX):
            header = item[len("\n\n") :].split("\n", 1)[0].rstrip(":")
            kept.append(f"\n\n[{header}; its text is not kept in the conversation]")
        else:
            kept.append(item)
    return kept


def _tool_content(content):
    if isinstance(content, list):
        return [_tool_content(item) for item in content]
    if isinstance(content, dict) and content.get("kind") == "binary":
        return _binary_line(content, "returned by the tool")
    return content


def _slimmed(messages):
    changed = False
    for message in messages or ():
        for part in message.get("parts") or ():
            kind = part.get("part_kind")
            if kind == "user-prompt" and isinstance(part.get("content"), list):
                new = _prompt(part["content"])
            elif kind == "tool-return":
                new = _tool_content(part.get("content"))
            else:
                continue
            if new != part.get("content"):
                part["content"], changed = new, True
    return changed


def attachments_to_references(apps, schema_editor):
    AgentExecution = apps.get_model("sessions_app", "AgentExecution")
    rows = AgentExecution.objects.exclude(messages=[]).only("id", "messages")
    for execution in rows.iterator(chunk_size=200):
        if _slimmed(execution.messages):
            execution.save(update_fields=["messages"])


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0002_pinned_versions_and_approval_audit")]

    operations = [
        migrations.RunPython(attachments_to_references, migrations.RunPython.noop)
    ]
