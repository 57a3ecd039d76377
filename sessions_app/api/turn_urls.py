"""Routes of the endpoints that run turns (trailing slash optional)."""

from django.urls import re_path

from sessions_app.api.turns import (
    AgentRunView,
    ExecutionApproveView,
    SessionCancelView,
    SessionMessagesView,
)

UUID = r"(?P<pk>[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})"

urlpatterns = [
    re_path(
        rf"^sessions/{UUID}/messages/?$",
        SessionMessagesView.as_view(),
        name="session-messages",
    ),
    re_path(
        rf"^sessions/{UUID}/cancel/?$",
        SessionCancelView.as_view(),
        name="session-cancel",
    ),
    re_path(
        rf"^executions/{UUID}/approve/?$",
        ExecutionApproveView.as_view(),
        name="execution-approve",
    ),
    re_path(rf"^agents/{UUID}/run/?$", AgentRunView.as_view(), name="agent-run"),
]
