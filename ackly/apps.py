from django.apps import AppConfig


class AcklyConfig(AppConfig):
    name = "ackly"
    verbose_name = "Ackly"

    def ready(self) -> None:
        from ackly import sessions  # noqa: F401 - connects the sign-in stamp (user_logged_in)
