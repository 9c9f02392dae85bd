"""No event that matches a rule is missed, whatever order the transactions commit in.

A row's `received_at` is set before its transaction commits; a slow transaction can commit
after a newer row was already read. Each case here commits (creates) the older row only after
a pass has applied a newer one, as a late COMMIT would make it visible.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.engine import run_pass
from alerts.models import Alert, Rule
from alerts.services import create_rule

pytestmark = pytest.mark.django_db(transaction=True)


def older_rule(rule: Rule) -> None:
    Rule.objects.filter(pk=rule.pk).update(created_at=timezone.now() - timedelta(hours=1))


def test_a_failure_committed_after_a_newer_success_was_applied_still_fires(workspace, make_event):
    rule = create_rule(workspace, kind="failure")
    older_rule(rule)
    make_event("success", ago=5)
    run_pass()  # the rule has applied an event received 5 s ago

    make_event("failure", ago=10)  # received before it, committed only now

    assert len(run_pass().fired) == 1
    assert Alert.objects.filter(rule=rule).count() == 1


def test_a_late_failure_is_applied_once_however_many_passes_see_it(workspace, make_event):
    rule = create_rule(workspace, kind="failure")
    older_rule(rule)
    make_event("success", ago=5)
    run_pass()
    make_event("failure", ago=10)
    run_pass()

    again = run_pass()

    assert (again.fired, again.resolved) == ([], [])
    assert Alert.objects.filter(rule=rule).count() == 1


def test_a_slow_event_committed_late_still_fires(workspace, make_event):
    rule = create_rule(workspace, kind="slow", threshold=1000)
    older_rule(rule)
    make_event("success", ago=5, duration_ms=10)
    run_pass()

    make_event("success", ago=8, duration_ms=5000)

    assert len(run_pass().fired) == 1
