"""REST endpoints of prices (`/api/prices/`), budgets (`/api/budgets/`) and
the usage report (`/api/usage/`), DESIGN.md section 11.

Prices are read by every user and written by staff. A user sees and sets
budgets on themself and their own agents; staff on anyone, and global ones.
The usage report covers the caller's own turns; staff may name `?user=`.
"""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, viewsets
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.models import AgentExecution
from usage import reports
from usage.api.serializers import (
    BudgetSerializer,
    ModelPriceSerializer,
    UsageReportSerializer,
)
from usage.models import Budget, ModelPrice


class StaffWritesOnly(permissions.BasePermission):
    message = "Only staff change prices."

    def has_permission(self, request: Request, view: object) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return bool(request.user and request.user.is_staff)


class ModelPriceViewSet(viewsets.ModelViewSet):
    serializer_class = ModelPriceSerializer
    permission_classes = [permissions.IsAuthenticated, StaffWritesOnly]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    queryset = ModelPrice.objects.all()
    ordering_fields = ["model", "created_at"]
    search_fields = ["model"]


class BudgetViewSet(viewsets.ModelViewSet):
    serializer_class = BudgetSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    ordering_fields = ["created_at"]

    def get_queryset(self) -> QuerySet[Budget]:
        if getattr(self, "swagger_fake_view", False):
            return Budget.objects.none()
        user = self.request.user
        budgets = Budget.objects.select_related("user", "agent")
        if user.is_staff:
            return budgets
        return budgets.filter(
            Q(scope=Budget.Scope.USER, user_id=user.pk)
            | Q(scope=Budget.Scope.AGENT, agent__owner_id=user.pk)
        )

    def perform_create(self, serializer: BudgetSerializer) -> None:
        serializer.save(created_by=self.request.user)


class UsageView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("group_by", OpenApiTypes.STR, enum=list(reports.GROUPS)),
            OpenApiParameter("from", OpenApiTypes.DATE),
            OpenApiParameter("to", OpenApiTypes.DATE, description="inclusive"),
            OpenApiParameter("user", OpenApiTypes.UUID, description="staff only"),
        ],
        responses={
            200: UsageReportSerializer,
            403: OpenApiResponse(
                description="`user` names someone else and the caller is not staff."
            ),
        },
    )
    def get(self, request: Request) -> Response:
        """Executions' own usage, grouped (default: by day of the current
        month, UTC)."""
        try:
            query = reports.parse(request.query_params, timezone.now().date())
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        executions = AgentExecution.objects.all()
        wanted = request.query_params.get("user")
        if wanted is not None:
            try:
                wanted_id = uuid.UUID(wanted)
            except ValueError:
                # An empty `user=` too: a present parameter must hold an id.
                raise ValidationError({"user": "Must be a user id."}) from None
            if not request.user.is_staff and wanted_id != request.user.pk:
                raise PermissionDenied("Only staff see other users' usage.")
            executions = executions.filter(user_id=wanted_id)
        elif not request.user.is_staff:
            executions = executions.filter(user_id=request.user.pk)
        return Response(reports.report(executions, query))
