"""Which agents an agent hands work to: its `delegate` tools' targets and its
workflow steps (DESIGN.md section 10), and the checks a save makes on them.

Public surface:
    DELEGATE_TOOL                 the registry kind of a delegation tool
    MAX_WORKFLOW_STEPS            a workflow has 1 to this many steps
    DEFAULT_STEP_PROMPT           a step without `prompt` gets the previous output
    validate_workflow(value)      `Agent.workflow` normalised, or AgentConfigError
    targets_of(tools, workflow)   the agent ids a config hands work to, in order
    check_targets(*, owner, agent_id, kind, tools, workflow)
                                  visibility, cycles and depth, checked on save
    render_step_prompt(template, *, user_input, previous)

A save refuses (AgentConfigError, a 400 for the API) a target the owner cannot
see, a chain of targets leading back to the agent being saved, and a chain
deeper than `AGENTRY_MAX_DELEGATION_DEPTH`. Only agents the owner can see are
followed: what lies behind another user's private agent is not theirs to know,
and the runtime refuses cycles and depth there anyway (`sessions_app.delegation`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings

from agents.factory import AgentConfigError

DELEGATE_TOOL = "delegate"
MAX_WORKFLOW_STEPS = 20
MAX_STEP_NAME_CHARS = 100
MAX_STEP_PROMPT_CHARS = 20_000
DEFAULT_STEP_PROMPT = "{previous}"
_STEP_KEYS = frozenset({"name", "agent", "prompt"})


def _agent_id(value: Any, where: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (TypeError, ValueError, AttributeError):
        raise AgentConfigError(f"{where}: agent must be an agent id.") from None


def validate_workflow(value: Any) -> dict[str, Any] | None:
    """`{"steps": [{"name", "agent", "prompt"}]}` with 1 to 20 steps, each
    step's prompt defaulting to `"{previous}"`; None stays None."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"steps"}:
        raise AgentConfigError('workflow must be an object like {"steps": [...]}.')
    steps = value["steps"]
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_WORKFLOW_STEPS:
        raise AgentConfigError(
            f"workflow.steps must be a list of 1 to {MAX_WORKFLOW_STEPS} steps."
        )
    normalised = []
    for index, step in enumerate(steps, start=1):
        where = f"workflow step {index}"
        if not isinstance(step, Mapping) or not set(step) <= _STEP_KEYS:
            raise AgentConfigError(
                f'{where} must be an object with "name", "agent" and "prompt".'
            )
        name = step.get("name")
        if (
            not isinstance(name, str)
            or not 0 < len(name.strip()) <= MAX_STEP_NAME_CHARS
        ):
            raise AgentConfigError(
                f"{where}: name must be text of 1 to {MAX_STEP_NAME_CHARS} characters."
            )
        prompt = step.get("prompt", DEFAULT_STEP_PROMPT)
        if not isinstance(prompt, str) or len(prompt) > MAX_STEP_PROMPT_CHARS:
            raise AgentConfigError(
                f"{where}: prompt must be text of at most {MAX_STEP_PROMPT_CHARS} "
                "characters."
            )
        normalised.append(
            {
                "name": name.strip(),
                "agent": _agent_id(step.get("agent"), where),
                "prompt": prompt or DEFAULT_STEP_PROMPT,
            }
        )
    return {"steps": normalised}


def render_step_prompt(template: str, *, user_input: str, previous: str) -> str:
    """The step's prompt: `{input}` is the turn's message, `{previous}` the
    previous step's output; every other brace stays as written."""
    marker = "\x00previous\x00"
    return (
        template.replace("{previous}", marker)
        .replace("{input}", user_input)
        .replace(marker, previous)
    )


def targets_of(
    tools: Iterable[Mapping[str, Any]], workflow: Mapping[str, Any] | None
) -> list[str]:
    """Agent ids the config hands work to: enabled delegate tools, then steps."""
    targets = [
        str((entry.get("config") or {}).get("agent"))
        for entry in tools
        if entry.get("tool") == DELEGATE_TOOL and entry.get("enabled", True)
    ]
    targets += [str(step.get("agent")) for step in (workflow or {}).get("steps", [])]
    return targets


def _saved_targets(agent_ids: set[str], owner: Any) -> dict[str, list[str]]:
    """The targets of each saved agent among `agent_ids` that `owner` can see."""
    from agents.selectors import agents_visible_to

    found: dict[str, list[str]] = {}
    for agent in (
        agents_visible_to(owner).filter(pk__in=agent_ids).prefetch_related("tools")
    ):
        tools = [tool.as_config() for tool in agent.tools.all()]
        found[str(agent.pk)] = targets_of(tools, agent.workflow)
    return found


def check_targets(
    *,
    owner: Any,
    agent_id: Any,
    kind: str,
    tools: Iterable[Mapping[str, Any]],
    workflow: Mapping[str, Any] | None,
) -> None:
    """Refuses what a save of the agent `agent_id` (None for a new one) owned by
    `owner` may not hand work to. Raises AgentConfigError."""
    from agents.selectors import agents_visible_to

    if kind == "workflow" and not workflow:
        raise AgentConfigError(
            'A workflow agent needs workflow steps: {"steps": [{"name", "agent"}]}.'
        )
    if kind != "workflow" and workflow:
        raise AgentConfigError('Only an agent of kind "workflow" has workflow steps.')
    targets = targets_of(tools, workflow)
    if not targets:
        return
    wanted = {_agent_id(t, "delegation") for t in targets}
    visible = {
        str(pk)
        for pk in agents_visible_to(owner)
        .filter(pk__in=wanted, is_active=True)
        .values_list("pk", flat=True)
    }
    hidden = sorted(wanted - visible)
    if hidden:
        raise AgentConfigError(
            f"No agent {hidden[0]} that this agent's owner can use: delegate "
            "tools and workflow steps may name their owner's agents and active "
            "public agents."
        )
    self_id = str(agent_id) if agent_id is not None else None
    if self_id is not None and self_id in wanted:
        raise AgentConfigError("An agent cannot hand work to itself.")
    limit = settings.AGENTRY_MAX_DELEGATION_DEPTH
    # Breadth-first over the saved graph: each level is one more delegation.
    graph: dict[str, list[str]] = {}
    frontier, depth = set(wanted), 1
    while frontier:
        if depth > limit:
            raise AgentConfigError(
                f"Delegation from this agent goes deeper than {limit} levels "
                "(AGENTRY_MAX_DELEGATION_DEPTH)."
            )
        graph.update(_saved_targets(frontier - graph.keys(), owner))
        following = {t for node in frontier for t in graph.get(node, [])}
        if self_id is not None and self_id in following:
            raise AgentConfigError(
                "This delegation would form a cycle: a target hands work back "
                "to this agent."
            )
        frontier, depth = following, depth + 1
