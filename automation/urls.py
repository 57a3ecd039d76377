"""Routes of background runs, schedules, deliveries and the webhook secret
(trailing slash optional); included under /api/ before the main router."""

from django.urls import re_path

from automation.api.views import (
    AgentRunsView,
    ExecutionDeliveriesView,
    ScheduleViewSet,
    WebhookSecretRotateView,
)
from config.api_router import OptionalSlashRouter

UUID = r"(?P<pk>[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})"

router = OptionalSlashRouter()
router.register("schedules", ScheduleViewSet, basename="schedule")

urlpatterns = [
    re_path(rf"^agents/{UUID}/runs/?$", AgentRunsView.as_view(), name="agent-runs"),
    re_path(
        rf"^executions/{UUID}/deliveries/?$",
        ExecutionDeliveriesView.as_view(),
        name="execution-deliveries",
    ),
    re_path(
        r"^auth/webhook-secret/rotate/?$",
        WebhookSecretRotateView.as_view(),
        name="webhook-secret-rotate",
    ),
    *router.urls,
]
