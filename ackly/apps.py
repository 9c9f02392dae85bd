from django.apps import AppConfig


class AcklyConfig(AppConfig):
    name = "ackly"
    verbose_name = "Ackly"
