"""REST endpoints of sessions, their event log and artifacts, and executions.

Every queryset is scoped to the requesting user, so another user's objects are
404 on every route. Turns (messages, cancel, run) have their own views.
"""

from __future__ import annotations

import django_filters
from django.conf import settings
from django.db.models import QuerySet
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from accounts.authenticated import authenticated_user
from core.errors import ApiError, PayloadTooLarge
from core.filters import StrictFilterSet
from core.pagination import MAX_POSITION, SequencePagination
from core.renderers import PassThroughRenderer
from sessions_app import approvals, selectors, services
from sessions_app.api.serializers import (
    ApprovalDecisionSerializer,
    ArtifactSerializer,
    ArtifactUploadSerializer,
    EventPageSerializer,
    EventSerializer,
    ExecutionSerializer,
    SessionSerializer,
)
from sessions_app.artifacts import (
    UploadQuotaExceeded,
    artifact_create,
    content_disposition,
)
from sessions_app.models import AgentExecution, Artifact, Session

# Multipart framing around the file itself (boundaries, part headers, `name`).
_MULTIPART_OVERHEAD = 64 * 1024


class SessionFilter(StrictFilterSet):
    agent = django_filters.UUIDFilter(field_name="agent_id")

    class Meta:
        model = Session
        fields = ["agent", "external_session_id"]


class SessionViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Session],
):
    serializer_class = SessionSerializer
    filterset_class = SessionFilter
    search_fields = ["title", "external_session_id"]
    ordering_fields = ["created_at", "updated_at", "title"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Session]:
        if getattr(self, "swagger_fake_view", False):
            return Session.objects.none()
        return selectors.sessions_of(authenticated_user(self.request))

    def perform_create(self, serializer: BaseSerializer[Session]) -> None:
        fields = dict(serializer.validated_data)
        # "latest" is the only value a client writes (as None).
        follow_latest = fields.pop("agent_version", False) is None
        try:
            serializer.instance = services.session_create(
                user=authenticated_user(self.request),
                follow_latest=follow_latest,
                **fields,
            )
        except services.AgentUnavailable as exc:
            raise ApiError(exc.code, exc.message, exc.status) from None

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "after_sequence",
                {"type": "integer", "minimum": 0, "maximum": MAX_POSITION},
                description="Only events with a higher sequence number (default 0).",
            ),
            OpenApiParameter(
                "limit",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": SequencePagination.max_limit,
                },
                description="Page size (default 100, max 1000).",
            ),
        ],
        responses=EventPageSerializer,
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def events(self, request: Request, pk: str | None = None) -> Response:
        """The session's stored events in sequence order."""
        session = self.get_object()
        pager = SequencePagination(request)
        events = list(selectors.events_after(session.pk, pager.after, pager.limit + 1))
        page = EventSerializer(events[: pager.limit], many=True).data
        # many=True gives a ReturnList; the stubs type every `.data` a ReturnDict.
        return Response(pager.page(page, has_more=len(events) > pager.limit))  # type: ignore[arg-type]

    @extend_schema(
        methods=["GET"], responses=ArtifactSerializer(many=True), filters=False
    )
    @extend_schema(
        methods=["POST"],
        request={"multipart/form-data": ArtifactUploadSerializer},
        responses={
            201: ArtifactSerializer,
            413: OpenApiResponse(
                description="File larger than the upload cap "
                "(`payload_too_large`), or past your upload quota "
                "(`quota_exceeded`)."
            ),
        },
    )
    @action(
        detail=True,
        methods=["get", "post"],
        filter_backends=[],
        # Not the strict parsers: the display name is sanitised, not refused.
        parser_classes=[MultiPartParser, FormParser],
    )
    def artifacts(self, request: Request, pk: str | None = None) -> Response:
        """The session's artifacts (every version); POST uploads one."""
        session = self.get_object()
        if request.method == "GET":
            queryset = session.artifacts.order_by("name", "-version")
            # The stubs tie paginate_queryset to the viewset's own model.
            page = self.paginate_queryset(queryset)  # type: ignore[arg-type]
            data = ArtifactSerializer(
                page, many=True, context={"request": request}
            ).data
            return self.get_paginated_response(data)
        _refuse_oversized_body(request)
        upload = ArtifactUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        file = upload.validated_data["file"]
        if file.size > settings.MAX_UPLOAD_BYTES:
            raise _too_large()
        try:
            artifact = artifact_create(
                owner=authenticated_user(request),
                session=session,
                upload=file,
                name=upload.validated_data.get("name"),
            )
        except UploadQuotaExceeded as exc:
            raise ApiError(
                "quota_exceeded",
                str(exc),
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                {"quota_bytes": exc.quota, "used_bytes": exc.used, "size": exc.size},
            ) from None
        return Response(
            ArtifactSerializer(artifact, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )


def _too_large() -> PayloadTooLarge:
    limit = settings.MAX_UPLOAD_BYTES
    return PayloadTooLarge(
        f"Uploads are limited to {limit} bytes ({limit / 1024 / 1024:g} MiB)."
    )


def _refuse_oversized_body(request: Request) -> None:
    """Answers 413 from the headers alone, before any of the body is read."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.MAX_UPLOAD_BYTES + _MULTIPART_OVERHEAD:
        raise _too_large()


class ExecutionFilter(StrictFilterSet):
    session = django_filters.UUIDFilter(field_name="session_id")
    agent = django_filters.UUIDFilter(field_name="agent_id")
    status = django_filters.ChoiceFilter(choices=AgentExecution.Status.choices)
    root = django_filters.UUIDFilter(
        field_name="root_id", help_text="The executions of one turn's tree."
    )
    parent = django_filters.UUIDFilter(field_name="parent_id")

    class Meta:
        model = AgentExecution
        fields = ["session", "agent", "status", "root", "parent"]


class ExecutionViewSet(viewsets.ReadOnlyModelViewSet[AgentExecution]):
    """Turns of your sessions, with usage and timing."""

    serializer_class = ExecutionSerializer
    filterset_class = ExecutionFilter
    search_fields = ["input"]
    ordering_fields = ["created_at", "started_at", "finished_at", "duration_ms"]

    def get_queryset(self) -> QuerySet[AgentExecution]:
        if getattr(self, "swagger_fake_view", False):
            return AgentExecution.objects.none()
        return selectors.executions_of(authenticated_user(self.request))

    @extend_schema(responses=ApprovalDecisionSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filter_backends=[])
    def approvals(self, request: Request, pk: str | None = None) -> Response:
        """Every decision on the turn's tool calls that waited for approval:
        who decided, how, and with which arguments (expired ones included)."""
        # The stubs tie paginate_queryset to the viewset's own model.
        page = self.paginate_queryset(approvals.decisions_of(self.get_object()))  # type: ignore[arg-type]
        data = ApprovalDecisionSerializer(page, many=True).data
        return self.get_paginated_response(data)


class DownloadRenderer(PassThroughRenderer):
    """Lets a download be asked for with any `Accept`; its errors stay JSON."""

    media_type = "*/*"
    format = "download"


class ArtifactFilter(StrictFilterSet):
    session = django_filters.UUIDFilter(field_name="session_id")

    class Meta:
        model = Artifact
        fields = ["session", "name"]


class ArtifactViewSet(viewsets.ReadOnlyModelViewSet[Artifact]):
    """Your artifacts' metadata, and their bytes at `download/`."""

    serializer_class = ArtifactSerializer
    filterset_class = ArtifactFilter
    search_fields = ["name"]
    ordering_fields = ["created_at", "name", "version", "size"]

    def get_queryset(self) -> QuerySet[Artifact]:
        if getattr(self, "swagger_fake_view", False):
            return Artifact.objects.none()
        return selectors.artifacts_of(authenticated_user(self.request))

    @extend_schema(
        responses={
            # Served as the artifact's own content type, whatever it is.
            (200, "*/*"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The file, as an attachment."
            )
        },
        filters=False,
    )
    @action(
        detail=True,
        methods=["get"],
        filter_backends=[],
        renderer_classes=[JSONRenderer, DownloadRenderer],
    )
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        artifact = self.get_object()
        try:
            handle = artifact.file.open("rb")
        except (FileNotFoundError, ValueError):
            raise ApiError(
                "artifact_file_missing",
                "The file of this artifact is no longer stored.",
                status.HTTP_404_NOT_FOUND,
            ) from None
        response = FileResponse(handle, content_type=artifact.content_type)
        response["Content-Disposition"] = content_disposition(artifact.name)
        response["Content-Length"] = str(artifact.size)
        return response
