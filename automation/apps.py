from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    label = "automation"
    verbose_name = "Background runs, schedules and webhooks"
    default_auto_field = "django.db.models.BigAutoField"
