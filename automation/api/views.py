"""REST endpoints of background runs, schedules, webhook deliveries and the
webhook secret. Thin: authenticate, validate, call `automation.runs` /
`automation.schedules` / `automation.webhooks`."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.selectors import agents_visible_to
from automation import schedules, webhooks
from automation.api.serializers import (
    BackgroundRunSerializer,
    RunAcceptedSerializer,
    ScheduleSerializer,
    WebhookDeliverySerializer,
    WebhookSecretSerializer,
)
from automation.models import Schedule, WebhookDelivery
from automation.runs import start_run
from core.errors import ApiError
from core.filters import StrictBooleanFilter, StrictFilterSet
from sessions_app import runner, selectors
from sessions_app.frames import execution_payload


def _rejected(exc: runner.TurnRejected) -> ApiError:
    details = dict(exc.details or {}) if getattr(exc, "details", None) else {}
    if exc.retry_after is not None:
        details["retry_after_seconds"] = exc.retry_after
    return ApiError(
        exc.code, exc.message, exc.status, details or None, retry_after=exc.retry_after
    )


def _accepted(submission: runner.Submission) -> Response:
    execution = submission.execution
    return Response(
        {
            "execution": execution_payload(execution),
            "session": str(execution.session_id),
        },
        status=status.HTTP_202_ACCEPTED,
    )


class AgentRunsView(APIView):
    @extend_schema(
        request=BackgroundRunSerializer,
        responses={202: RunAcceptedSerializer},
        summary="Start a background run of an agent; answers at once",
    )
    def post(self, request: Request, pk: str) -> Response:
        agent = agents_visible_to(request.user).filter(pk=pk).first()
        if agent is None:
            raise NotFound("No such agent.")
        body = BackgroundRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        session = None
        if body.validated_data.get("session") is not None:
            session = selectors.session_of(
                user=request.user, session_id=body.validated_data["session"]
            )
            if session is None or session.agent_id != agent.pk:
                raise serializers.ValidationError(
                    {"session": ["No session of yours with this agent has that id."]}
                )
        try:
            submission = async_to_sync(start_run)(
                user=request.user,
                agent=agent,
                content=body.validated_data["input"],
                session=session,
                webhook_url=body.validated_data.get("webhook_url") or "",
            )
        except runner.TurnRejected as exc:
            raise _rejected(exc) from None
        return _accepted(submission)


class ScheduleFilter(StrictFilterSet):
    enabled = StrictBooleanFilter()

    class Meta:
        model = Schedule
        fields = ["agent", "enabled"]


class ScheduleViewSet(viewsets.ModelViewSet):
    """Your schedules: an agent run with `input` at every slot of `cron`."""

    serializer_class = ScheduleSerializer
    filterset_class = ScheduleFilter
    ordering_fields = ["created_at", "next_run_at", "last_run_at"]

    def get_queryset(self) -> QuerySet[Schedule]:
        if getattr(self, "swagger_fake_view", False):
            return Schedule.objects.none()
        return Schedule.objects.filter(owner=self.request.user)

    def perform_create(self, serializer: ScheduleSerializer) -> None:
        serializer.save(owner=self.request.user)

    @extend_schema(request=None, responses={202: RunAcceptedSerializer})
    @action(detail=True, methods=["post"], url_path="run-now", filter_backends=[])
    def run_now(self, request: Request, pk: str | None = None) -> Response:
        """Starts a run of the schedule now, whatever its next slot."""
        schedule = self.get_object()
        try:
            submission = async_to_sync(schedules.fire)(schedule)
        except runner.TurnRejected as exc:
            raise _rejected(exc) from None
        return _accepted(submission)


class ExecutionDeliveriesView(generics.ListAPIView):
    """Every attempt to tell a webhook that the execution finished."""

    serializer_class = WebhookDeliverySerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        if getattr(self, "swagger_fake_view", False):
            return WebhookDelivery.objects.none()
        execution = (
            selectors.executions_of(self.request.user)
            .filter(pk=self.kwargs["pk"])
            .first()
        )
        if execution is None:
            raise NotFound("No such execution.")
        return WebhookDelivery.objects.filter(execution=execution)


class WebhookSecretRotateView(APIView):
    @extend_schema(
        request=None,
        responses={200: WebhookSecretSerializer},
        summary="Make a new webhook secret (the only time it is shown)",
    )
    def post(self, request: Request) -> Response:
        return Response(
            {"webhook_secret": webhooks.webhook_secret_rotate(request.user)}
        )
