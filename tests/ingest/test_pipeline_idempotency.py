"""Idempotency-Key (SPEC §5): replay, conflict, expiry, and identical requests at one moment."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ingest.models import Event, IdempotencyRecord
from sources.services import create_source

URL = "/api/ingest"
BODY = '{"status": "success", "message": "deploy 42"}'


def send(client, secret: str, body: str = BODY, key: str | None = "deploy-42", path: str = URL):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(path, body, content_type="application/json", **headers)


@pytest.mark.django_db
class TestSequential:
    def test_the_same_key_and_body_replays_the_first_response_exactly(self, api, secret):
        first = send(api, secret)
        second = send(api, secret)
        assert first.status_code == second.status_code == 201
        assert second.content == first.content
        assert second["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first
        assert second["Content-Type"] == first["Content-Type"]
        assert second["X-Quota-Remaining"] == first["X-Quota-Remaining"]
        assert Event.objects.count() == 1
        assert IdempotencyRecord.objects.get().response_body.encode() == first.content

    def test_a_replay_does_not_use_quota(self, api, secret, workspace):
        workspace.event_limit_override = 1
        workspace.save()
        assert send(api, secret).status_code == 201
        assert send(api, secret).status_code == 201
        assert send(api, secret, key="another").status_code == 429

    def test_the_same_key_with_another_body_is_a_conflict(self, api, secret):
        send(api, secret)
        response = send(api, secret, body='{"status": "failure"}')
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "idempotency_key_reused"
        assert response.json()["error"]["requestId"] == response["X-Request-Id"]
        assert Event.objects.count() == 1

    def test_the_trailing_slash_is_the_same_endpoint(self, api, secret):
        first = send(api, secret)
        second = send(api, secret, path=URL + "/")
        assert second["Idempotent-Replayed"] == "true"
        assert second.content == first.content

    def test_keys_are_scoped_to_the_source(self, api, secret, workspace):
        _, other = create_source(workspace, "Other job")
        a, b = send(api, secret), send(api, other.secret)
        assert a.status_code == b.status_code == 201
        assert a.content != b.content
        assert Event.objects.count() == 2

    def test_a_refused_request_leaves_no_record(self, api, secret):
        assert send(api, secret, body='{"status": "nope"}').status_code == 400
        assert send(api, secret).status_code == 201
        assert IdempotencyRecord.objects.count() == 1

    def test_a_key_longer_than_200_characters_is_invalid_body(self, api, secret):
        assert send(api, secret, key="k" * 200).status_code == 201
        response = send(api, secret, key="k" * 201)
        assert response.status_code == 400
        assert "Idempotency-Key" in response.json()["error"]["message"]
        assert Event.objects.count() == 1

    # In process: the window ends by patching this process's clock.
    def test_a_key_expires_after_ten_minutes(self, client, secret, monkeypatch):
        first = send(client, secret)
        later = timezone.now() + timedelta(minutes=10, seconds=1)
        monkeypatch.setattr("django.utils.timezone.now", lambda: later)
        second = send(client, secret)
        assert second.status_code == 201
        assert "Idempotent-Replayed" not in second
        assert second.content != first.content
        assert Event.objects.count() == 2
        assert IdempotencyRecord.objects.get().created_at == later

    # In process: the window ends by patching this process's clock.
    def test_a_key_is_replayed_until_the_window_ends(self, client, secret, monkeypatch):
        send(client, secret)
        later = timezone.now() + timedelta(minutes=9, seconds=59)
        monkeypatch.setattr("django.utils.timezone.now", lambda: later)
        assert send(client, secret)["Idempotent-Replayed"] == "true"

    def test_a_dry_run_replays_but_records_nothing(self, api, secret):
        dry = send(api, secret, path=URL + "?dryRun=true")
        assert dry.status_code == 201
        assert IdempotencyRecord.objects.count() == 0
        real = send(api, secret)
        assert "Idempotent-Replayed" not in real
        assert send(api, secret, path=URL + "?dryRun=true").content == real.content


def _at_once(n: int, work) -> list:
    """Run `work(i)` on n threads released together; each closes its own DB connection."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _identical_requests_store_one_event(api, secret: str) -> None:
    responses = _at_once(8, lambda i: send(api.for_thread(), secret))
    assert [r.status_code for r in responses] == [201] * 8
    assert len({r.content for r in responses}) == 1
    assert sum(r.has_header("Idempotent-Replayed") for r in responses) == 7
    assert Event.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_identical_requests_at_the_same_moment_store_one_event(api, secret):
    _identical_requests_store_one_event(api, secret)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_identical_requests_at_the_same_moment_store_one_event_on_postgresql(api, secret):
    _identical_requests_store_one_event(api, secret)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_never_exceed_the_quota(api, secret, workspace):
    workspace.event_limit_override = 5
    workspace.save()
    responses = _at_once(10, lambda i: send(api.for_thread(), secret, key=f"k{i}"))
    assert sorted(r.status_code for r in responses) == [201] * 5 + [429] * 5
    assert Event.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_duplicates_racing_for_the_last_of_the_quota_replay_the_winner(api, secret, workspace):
    workspace.event_limit_override = 1
    workspace.save()
    responses = _at_once(6, lambda i: send(api.for_thread(), secret))
    assert [r.status_code for r in responses] == [201] * 6
    assert len({r.content for r in responses}) == 1
    assert Event.objects.count() == 1
