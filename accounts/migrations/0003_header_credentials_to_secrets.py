"""Moves credential-like header values out of stored tool configs.

Before secrets existed, `http_endpoint` and `mcp_server` configs held API keys
in plain text, and every version snapshot and listing copied them. Each such
value (a header named Authorization, Cookie, or containing key, token or
secret) becomes a secret of the agent's owner, and the config keeps a
`{"secret": name}` reference: in the agent's tools and in its versions, so
restoring an old version still works. Listings keep no header value at all
(every one masked, `model_settings.extra_headers` too); a tool header value
only they held becomes a secret of the publisher, so it is not lost. Going back leaves the references in place.
"""

from django.db import migrations

from accounts.secrets import agent_config_mask, tool_headers_store


def _store(Secret, owner_id, tools, prefix):
    return tool_headers_store(
        owner_id=owner_id, tools=tools, name_prefix=prefix, secret_model=Secret
    )


def move_header_credentials(apps, schema_editor):
    Secret = apps.get_model("accounts", "Secret")
    AgentTool = apps.get_model("agents", "AgentTool")
    AgentVersion = apps.get_model("agents", "AgentVersion")
    Listing = apps.get_model("agents", "Listing")

    tools = AgentTool.objects.select_related("agent").exclude(config={})
    for tool in tools.iterator():
        entry = {"tool": tool.tool, "config": tool.config}
        [moved] = _store(Secret, tool.agent.owner_id, [entry], tool.agent.slug)
        if moved["config"] != tool.config:
            AgentTool.objects.filter(pk=tool.pk).update(config=moved["config"])

    for version in AgentVersion.objects.select_related("agent").iterator():
        config = version.config
        if not isinstance(config, dict) or not isinstance(config.get("tools"), list):
            continue
        agent = version.agent
        moved = _store(Secret, agent.owner_id, config["tools"], agent.slug)
        if moved != config["tools"]:
            AgentVersion.objects.filter(pk=version.pk).update(
                config={**config, "tools": moved}
            )

    for listing in Listing.objects.select_related("source_agent").iterator():
        config = listing.config
        if not isinstance(config, dict) or not isinstance(config.get("tools"), list):
            continue
        prefix = listing.source_agent.slug if listing.source_agent else "listing"
        _store(Secret, listing.publisher_id, config["tools"], prefix)
        masked = agent_config_mask(config)
        if masked != config:
            Listing.objects.filter(pk=listing.pk).update(config=masked)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_tokens_valid_after_and_secrets"),
        ("agents", "0002_tool_approval_ttl_and_edit"),
        ("sessions_app", "0002_pinned_versions_and_approval_audit"),
    ]

    operations = [
        migrations.RunPython(move_header_credentials, migrations.RunPython.noop),
    ]
