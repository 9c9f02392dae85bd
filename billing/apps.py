from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from billing import signals  # noqa: F401
        from billing.plans import ensure_default_plans

        post_migrate.connect(ensure_default_plans, sender=self)
