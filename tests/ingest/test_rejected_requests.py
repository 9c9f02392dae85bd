"""Each refused request leaves a bounded trail behind its count: time, code, message, request id."""

from __future__ import annotations

import pytest

from ingest.models import RejectedRequest, Rejection
from sources.services import create_source, revoke_key
from tests.ingest.v1support import post_events, seed_event

URL = "/api/ingest"
GOOD = '{"status": "success", "message": "Nightly backup completed"}'

pytestmark = pytest.mark.django_db


@pytest.fixture
def post(client, auth_header):
    def send(body: str = GOOD, path: str = URL, auth: dict[str, str] | None = None):
        return client.post(path, body, content_type="application/json", **(auth or auth_header))

    return send


def test_a_refused_request_is_kept_with_the_message_and_request_id_the_sender_got(
    post, source, secret
):
    response = post('{"status": "nope"}')

    assert response.status_code == 400
    error = response.json()["error"]
    [row] = RejectedRequest.objects.all()
    assert (row.source_id, row.workspace_id) == (source.pk, source.workspace_id)
    assert (row.code, row.message) == ("invalid_body", error["message"])
    assert row.request_id == error["requestId"] == response["X-Request-Id"]
    assert secret not in row.message
    assert Rejection.objects.get().count == 1


def test_a_partial_v1_batch_keeps_one_row_per_code_with_its_first_events_message(
    client, auth_header, source
):
    events = [seed_event(), seed_event(category="marketing"), seed_event(eventType="x.y"),
              seed_event(duration=True)]
    response = post_events(client, events, auth_header)

    assert response.status_code == 207
    told = {r["index"]: r["message"] for r in response.json()["results"]["rejected"]}
    rows = {r.code: r for r in RejectedRequest.objects.all()}
    assert set(rows) == {"invalid_body", "forbidden_event_type"}
    assert rows["invalid_body"].message == told[1]  # the first of the two invalid events
    assert rows["forbidden_event_type"].message == told[2]
    assert {r.request_id for r in rows.values()} == {response.json()["requestId"]}


def test_a_revoked_key_is_kept_against_its_source_with_the_codes_description(
    post, source_and_key
):
    source, issued = source_and_key
    revoke_key(issued.key)

    assert post().status_code == 401

    [row] = RejectedRequest.objects.all()
    assert (row.source_id, row.code) == (source.pk, "key_revoked")
    assert row.message.startswith("The key was revoked")


def test_unknown_keys_and_dry_runs_leave_nothing(post, source):
    unknown = {"HTTP_AUTHORIZATION": "Bearer ak_live_" + "x" * 40}
    assert post(auth=unknown).status_code == 401
    assert post('{"status": "nope"}', path=URL + "?dryRun=true").status_code == 400
    assert not RejectedRequest.objects.exists()
    assert not Rejection.objects.exists()


def test_a_source_keeps_only_its_newest_refusals_and_others_keep_theirs(
    post, source, workspace, settings
):
    settings.REJECTED_REQUESTS_PER_SOURCE = 3
    _, other = create_source(workspace, "Billing sync")
    other_auth = {"HTTP_AUTHORIZATION": f"Bearer {other.secret}"}
    post('{"status": "other"}', auth=other_auth)
    sent = [post(f'{{"status": "nope-{n}"}}').json()["error"]["requestId"] for n in range(6)]

    kept = RejectedRequest.objects.filter(source=source)
    assert list(kept.values_list("request_id", flat=True)) == sent[:-4:-1]  # newest 3
    assert RejectedRequest.objects.exclude(source=source).count() == 1
    assert Rejection.objects.get(source=source).count == 6  # the count keeps every one


@pytest.mark.parametrize(
    "path, body",
    [
        (URL, '{"status": "nope"}'),
        ("/api/v1/ingest/events", '{"events": [{"eventType": "not.allowed", "category": "support",'
         ' "actor": {"externalId": "x"}}]}'),
    ],
)
def test_both_executors_keep_the_refusal_with_the_answers_request_id(api, source, secret, path, body):
    """The fast lane hands every refusal to the pipeline, so it is kept in the one place."""
    response = api.post(path, body, content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert response.status_code in (400, 403)
    error = response.json()["error"]
    [row] = RejectedRequest.objects.filter(source=source)
    assert row.code == error["code"]
    assert row.request_id == response["X-Request-Id"]
    assert row.message in error["message"]  # an all-rejected batch's names its first event's
