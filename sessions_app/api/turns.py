"""REST endpoints that run turns: messages (blocking JSON or SSE), cancel, agent run.

Thin: authenticate, validate, call the runner, relay. The SSE stream joins the
session's group before the turn starts, so it carries exactly the frames a
websocket client of the session sees.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authenticated import authenticated_user
from agents.selectors import agents_visible_to
from core.errors import ApiError
from core.renderers import PassThroughRenderer
from core.serializers import StrictCharField, StrictChoiceField, StrictUUIDField
from sessions_app import broadcast, runner, selectors, services
from sessions_app.api.serializers import EventSerializer, ExecutionSerializer
from sessions_app.frames import ends_turn, event_payload, execution_payload
from sessions_app.models import AgentExecution, Session
from sessions_app.turn_request import (
    MAX_ATTACHMENTS,
    MAX_CLIENT_MESSAGE_ID,
    MAX_TRACEPARENT,
    POLICIES,
)

KEEP_ALIVE_SECONDS = 15.0


class EventStreamRenderer(PassThroughRenderer):
    """Lets `Accept: text/event-stream` (or `?format=sse`) through content
    negotiation; the stream itself is a `StreamingHttpResponse`, and errors
    before it starts are JSON (`core.errors`)."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"


class MessageSerializer(serializers.Serializer[Any]):
    """The shape of a message body, for the schema and field-by-field errors;
    the request itself is validated as `TurnRequest` builds it."""

    content = StrictCharField(trim_whitespace=False)
    attachments = serializers.ListField(
        child=StrictUUIDField(), required=False, max_length=MAX_ATTACHMENTS
    )
    client_message_id = StrictCharField(
        required=False, allow_blank=True, max_length=MAX_CLIENT_MESSAGE_ID
    )
    multitask = StrictChoiceField(choices=POLICIES, required=False)
    traceparent = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=MAX_TRACEPARENT,
        help_text="W3C trace context: the turn's span joins the caller's trace "
        "(as with a `traceparent` header).",
    )


class RunSerializer(serializers.Serializer[Any]):
    input = StrictCharField(trim_whitespace=False)
    session = StrictUUIDField(required=False, allow_null=True)


TURN_LIMITED = OpenApiResponse(
    description="rate_limited (AGENTRY_TURN_RATE; retry after `Retry-After`), "
    "queue_full or too_many_active_turns: the user's turn limits (see the "
    "README's limits)"
)

TurnAnswer = inline_serializer(
    "TurnAnswer",
    {
        "execution": ExecutionSerializer(),
        "events": EventSerializer(many=True),
    },
)


# One server-sent event as `_sse` writes it. OpenAPI before 3.2 has the schema
# of `text/event-stream` describe each event, not the stream as one string.
ServerSentEvent = inline_serializer(
    "ServerSentEvent",
    {
        "event": StrictCharField(help_text="The frame's type."),
        "id": StrictCharField(
            required=False, help_text="An event frame's sequence number."
        ),
        "data": StrictCharField(
            help_text="The frame as JSON, as a websocket of the session gets it."
        ),
    },
)


def _turn_answer(execution: AgentExecution) -> dict[str, Any]:
    return {
        "execution": execution_payload(execution),
        "events": [
            event_payload(e) for e in selectors.events_of_execution(execution.pk)
        ],
    }


def _session_or_404(request: Request, pk: str) -> Session:
    session = selectors.session_of(user=authenticated_user(request), session_id=pk)
    if session is None:
        raise NotFound("No such session.")
    return session


def _rejected(exc: runner.TurnRejected) -> ApiError:
    details = (
        {"retry_after_seconds": exc.retry_after}
        if exc.retry_after is not None
        else exc.details
    )
    return ApiError(
        exc.code, exc.message, exc.status, details, retry_after=exc.retry_after
    )


def _turn_request(**fields: Any) -> runner.TurnRequest:
    try:
        return runner.TurnRequest(**fields)
    except runner.TurnRejected as exc:
        raise _rejected(exc) from None


def _run_blocking(request: runner.TurnRequest) -> AgentExecution:
    try:
        return async_to_sync(runner.run_to_completion)(request)
    except runner.TurnRejected as exc:
        raise _rejected(exc) from None


_STREAM_VALUES = {"true": True, "1": True, "false": False, "0": False}

STREAM_PARAMETER = OpenApiParameter(
    "stream",
    bool,
    description="true: answer with the SSE stream of the turn's frames, as "
    "`Accept: text/event-stream` or `?format=sse` do.",
)


def _wants_stream(request: Request) -> bool:
    raw = request.query_params.get("stream")
    if raw is not None and raw.lower() not in _STREAM_VALUES:
        raise serializers.ValidationError({"stream": ["Must be true or false."]})
    return (
        isinstance(request.accepted_renderer, EventStreamRenderer)
        or "text/event-stream" in request.headers.get("Accept", "")
        or (raw is not None and _STREAM_VALUES[raw.lower()])
    )


def _sse(frame: Mapping[str, Any]) -> str:
    lines = [f"event: {frame.get('type', 'message')}"]
    event = frame.get("event") if frame.get("type") == "event" else None
    if event and event.get("sequence_number") is not None:
        lines.append(f"id: {event['sequence_number']}")
    lines.append(f"data: {json.dumps(frame, ensure_ascii=False)}")
    return "\n".join(lines) + "\n\n"


