"""The default plans: Free, Starter and Pro (docs/api.md, Limits and plans)."""

from __future__ import annotations

# code, name, events/month, retention days, sources (None: unlimited), developer API,
# burst per key (req/s), burst per workspace (req/s)
DEFAULT_PLANS: list[tuple[str, str, int, int, int | None, bool, int, int]] = [
    ("free", "Free", 10_000, 7, 3, False, 20, 50),
    ("starter", "Starter", 250_000, 30, 25, True, 100, 300),
    ("pro", "Pro", 5_000_000, 90, None, True, 500, 1500),
]


def plan_defaults(row: tuple) -> tuple[str, dict]:
    code, name, events, retention, sources, developer_api, per_key, per_ws = row
    return code, {
        "name": name,
        "monthly_event_limit": events,
        "retention_days": retention,
        "max_sources": sources,
        "developer_api": developer_api,
        "burst_per_key": per_key,
        "burst_per_workspace": per_ws,
    }


def ensure_default_plans(sender=None, using: str = "default", apps=None, **kwargs) -> None:
    """Create any missing default plan; never overwrite one an operator edited.

    Connected to post_migrate, which Django also sends after a test database flush, so the
    plans survive transactional tests the way content types do.
    """
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    try:
        Plan = apps.get_model("billing", "Plan")
    except LookupError:
        return
    for row in DEFAULT_PLANS:
        code, defaults = plan_defaults(row)
        Plan.objects.using(using).get_or_create(code=code, defaults=defaults)
