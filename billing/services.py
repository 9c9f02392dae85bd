"""Plans and the exact monthly quota."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from billing.models import Plan, Usage
from billing.periods import billing_period


class UnknownPlan(ValueError):
    pass


@dataclass(frozen=True)
class WorkspaceLimits:
    """What a request needs to know about its workspace's plan; cached, dropped on change."""

    workspace_id: int
    workspace_public_id: str
    plan_code: str
    monthly_event_limit: int
    developer_api: bool
    burst_per_key: int
    burst_per_workspace: int
    retention_days: int
    billing_anchor: datetime

    def period(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        return billing_period(self.billing_anchor, now or timezone.now())


@dataclass(frozen=True)
class QuotaState:
    limit: int
    used: int
    granted: int
    period_end: datetime

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def _limits_cache_key(workspace_id: int) -> str:
    return f"ws-limits:{workspace_id}"


def get_workspace_limits(workspace_id: int) -> WorkspaceLimits:
    cache = caches["auth"]
    limits = cache.get(_limits_cache_key(workspace_id))
    if limits is None:
        from workspaces.models import Workspace

        workspace = Workspace.objects.select_related("plan").get(pk=workspace_id)
        limits = limits_of(workspace)
        cache.set(_limits_cache_key(workspace_id), limits, settings.AUTH_CACHE_SECONDS)
    return limits


def limits_of(workspace) -> WorkspaceLimits:
    plan = workspace.plan
    return WorkspaceLimits(
        workspace_id=workspace.pk,
        workspace_public_id=workspace.public_id,
        plan_code=plan.code,
        monthly_event_limit=workspace.monthly_event_limit,
        developer_api=plan.developer_api,
        burst_per_key=plan.burst_per_key,
        burst_per_workspace=plan.burst_per_workspace,
        retention_days=plan.retention_days,
        billing_anchor=workspace.billing_anchor,
    )


def forget_workspace_limits(*workspace_ids: int) -> None:
    """Drop cached limits now and again after commit (so no request re-caches the old plan):
    this cache's entries, and the key look-ups, which carry their workspace's limits."""
    from sources.keys import forget_keys
    from sources.models import Key

    keys = [_limits_cache_key(pk) for pk in workspace_ids]
    caches["auth"].delete_many(keys)
    transaction.on_commit(lambda: caches["auth"].delete_many(keys))
    forget_keys(
        *Key.objects.filter(source__workspace_id__in=workspace_ids).values_list("digest", flat=True)
    )


def get_plan(code: str) -> Plan:
    plan = Plan.objects.filter(code=code).first()
    if plan is None:
        known = ", ".join(Plan.objects.values_list("code", flat=True))
        raise UnknownPlan(f"unknown plan {code!r} (known: {known})")
    return plan


@transaction.atomic
def set_plan(workspace, plan_code: str, actor=None):
    """Move the workspace to the plan (effective on its next request); logged when it changes."""
    previous = workspace.plan
    workspace.plan = get_plan(plan_code)
    workspace.save(update_fields=["plan"])
    if workspace.plan.pk != previous.pk:
        record_plan_change(workspace, previous, actor)
    return workspace


def record_plan_change(workspace, previous: Plan, actor=None) -> None:
    """The audit entry of a plan change (the admin's form saves the plan itself)."""
    from workspaces import audit

    details = {"from": previous.code, "to": workspace.plan.code}
    audit.record(workspace, "plan.changed", workspace, actor=actor, details=details)


# The quota statement: every write path reserves with it (`reserve_all` here, the pipeline's
# one-statement insert through `reservation_sql`, the fast lane's group and batch statements
# as a CTE). One row (the new count) when all of the events fit and the period's counter row
# exists, none otherwise; its parameters come from `reservation_params`.
RESERVE_ALL_SQL = (
    f"UPDATE {Usage._meta.db_table} SET events = events + %s "
    "WHERE workspace_id = %s AND period_start = %s AND events + %s <= %s RETURNING events"
)


def reservation_params(limits: WorkspaceLimits, requested: int, period_start: Any) -> list[Any]:
    """RESERVE_ALL_SQL's parameters: `requested` events of the period starting `period_start`
    (a datetime, or the backend's adapted value of one)."""
    return [requested, limits.workspace_id, period_start, requested, limits.monthly_event_limit]


def reservation_sql(
    limits: WorkspaceLimits, requested: int, now: datetime
) -> tuple[str, list, QuotaState]:
    """`reserve_quota`'s fast path as SQL for a larger statement (a CTE): `UPDATE … RETURNING events`.

    It returns one row (the new count) when all `requested` fit and this period's counter
    exists, else none; the QuotaState is the one to report, with `used` still to fill in.
    """
    start, end = limits.period(now)
    quota = QuotaState(limit=limits.monthly_event_limit, used=0, granted=requested, period_end=end)
    return RESERVE_ALL_SQL, reservation_params(limits, requested, start), quota


def reserve_all(
    limits: WorkspaceLimits, requested: int, now: datetime | None = None
) -> QuotaState | None:
    """All `requested` events of this period's quota in one conditional UPDATE, or None when
    they do not all fit or the period has no counter row yet (nothing reserved then).

    Inside the storing transaction, like `reserve_quota`: the counter row stays locked until
    it commits. Run it as late as possible in the transaction to hold that lock briefly.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("reserve_all must run inside transaction.atomic()")
    start, end = limits.period(now)
    limit = limits.monthly_event_limit
    with connection.cursor() as cursor:
        period_start = connection.ops.adapt_datetimefield_value(start)
        cursor.execute(RESERVE_ALL_SQL, reservation_params(limits, requested, period_start))
        row = cursor.fetchone()
    if row is None:
        return None
    return QuotaState(limit=limit, used=row[0], granted=requested, period_end=end)


def reserve_quota(limits: WorkspaceLimits, requested: int, now: datetime | None = None) -> QuotaState:
    """Reserve up to `requested` events of this period's quota; returns how many were granted.

    Must run inside the transaction that stores the events: the counter row stays locked
    until it commits, so concurrent callers never exceed the limit, and a rollback returns
    the reservation. The common case (everything fits) is one conditional UPDATE.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("reserve_quota must run inside transaction.atomic()")
    start, end = limits.period(now)
    limit = limits.monthly_event_limit
    if requested > 0:
        state = reserve_all(limits, requested, now)
        if state is not None:
            return state
    # Not everything fits, or this period has no counter yet: lock the row and grant what fits.
    Usage.objects.bulk_create(
        [Usage(workspace_id=limits.workspace_id, period_start=start, period_end=end)],
        ignore_conflicts=True,
    )
    usage = Usage.objects.select_for_update().get(workspace_id=limits.workspace_id, period_start=start)
    granted = max(0, min(requested, limit - usage.events))
    if granted:
        Usage.objects.filter(pk=usage.pk).update(events=F("events") + granted)
    return QuotaState(limit=limit, used=usage.events + granted, granted=granted, period_end=end)


def quota_state(limits: WorkspaceLimits, now: datetime | None = None) -> QuotaState:
    """This period's usage without reserving anything (headers, dry runs, the usage page)."""
    start, end = limits.period(now)
    used = (
        Usage.objects.filter(workspace_id=limits.workspace_id, period_start=start)
        .values_list("events", flat=True)
        .first()
    )
    return QuotaState(limit=limits.monthly_event_limit, used=used or 0, granted=0, period_end=end)
