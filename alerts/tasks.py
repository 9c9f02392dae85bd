"""The delivery queue's one task (django-tasks; the worker runs it from django-tasks-db's table)."""

from __future__ import annotations

from django_tasks import task

from alerts.delivery import attempt_delivery


@task(queue_name="alerts")
def deliver(delivery_id: int) -> str:
    """One attempt of one delivery; a retry is queued as a new task with a later run_after."""
    return attempt_delivery(delivery_id)
