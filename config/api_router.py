"""The one router of the REST API. Trailing slashes are optional (no redirects).

Every resource viewset is registered here; the last pattern answers any other
path under /api/ with the API's JSON 404.
"""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from config.errors import api_not_found

router = SimpleRouter(trailing_slash="/?")

urlpatterns = [
    *router.urls,
    re_path(r"^(?P<unmatched>.*)$", api_not_found),
]
