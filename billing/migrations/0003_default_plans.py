"""The three default plans (billing/plans.py) (editable later in the admin)."""

from django.db import migrations

from billing.plans import DEFAULT_PLANS, plan_defaults


def create_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for row in DEFAULT_PLANS:
        code, defaults = plan_defaults(row)
        Plan.objects.update_or_create(code=code, defaults=defaults)


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]

    operations = [migrations.RunPython(create_plans, migrations.RunPython.noop)]
