"""The evaluation pass and deliveries, in this process, against a real HTTP receiver on 127.0.0.1.

The delivery queue is django-tasks-db's (the settings' default), worked here with its own
`db_worker --batch`; tests/alerts/test_worker.py runs the real `manage.py worker` processes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from alerts.engine import run_pass
from alerts.models import Alert, Attempt, Delivery, DeliveryState, Purpose, Rule, RuleState
from alerts.services import create_channel, create_rule, send_test
from billing.models import Usage
from billing.services import get_workspace_limits
from ingest.models import RejectedRequest
from tests.alerts.conftest import deliver_queued
from tests.alerts.receiver import Receiver, self_signed

pytestmark = pytest.mark.django_db(transaction=True)


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, as docs/alerts.md shows it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp, signature = int(fields["t"]), fields["v1"]
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def settle(until, timeout: float = 20) -> None:
    """Work the queue (retries become due over time) until `until()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliver_queued()
        if until():
            return
        time.sleep(0.2)
    raise AssertionError("the deliveries did not settle")


def test_a_failure_fires_once_and_a_success_resolves_with_signed_webhooks(
    workspace, source, webhook, receiver, make_event
):
    rule = create_rule(workspace, kind="failure", channels=[webhook], source=source)
    failing = make_event("failure", message="CRM sync failed", event_type="sync.run")
    result = run_pass()
    assert len(result.fired) == 1
    make_event("failure", message="again")  # still firing: no second notification
    run_pass()
    deliver_queued()
    fired = receiver.wait_for(1)[0]
    assert fired.headers["Ackly-Delivery"].startswith("dlv_")
    assert verify(webhook.signing_secret, fired.headers["Ackly-Signature"], fired.body)
    assert not verify("whsec_wrong", fired.headers["Ackly-Signature"], fired.body)
    body = fired.json()
    assert body["type"] == "alert.fired" and body["alert"]["state"] == "firing"
    assert body["rule"] == {"id": rule.public_id, "name": rule.name, "kind": "failure"}
    assert body["workspace"]["id"] == workspace.public_id
    assert body["source"]["id"] == source.public_id
    assert [e["id"] for e in body["events"]][0] == failing.public_id
    assert body["url"].endswith(f"/w/{workspace.public_id}/alerts/{body['alert']['id']}/")

    make_event("success")
    assert len(run_pass().resolved) == 1
    deliver_queued()
    requests = receiver.wait_for(2)
    assert len(requests) == 2 and requests[1].json()["type"] == "alert.resolved"
    alert = Alert.objects.get()
    assert alert.resolved_at is not None and len(alert.events) == 2
    rule.refresh_from_db()
    assert rule.state == RuleState.OK
    assert Delivery.objects.filter(state=DeliveryState.DELIVERED).count() == 2


def test_partial_fires_only_when_the_rule_says_so(workspace, webhook, make_event):
    strict = create_rule(workspace, kind="failure", channels=[webhook], name="strict")
    loose = create_rule(workspace, kind="failure", channels=[webhook], include_partial=True)
    make_event("partial")
    run_pass()
    assert list(Alert.objects.values_list("rule", flat=True)) == [loose.pk]
    assert Rule.objects.get(pk=strict.pk).state == RuleState.OK


def test_event_type_narrowing_matches_exactly_or_by_prefix(workspace, webhook, make_event):
    exact = create_rule(workspace, kind="failure", event_type="sync.run")
    prefix = create_rule(workspace, kind="failure", event_type="sync.")
    make_event("failure", event_type="sync.push")
    run_pass()
    assert set(Alert.objects.values_list("rule", flat=True)) == {prefix.pk}
    make_event("failure", event_type="sync.run")
    run_pass()
    assert set(Alert.objects.values_list("rule", flat=True)) == {prefix.pk, exact.pk}


def test_an_event_committed_late_inside_the_look_back_is_still_evaluated(
    workspace, webhook, make_event
):
    rule = create_rule(workspace, kind="failure", channels=[webhook])
    Rule.objects.filter(pk=rule.pk).update(created_at=timezone.now() - timedelta(hours=1))
    run_pass()  # the scan mark is now
    make_event("failure", ago=20)  # received 20 s ago, visible only now
    assert len(run_pass().fired) == 1


def test_events_stored_while_no_worker_ran_are_evaluated_on_restart(workspace, make_event):
    rule = create_rule(workspace, kind="failure")
    Rule.objects.filter(pk=rule.pk).update(created_at=timezone.now() - timedelta(hours=2))
    run_pass()
    from alerts.models import EngineState

    EngineState.objects.update(scanned_until=timezone.now() - timedelta(hours=1))
    make_event("failure", ago=1800)
    assert len(run_pass().fired) == 1


def test_re_scanning_the_same_events_changes_nothing(workspace, webhook, make_event):
    rule = create_rule(workspace, kind="failure", channels=[webhook])
    Rule.objects.filter(pk=rule.pk).update(created_at=timezone.now() - timedelta(hours=1))
    make_event("failure", ago=2)
    make_event("success", ago=1)
    first = run_pass()
    assert (len(first.fired), len(first.resolved)) == (1, 1)
    again = run_pass()
    assert (again.fired, again.resolved, again.notified) == ([], [], 0)
    assert Delivery.objects.count() == 2


def test_retries_on_5xx_reuse_the_delivery_id_until_accepted(workspace, make_event):
    with Receiver([(500, 0), (503, 0)]) as receiver:
        channel, _ = create_channel(workspace, kind="webhook", target=receiver.url)
        create_rule(workspace, kind="failure", channels=[channel])
        make_event("failure")
        run_pass()
        settle(lambda: Delivery.objects.filter(state=DeliveryState.DELIVERED).exists())
        requests = receiver.wait_for(3)
    assert len(requests) == 3
    assert len({r.headers["Ackly-Delivery"] for r in requests}) == 1
    delivery = Delivery.objects.get()
    assert delivery.attempts == 3 and delivery.delivered_at is not None
    assert list(Attempt.objects.values_list("status_code", flat=True)) == [500, 503, 200]
    assert all(a.error == "" for a in Attempt.objects.filter(status_code=200))


def test_a_4xx_other_than_429_is_not_retried(workspace, make_event):
    with Receiver([(404, 0)]) as receiver:
        channel, _ = create_channel(workspace, kind="webhook", target=receiver.url)
        create_rule(workspace, kind="failure", channels=[channel])
        make_event("failure")
        run_pass()
        deliver_queued()
        time.sleep(1.5)
        deliver_queued()
        assert len(receiver.requests) == 1
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.FAILED and delivery.attempts == 1
    assert Attempt.objects.get().error == "HTTP 404"


def test_a_429_is_retried(workspace, make_event):
    with Receiver([(429, 0)]) as receiver:
        channel, _ = create_channel(workspace, kind="webhook", target=receiver.url)
        create_rule(workspace, kind="failure", channels=[channel])
        make_event("failure")
        run_pass()
        settle(lambda: Delivery.objects.filter(state=DeliveryState.DELIVERED).exists())
        assert len(receiver.requests) == 2


def test_an_internal_address_is_refused_again_at_send_time(
    workspace, webhook, receiver, make_event, settings
):
    create_rule(workspace, kind="failure", channels=[webhook])
    make_event("failure")
    run_pass()
    settings.WEBHOOK_ALLOW_PRIVATE = False  # e.g. the name now resolves somewhere internal
    deliver_queued()
    assert receiver.requests == []
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.FAILED
    assert "loopback" in Attempt.objects.get().error


@pytest.mark.parametrize("kind", ["webhook", "slack"])
def test_a_channel_stored_with_plain_http_is_refused_at_send_time_without_retries(
    workspace, receiver, settings, kind
):
    channel, _ = create_channel(workspace, kind=kind, target=receiver.url)  # allowed then
    settings.WEBHOOK_ALLOW_HTTP = False  # as in production
    delivery = send_test(channel)
    deliver_queued()
    time.sleep(1.5)  # past the first retry's earliest time: nothing is retried
    deliver_queued()
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 1)
    assert Attempt.objects.get().error == "refused: http:// URL; the channel needs an https:// URL"


def test_a_network_error_is_retried_and_logged(workspace, make_event):
    with Receiver() as closed:
        url = closed.url
    channel, _ = create_channel(workspace, kind="webhook", target=url)  # nobody listens now
    create_rule(workspace, kind="failure", channels=[channel])
    make_event("failure")
    run_pass()
    deliver_queued()
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.PENDING and delivery.next_attempt_at > timezone.now()
    attempt = Attempt.objects.get()
    assert attempt.status_code is None and attempt.error.startswith("network:")


def test_a_silence_rule_fires_after_its_deadline_and_resolves_on_the_next_event(
    workspace, source, webhook, receiver, make_event
):
    rule = create_rule(workspace, kind="silence", channels=[webhook], source=source,
                       every_minutes=5, grace_minutes=1)
    assert run_pass().fired == []
    Rule.objects.filter(pk=rule.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    fired = run_pass().fired
    assert len(fired) == 1
    assert "every 5 minutes plus 1 minutes' grace" in Alert.objects.get().reason
    assert run_pass().fired == []
    event = make_event("success")
    assert len(run_pass().resolved) == 1
    rule.refresh_from_db()
    assert rule.state == RuleState.OK
    assert rule.deadline == event.received_at + timedelta(minutes=6)
    deliver_queued()
    assert [r.json()["type"] for r in receiver.wait_for(2)] == ["alert.fired", "alert.resolved"]


def test_a_silence_missed_while_no_pass_ran_is_still_told(workspace, webhook, make_event):
    rule = create_rule(workspace, kind="silence", channels=[webhook], every_minutes=1)
    Rule.objects.filter(pk=rule.pk).update(deadline=timezone.now() - timedelta(seconds=30),
                                           created_at=timezone.now() - timedelta(minutes=2))
    make_event("success", ago=10)  # arrived after the deadline, before any pass
    result = run_pass()
    assert (len(result.fired), len(result.resolved)) == (1, 1)


def test_a_v1_category_narrows_a_silence_rule(workspace, webhook, make_event, make_timeline):
    rule = create_rule(workspace, kind="silence", channels=[webhook], every_minutes=5,
                       category="support")
    Rule.objects.filter(pk=rule.pk).update(deadline=timezone.now() + timedelta(seconds=1))
    make_event("success")  # an ingest event has no category: it does not count
    make_timeline(category="sales")
    run_pass()
    rule.refresh_from_db()
    assert rule.seen_until is None
    make_timeline(category="support")
    run_pass()
    rule.refresh_from_db()
    assert rule.deadline > timezone.now() + timedelta(minutes=4)


def test_slow_rules_fire_on_either_api_and_resolve_within_the_threshold(
    workspace, webhook, make_event, make_timeline
):
    ingest_rule = create_rule(workspace, kind="slow", channels=[webhook], threshold=1500,
                              event_type="sync.run")
    v1_rule = create_rule(workspace, kind="slow", channels=[webhook], threshold=60_000,
                          category="support")
    make_event("success", event_type="sync.run", duration_ms=900)
    make_event("success", event_type="sync.run", duration_ms=2500)
    make_timeline(category="support", duration=90)
    fired = run_pass().fired
    assert len(fired) == 2
    alert = Alert.objects.get(rule=ingest_rule)
    assert "2500 ms (threshold 1500 ms)" in alert.reason and alert.events[0]["durationMs"] == 2500
    make_event("success", event_type="sync.run", duration_ms=1000)
    make_timeline(category="support", duration=30)
    assert len(run_pass().resolved) == 2
    assert Rule.objects.get(pk=v1_rule.pk).state == RuleState.OK


def test_rejections_fire_at_n_in_the_window_and_resolve_when_fewer(
    workspace, source, webhook, receiver
):
    rule = create_rule(workspace, kind="rejections", channels=[webhook], source=source,
                       threshold=3, window_minutes=5, code="invalid_event")
    for code in ("invalid_event", "invalid_event", "quota_exceeded"):
        RejectedRequest.objects.create(workspace=workspace, source=source, code=code,
                                       message="bad", request_id="req_1")
    assert run_pass().fired == []
    RejectedRequest.objects.create(workspace=workspace, source=source, code="invalid_event",
                                   message="missing status", request_id="req_2")
    assert len(run_pass().fired) == 1
    alert = Alert.objects.get()
    assert alert.reason.startswith("3 refused invalid_event requests")
    assert alert.events[0]["message"] == "missing status"
    RejectedRequest.objects.update(at=timezone.now() - timedelta(minutes=6))
    assert len(run_pass().resolved) == 1
    assert Rule.objects.get(pk=rule.pk).state == RuleState.OK


def test_quota_fires_at_80_then_tells_100_then_resolves_in_the_next_period(
    workspace, webhook, receiver
):
    create_rule(workspace, kind="quota", channels=[webhook])
    limits = get_workspace_limits(workspace.pk)
    start, end = limits.period()
    usage = Usage.objects.create(workspace=workspace, period_start=start, period_end=end,
                                 events=limits.monthly_event_limit * 79 // 100)
    assert run_pass().fired == []
    Usage.objects.filter(pk=usage.pk).update(events=limits.monthly_event_limit * 85 // 100)
    assert len(run_pass().fired) == 1
    assert run_pass().notified == 0
    Usage.objects.filter(pk=usage.pk).update(events=limits.monthly_event_limit)
    assert run_pass().notified == 1
    alert = Alert.objects.get()
    assert alert.level == 100
    assert list(Delivery.objects.order_by("sequence").values_list("purpose", "sequence")) == [
        (Purpose.FIRED, 0), (Purpose.FIRED, 1)]
    Alert.objects.update(opened_at=start - timedelta(days=1))  # as if it fired last period
    assert len(run_pass().resolved) == 1


def test_a_reminder_goes_out_each_interval_while_firing_and_never_twice(
    workspace, webhook, make_event
):
    create_rule(workspace, kind="failure", channels=[webhook], reminder_minutes=30)
    make_event("failure")
    run_pass()
    assert run_pass().notified == 0
    Alert.objects.update(opened_at=timezone.now() - timedelta(minutes=31))
    assert run_pass().notified == 1
    assert run_pass().notified == 0
    Alert.objects.update(opened_at=timezone.now() - timedelta(minutes=61))
    assert run_pass().notified == 1
    assert list(Delivery.objects.filter(purpose=Purpose.REMINDER).order_by("sequence")
                .values_list("sequence", flat=True)) == [1, 2]


def test_firing_and_resolving_are_broadcast_to_the_workspace(workspace, make_event, monkeypatch):
    frames = []
    monkeypatch.setattr("alerts.engine.broadcast_on_commit",
                        lambda org, frame: frames.append((org, frame)))
    rule = create_rule(workspace, kind="failure")
    make_event("failure", message="boom")
    run_pass()
    make_event("success")
    run_pass()
    assert [f[0] for f in frames] == [workspace.public_id] * 2
    fired, resolved = (f[1] for f in frames)
    assert fired["type"] == "alert" and fired["alert"]["state"] == "firing"
    assert fired["alert"]["rule"] == rule.name and "boom" in fired["alert"]["reason"]
    assert resolved["alert"]["state"] == "resolved"
    assert resolved["alert"]["url"].endswith(f"/alerts/{fired['alert']['id']}/")


def test_a_slack_channel_gets_text_and_blocks(workspace, receiver, make_event):
    channel, secret = create_channel(workspace, kind="slack", target=receiver.url)
    assert secret is None
    create_rule(workspace, kind="failure", channels=[channel], name="Nightly sync")
    make_event("failure", message="timeout")
    run_pass()
    deliver_queued()
    body = receiver.wait_for(1)[0].json()
    assert body["text"].startswith("[FIRING] Nightly sync")
    assert body["blocks"][0]["text"]["text"] == "[FIRING] Nightly sync"
    assert "timeout" in body["blocks"][1]["text"]["text"]


def test_an_apprise_json_channel_reaches_a_local_receiver(workspace, receiver, make_event):
    target = receiver.url.replace("http://", "json://")
    channel, _ = create_channel(workspace, kind="apprise", target=target)
    create_rule(workspace, kind="failure", channels=[channel], name="Nightly sync")
    make_event("failure")
    run_pass()
    deliver_queued()
    body = receiver.wait_for(1)[0].json()
    assert body["title"] == "[FIRING] Nightly sync"
    assert Delivery.objects.get().state == DeliveryState.DELIVERED


def test_an_email_channel_sends_through_djangos_backend(workspace, make_event):
    channel, _ = create_channel(workspace, kind="email", target="ops@example.com")
    create_rule(workspace, kind="failure", channels=[channel], name="Nightly sync")
    make_event("failure", message="disk full")
    run_pass()
    deliver_queued()
    assert [m.to for m in mail.outbox] == [["ops@example.com"]]
    assert mail.outbox[0].subject == "[FIRING] Nightly sync" and "disk full" in mail.outbox[0].body


def test_send_test_posts_a_signed_test_body(workspace, webhook, receiver):
    delivery = send_test(webhook)
    deliver_queued()
    request = receiver.wait_for(1)[0]
    assert request.headers["Ackly-Delivery"] == delivery.public_id
    assert request.json()["type"] == "test" and request.json()["alert"] is None
    assert verify(webhook.signing_secret, request.headers["Ackly-Signature"], request.body)


def test_the_sweep_requeues_a_delivery_whose_task_was_lost(workspace, webhook, receiver):
    delivery = send_test(webhook)
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.all().delete()  # the process died between commit and queueing
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=10))
    assert run_pass().requeued == 1
    deliver_queued()
    assert receiver.wait_for(1)[0].headers["Ackly-Delivery"] == delivery.public_id


@pytest.mark.parametrize(("certificate_for", "delivered"), [("localhost", True),
                                                            ("other.example", False)])
def test_https_connects_to_the_checked_address_and_still_verifies_the_host_name(
    workspace, tmp_path, monkeypatch, certificate_for, delivered
):
    context, ca = self_signed(tmp_path, certificate_for)
    monkeypatch.setattr("alerts.delivery.certifi.where", lambda: ca)
    with Receiver(tls=context, host="localhost") as receiver:
        channel, _ = create_channel(workspace, kind="webhook", target=receiver.url)
        delivery = send_test(channel)
        deliver_queued()
        delivery.refresh_from_db()
        assert len(receiver.requests) == (1 if delivered else 0)
    if delivered:
        assert receiver.requests[0].headers["Host"] == receiver.url.split("/")[2]
        assert delivery.state == DeliveryState.DELIVERED
    else:
        assert delivery.state == DeliveryState.PENDING  # a TLS failure is retried
        assert Attempt.objects.get().error.startswith("network:")


def test_a_rule_set_back_to_ok_by_hand_keeps_its_open_alert_and_notifies_no_more(
    workspace, webhook, make_event
):
    rule = create_rule(workspace, kind="failure", channels=[webhook])
    make_event("failure")
    run_pass()
    Rule.objects.filter(pk=rule.pk).update(state=RuleState.OK)
    make_event("failure")
    result = run_pass()
    assert (result.fired, result.notified) == ([], 0)
    assert Alert.objects.count() == 1 and len(Alert.objects.get().events) == 2
    assert Rule.objects.get(pk=rule.pk).state == RuleState.FIRING


def test_a_catch_up_reads_in_bounded_steps_and_misses_no_transition(
    workspace, webhook, make_event, make_timeline, settings
):
    settings.ALERTS_MAX_ROWS_PER_PASS = 3
    rule = create_rule(workspace, kind="failure", channels=[webhook])
    silence = create_rule(workspace, kind="silence", every_minutes=1)
    Rule.objects.filter(pk__in=[rule.pk, silence.pk]).update(
        created_at=timezone.now() - timedelta(hours=1))
    Rule.objects.filter(pk=silence.pk).update(deadline=timezone.now() - timedelta(seconds=140))
    for step, status in enumerate(["failure", "success"] * 4):
        # 8 events 20 s apart, the first 150 s ago: never a minute without one, but a pass that
        # judged the deadline after reading only the first three would see one pass.
        make_event(status, ago=150 - 20 * step)
    passes = [run_pass() for _ in range(8)]
    assert sum(len(p.fired) for p in passes) == 4 and sum(len(p.resolved) for p in passes) == 4
    assert Alert.objects.filter(rule=rule, resolved_at__isnull=False).count() == 4
    assert not Alert.objects.filter(rule=silence).exists()  # no deadline judged mid-catch-up
    assert passes[-1].fired == passes[-1].resolved == []


def test_a_late_failure_is_told_and_resolved_and_a_late_success_changes_nothing(
    workspace, webhook, make_event
):
    rule = create_rule(workspace, kind="failure", channels=[webhook])
    Rule.objects.filter(pk=rule.pk).update(created_at=timezone.now() - timedelta(hours=1))
    make_event("success", ago=5)
    run_pass()
    late = make_event("failure", ago=10, message="committed late")
    result = run_pass()
    assert (len(result.fired), len(result.resolved)) == (1, 1)
    alert = Alert.objects.get()
    assert alert.opened_at == late.received_at and alert.events[0]["id"] == late.public_id
    assert "newer success" in alert.resolution
    assert sorted(Delivery.objects.values_list("purpose", flat=True)) == ["fired", "resolved"]
    make_event("failure", ago=1)  # fires again, in order
    run_pass()
    make_event("success", ago=3)  # older than that failure: it must not resolve the alert
    assert run_pass().resolved == []
    assert Rule.objects.get(pk=rule.pk).state == RuleState.FIRING
