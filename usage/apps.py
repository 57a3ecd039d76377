from django.apps import AppConfig


class UsageConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "usage"
    verbose_name = "Usage, cost and budgets"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from usage.models import ModelPrice
        from usage.pricing import prices_changed

        for name, signal in (("saved", post_save), ("deleted", post_delete)):
            signal.connect(
                prices_changed, sender=ModelPrice, dispatch_uid=f"usage.prices.{name}"
            )
