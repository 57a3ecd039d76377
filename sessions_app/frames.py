"""The frames of the streaming protocol (DESIGN.md section 5), as plain dicts.

Websocket, SSE and the terminal chat send exactly these; REST answers use the
same `event_payload` / `execution_payload` shapes, so every client reads one
format.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypedDict

from sessions_app.models import AgentExecution, Event

TERMINAL_STATUSES = frozenset(s.value for s in AgentExecution.FINAL_STATUSES)
#: Where a streaming answer ends: a final status, or a pause for approval.
TURN_END_STATUSES = TERMINAL_STATUSES | {AgentExecution.Status.AWAITING_APPROVAL.value}


class EventFrame(TypedDict):
    type: Literal["event"]
    event: dict[str, Any]


class ExecutionFrame(TypedDict):
    type: Literal["execution"]
    execution: dict[str, Any]


class ErrorFrame(TypedDict):
    type: Literal["error"]
    error: dict[str, Any]


Frame = EventFrame | ExecutionFrame | ErrorFrame | dict[str, Any]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def event_payload(event: Event) -> dict[str, Any]:
    return {
        "id": str(event.pk),
        "session": str(event.session_id),
        "execution": str(event.execution_id) if event.execution_id else None,
        "author": event.author,
        "kind": event.kind,
        "content": event.content,
        "metadata": event.metadata,
        "actions": event.actions,
        "partial": False,
        "turn_complete": event.turn_complete,
        "error_code": event.error_code or None,
        "error_message": event.error_message or None,
        "sequence_number": event.sequence_number,
        "created_at": _iso(event.created_at),
    }


def partial_payload(
    *, session_id: Any, execution_id: Any, content: str, created_at: datetime
) -> dict[str, Any]:
    """Streamed text: every event field, not stored, no sequence number."""
    return {
        "id": None,
        "session": str(session_id),
        "execution": str(execution_id),
        "author": Event.Author.AGENT.value,
        "kind": Event.Kind.MESSAGE.value,
        "content": content,
        "metadata": {},
        "actions": {},
        "partial": True,
        "turn_complete": False,
        "error_code": None,
        "error_message": None,
        "sequence_number": None,
        "created_at": _iso(created_at),
    }


def execution_payload(execution: AgentExecution) -> dict[str, Any]:
    return {
        "id": str(execution.pk),
        "session": str(execution.session_id),
        "agent": str(execution.agent_id),
        "agent_version": execution.agent_version,
        "parent": str(execution.parent_id) if execution.parent_id else None,
        "root": str(execution.root_id or execution.pk),
        "depth": execution.depth,
        "user": str(execution.user_id),
        "status": execution.status,
        "input": execution.input,
        "client_message_id": execution.client_message_id or None,
        "output": execution.output,
        "model": execution.model,
        "usage": execution.usage,
        "budget_warning": execution.budget_warning,
        "error_code": execution.error_code or None,
        "error_message": execution.error_message or None,
        "created_at": _iso(execution.created_at),
        "started_at": _iso(execution.started_at),
        "finished_at": _iso(execution.finished_at),
        "duration_ms": execution.duration_ms,
        "trace_id": execution.trace_id or None,
    }


def event_frame(event: Event) -> EventFrame:
    return {"type": "event", "event": event_payload(event)}


def execution_frame(execution: AgentExecution) -> ExecutionFrame:
    return {"type": "execution", "execution": execution_payload(execution)}


def error_frame(code: str, message: str) -> ErrorFrame:
    return {"type": "error", "error": {"code": code, "message": message}}


def is_terminal(frame: Frame) -> bool:
    """A turn's root execution finished (a delegated child's end is not the turn's)."""
    return _root_status(frame) in TERMINAL_STATUSES


def ends_turn(frame: Frame) -> bool:
    """The turn stops here: its root finished, or it waits for an approval."""
    return _root_status(frame) in TURN_END_STATUSES


def _root_status(frame: Frame) -> str | None:
    """The status an execution frame reports for a turn's root execution
    (None for any other frame)."""
    fields: Mapping[str, Any] = frame
    if fields.get("type") != "execution" or fields["execution"].get("parent"):
        return None
    status: str | None = fields["execution"].get("status")
    return status
