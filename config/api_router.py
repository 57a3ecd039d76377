"""The one router of the REST API. Trailing slashes are optional (no redirects)."""

from rest_framework.routers import SimpleRouter

router = SimpleRouter(trailing_slash="/?")

urlpatterns = router.urls
