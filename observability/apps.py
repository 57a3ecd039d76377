"""The observability app: sets tracing up as Django starts, in every process
that runs turns (daphne, `manage.py worker`, `manage.py chat`)."""

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"

    def ready(self) -> None:
        from observability.tracing import configure_tracing

        # Before the ASGI handler loads the middleware list, which Django's
        # instrumentation extends.
        configure_tracing()
