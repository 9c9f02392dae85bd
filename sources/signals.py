"""Any change to a key or its source (admin, dashboard, commands) drops its cached look-up."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from sources.keys import forget_keys
from sources.models import Key, Source


@receiver(post_save, sender=Key)
@receiver(post_delete, sender=Key)
def forget_key(sender, instance: Key, **kwargs) -> None:
    forget_keys(instance.digest)


@receiver(post_save, sender=Source)
def forget_keys_of_source(sender, instance: Source, created: bool, **kwargs) -> None:
    if not created:
        forget_keys(*instance.keys.values_list("digest", flat=True))