async def _relay(
    subscription: broadcast.Subscription, submission: runner.Submission
) -> AsyncIterator[str]:
    execution_id = str(submission.execution.pk)
    try:
        if submission.duplicate:
            yield _sse(submission.frame)
            return
        while True:
            frame = await subscription.next(timeout=KEEP_ALIVE_SECONDS)
            if frame is None:
                yield ": keep-alive\n\n"
                continue
            yield _sse(frame)
            fields: Mapping[str, Any] = frame
            if ends_turn(frame) and fields["execution"]["id"] == execution_id:
                return
    finally:
        await subscription.close()


def _stream(request: runner.TurnRequest) -> StreamingHttpResponse:
    async def start() -> tuple[broadcast.Subscription, runner.Submission]:
        subscription = await broadcast.Subscription(request.session_id).open()
        try:
            return subscription, await runner.submit_turn(request)
        except BaseException:
            await subscription.close()
            raise

    try:
        subscription, submission = async_to_sync(start)()
    except runner.TurnRejected as exc:
        raise _rejected(exc) from None
    response = StreamingHttpResponse(
        _relay(subscription, submission),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


class SessionMessagesView(APIView):
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, EventStreamRenderer]

    @extend_schema(
        request=MessageSerializer,
        parameters=[STREAM_PARAMETER],
        responses={
            (200, "application/json"): TurnAnswer,
            (200, "text/event-stream"): OpenApiResponse(
                ServerSentEvent,
                description="The turn's frames as server-sent events, up to "
                "the one that ends it.",
            ),
            409: OpenApiResponse(description="session_busy: another turn is running"),
            429: TURN_LIMITED,
        },
        summary="Send a message: one turn (JSON when it ends, or an SSE stream of its frames)",
    )
    def post(self, request: Request, pk: str) -> Response | StreamingHttpResponse:
        session = _session_or_404(request, pk)
        stream = _wants_stream(request)
        body = MessageSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            turn = runner.TurnRequest.from_message(
                body.validated_data, session_id=str(session.pk), user_id=request.user.pk
            )
        except runner.TurnRejected as exc:
            raise _rejected(exc) from None
        if stream:
            return _stream(turn)
        execution = _run_blocking(turn)
        return Response(_turn_answer(execution))


class ApprovalSerializer(serializers.Serializer[Any]):
    decisions = serializers.DictField(
        child=serializers.JSONField(),
        help_text='tool_call_id -> true, false or {"approved": bool, "message": str, '
        '"args": {...}} (edited args only where the tool entry has allow_edit)',
    )


class ExecutionApproveView(APIView):
    @extend_schema(
        request=ApprovalSerializer,
        responses={
            200: TurnAnswer,
            409: OpenApiResponse(
                description="not_awaiting_approval: the turn is not paused for approval"
            ),
        },
        summary="Decide on a paused turn's tool calls and run it on to its end",
    )
    def post(self, request: Request, pk: str) -> Response:
        body = ApprovalSerializer(data=request.data)
        body.is_valid(raise_exception=True)

        async def approve_and_wait() -> AgentExecution:
            submission = await runner.submit_approval(
                execution_id=pk,
                user_id=request.user.pk,
                decisions=body.validated_data["decisions"],
            )
            return await runner.wait_for_execution(submission)

        try:
            execution = async_to_sync(approve_and_wait)()
        except runner.TurnRejected as exc:
            raise _rejected(exc) from None
        return Response(_turn_answer(execution))


class SessionCancelView(APIView):
    @extend_schema(
        request=None,
        responses={
            202: inline_serializer(
                "CancelAnswer", {"cancelled": serializers.BooleanField()}
            )
        },
        summary="Cancel the running turn of a session",
    )
    def post(self, request: Request, pk: str) -> Response:
        session = _session_or_404(request, pk)
        cancelled = async_to_sync(runner.cancel_turn)(str(session.pk))
        return Response({"cancelled": cancelled}, status=status.HTTP_202_ACCEPTED)


class AgentRunView(APIView):
    @extend_schema(
        request=RunSerializer,
        responses={
            200: inline_serializer(
                "RunAnswer",
                {
                    "session": serializers.UUIDField(),
                    "execution": ExecutionSerializer(),
                    "output": serializers.JSONField(),
                    "events": EventSerializer(many=True),
                },
            ),
            429: TURN_LIMITED,
        },
        summary="Run one turn of an agent, in a new session unless one is given",
    )
    def post(self, request: Request, pk: str) -> Response:
        agent = agents_visible_to(authenticated_user(request)).filter(pk=pk).first()
        if agent is None:
            raise NotFound("No such agent.")
        body = RunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        session_id = body.validated_data.get("session")
        if session_id is not None:
            session = selectors.session_of(
                user=authenticated_user(request), session_id=session_id
            )
            if session is None or session.agent_id != agent.pk:
                raise serializers.ValidationError(
                    {"session": ["No session of yours with this agent has that id."]}
                )
        else:
            content = body.validated_data["input"]
            try:
                session = services.session_create(
                    user=request.user,
                    agent=agent,
                    title=content.strip().splitlines()[0][:80]
                    if content.strip()
                    else "",
                )
            except services.AgentUnavailable as exc:
                raise _rejected(exc) from None
        try:
            execution = _run_blocking(
                _turn_request(
                    session_id=str(session.pk),
                    user_id=request.user.pk,
                    content=body.validated_data["input"],
                )
            )
        except ApiError:
            # A refused turn stores nothing, the session opened for it included.
            if session_id is None:
                session.delete()
            raise
        answer = _turn_answer(execution)
        return Response(
            {"session": str(session.pk), "output": execution.output, **answer}
        )


__all__ = [
    "AgentRunView",
    "ExecutionApproveView",
    "SessionCancelView",
    "SessionMessagesView",
]
