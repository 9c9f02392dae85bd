from django.db import models


class Plan(models.Model):
    """Limits a workspace runs under. Editable in the admin; changes apply on the next request."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    monthly_event_limit = models.PositiveBigIntegerField()
    retention_days = models.PositiveIntegerField()
    max_sources = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: unlimited.")
    developer_api = models.BooleanField(default=False)
    burst_per_key = models.PositiveIntegerField(help_text="Requests per second per key.")
    burst_per_workspace = models.PositiveIntegerField(help_text="Requests per second per workspace.")

    class Meta:
        ordering = ["monthly_event_limit"]

    def __str__(self) -> str:
        return self.name


class Usage(models.Model):
    """Accepted events of one workspace in one billing period: the quota counter."""

    workspace = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.CASCADE, related_name="usage_periods"
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    events = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            # reserve_quota finds (and row-locks) the current period's counter through this.
            models.UniqueConstraint(
                fields=["workspace", "period_start"], name="usage_one_row_per_period"
            ),
        ]
        verbose_name_plural = "usage"

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.period_start:%Y-%m-%d}: {self.events}"
