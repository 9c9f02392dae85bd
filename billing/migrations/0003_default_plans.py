"""The three default plans of SPEC §1 (editable later in the admin)."""

from django.db import migrations

DEFAULT_PLANS = [
    # code, name, events/month, retention days, sources (None: unlimited), developer API, burst/key, burst/workspace
    ("free", "Free", 10_000, 7, 3, False, 20, 50),
    ("starter", "Starter", 250_000, 30, 25, True, 100, 300),
    ("pro", "Pro", 5_000_000, 90, None, True, 500, 1500),
]


def create_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for code, name, events, retention, sources, developer_api, per_key, per_ws in DEFAULT_PLANS:
        Plan.objects.update_or_create(
            code=code,
            defaults={
                "name": name,
                "monthly_event_limit": events,
                "retention_days": retention,
                "max_sources": sources,
                "developer_api": developer_api,
                "burst_per_key": per_key,
                "burst_per_workspace": per_ws,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]

    operations = [migrations.RunPython(create_plans, migrations.RunPython.noop)]
