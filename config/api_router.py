"""The one router of the REST API. Trailing slashes are optional (no redirects).

Every resource viewset is registered here; the last pattern answers any other
path under /api/ with the API's JSON 404.
"""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from accounts.api.views import SecretViewSet
from agents.api.views import AgentViewSet, ListingViewSet, ToolViewSet
from core.errors import api_not_found
from sessions_app.api.views import ArtifactViewSet, ExecutionViewSet, SessionViewSet
from usage.api.views import BudgetViewSet, ModelPriceViewSet, UsageView


class OptionalSlashRouter(SimpleRouter):
    """`SimpleRouter` whose routes match with and without the trailing slash
    (its constructor only knows "/" or nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("agents", AgentViewSet, basename="agent")
router.register("tools", ToolViewSet, basename="tool")
router.register("marketplace", ListingViewSet, basename="listing")
router.register("sessions", SessionViewSet, basename="session")
router.register("executions", ExecutionViewSet, basename="execution")
router.register("artifacts", ArtifactViewSet, basename="artifact")
router.register("secrets", SecretViewSet, basename="secret")
router.register("prices", ModelPriceViewSet, basename="price")
router.register("budgets", BudgetViewSet, basename="budget")

urlpatterns = [
    *router.urls,
    re_path(r"^usage/?$", UsageView.as_view(), name="usage"),
    re_path(r"^(?P<unmatched>.*)$", api_not_found),
]
