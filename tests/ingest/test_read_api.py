"""GET /api/v1/events: read keys, the workspace's events newest first, by stable pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.models import Plan
from ingest.models import Event, TimelineEvent
from sources.models import Key
from sources.services import create_source, issue_key, revoke_key
from workspaces.models import Worker

pytestmark = pytest.mark.django_db

PATH = "/api/v1/events"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def read_secret(source) -> str:
    return issue_key(source, scope="read").secret


@pytest.fixture
def worker(workspace):
    return Worker.objects.create(workspace=workspace, display_name="Alex Chen", external_id="u-42")


def make_event(source, age: timedelta = timedelta(0), **fields) -> Event:
    fields.setdefault("status", "success")
    return Event.objects.create(
        workspace=source.workspace, source=source, received_at=timezone.now() - age, **fields
    )


def make_timeline(source, worker, age: timedelta = timedelta(0), **fields) -> TimelineEvent:
    fields.setdefault("event_type", "ticket.resolved")
    fields.setdefault("category", "support")
    at = timezone.now() - age
    return TimelineEvent.objects.create(
        workspace=source.workspace, source=source, worker=worker, timestamp=at, received_at=at,
        request_id="req_test", **fields,
    )


def read_all(api, secret: str, query: str = "", limit: int = 3) -> list[str]:
    """Every page's ids, following nextCursor to the end."""
    ids: list[str] = []
    url = f"{PATH}?limit={limit}{'&' + query if query else ''}"
    for _ in range(100):
        response = api.get(url, headers=bearer(secret))
        assert response.status_code == 200, response.content
        body = response.json()
        ids += [item["id"] for item in body["items"]]
        if body["nextCursor"] is None:
            return ids
        url = f"{PATH}?limit={limit}&cursor={body['nextCursor']}{'&' + query if query else ''}"
    raise AssertionError("the pages never ended")


def test_a_read_key_is_shown_with_its_own_prefix_and_scope(source):
    issued = issue_key(source, scope="read")

    assert issued.secret.startswith("ak_read_") and len(issued.secret) == 48
    assert Key.objects.get(pk=issued.key.pk).scope == "read"


def test_a_read_key_lists_both_kinds_newest_first_as_the_feed_shows_them(
    api, read_secret, source, worker
):
    old = make_event(source, timedelta(minutes=3), status="failure", message="Backup failed")
    middle = make_timeline(source, worker, timedelta(minutes=2))
    new = make_event(source, timedelta(minutes=1), event_type="deploy.finished", duration_ms=40)

    response = api.get(PATH, headers=bearer(read_secret))

    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["items"]] == [new.public_id, middle.public_id, old.public_id]
    assert body["nextCursor"] is None
    first = body["items"][0]
    assert first["kind"] == "event" and first["eventType"] == "deploy.finished"
    assert first["source"] == {"id": source.public_id, "slug": source.slug, "name": source.name}
    assert body["items"][1]["kind"] == "timeline"
    assert response["X-Request-Id"].startswith("req_")
    assert response["RateLimit-Limit"] and response["X-Quota-Limit"] == "5000000"


def test_pages_cover_every_event_once_even_when_many_share_an_instant(
    api, read_secret, source, worker
):
    at = timezone.now() - timedelta(minutes=5)
    expected = set()
    for i in range(4):  # a v1 batch's rows share received_at; so can two events
        expected.add(Event.objects.create(
            workspace=source.workspace, source=source, status="success", received_at=at,
            message=f"same instant {i}",
        ).public_id)
        expected.add(TimelineEvent.objects.create(
            workspace=source.workspace, source=source, worker=worker, event_type="a.b",
            category="support", timestamp=at, received_at=at, request_id="req_x",
        ).public_id)
    expected |= {make_event(source, timedelta(minutes=m)).public_id for m in (1, 2, 9)}

    ids = read_all(api, read_secret, limit=3)

    assert len(ids) == len(expected) == 11
    assert set(ids) == expected


def test_the_cursor_holds_its_place_while_new_events_arrive(api, read_secret, source):
    older = [make_event(source, timedelta(minutes=10 - i), message=f"m{i}") for i in range(6)]
    first = api.get(f"{PATH}?limit=2", headers=bearer(read_secret)).json()
    for _ in range(5):
        make_event(source, message="arrived after the first page")

    rest: list[str] = []
    url = f"{PATH}?limit=2&cursor={first['nextCursor']}"
    while url:
        body = api.get(url, headers=bearer(read_secret)).json()
        rest += [item["id"] for item in body["items"]]
        url = f"{PATH}?limit=2&cursor={body['nextCursor']}" if body["nextCursor"] else ""

    seen = [item["id"] for item in first["items"]] + rest
    assert seen == [e.public_id for e in reversed(older)]


def test_filters_narrow_the_read_as_on_the_live_page(api, read_secret, source, worker, workspace):
    other, _ = create_source(workspace, "Nightly backup")
    failed = make_event(source, timedelta(minutes=1), status="failure", event_type="deploy.started")
    make_event(source, timedelta(minutes=2), status="success", event_type="deploy.finished",
               message="needle in the message")
    make_event(other, timedelta(minutes=3), status="failure", event_type="backup.done")
    timeline = make_timeline(source, worker, timedelta(minutes=4), category="development")
    make_event(source, timedelta(days=3), status="failure")

    def ids(query: str) -> list[str]:
        return read_all(api, read_secret, query=query, limit=500)

    assert ids(f"status=failure&source={source.public_id}")[0] == failed.public_id
    assert len(ids("status=failure")) == 3
    assert len(ids("eventType=deploy.")) == 2
    assert ids("category=development") == [timeline.public_id]
    assert len(ids("q=needle")) == 1
    since = (timezone.now() - timedelta(minutes=2, seconds=30)).isoformat().replace("+", "%2B")
    assert len(ids(f"since={since}")) == 2


@pytest.mark.parametrize(
    "query, named",
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("until=", "until"),
        ("status=", "status"),
        ("status=exploded", "status"),
        ("q=", "q"),
        ("q=ab", "q"),
        ("category=cooking", "category"),
        ("since=yesterday", "since"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=WyIyMDI2LTAxLTAxIiwiYm9ndXMiLCJ4Il0", "cursor"),
    ],
)
def test_bad_parameters_get_invalid_query_naming_them(api, read_secret, query, named):
    response = api.get(f"{PATH}?{query}", headers=bearer(read_secret))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_query"
    assert named in error["message"]
    assert response["RateLimit-Limit"]


def test_an_ingest_key_cannot_read(api, auth_header, secret):
    response = api.get(PATH, headers=bearer(secret))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "wrong_key_scope"


def test_a_read_key_cannot_ingest_on_either_api(api, read_secret, workspace):
    single = api.post("/api/ingest", {"status": "success"}, headers=bearer(read_secret))
    batch = api.post(
        "/api/v1/ingest/events",
        {"events": [{"eventType": "a.b", "category": "support", "actor": {"externalId": "x"}}]},
        headers=bearer(read_secret),
    )

    for response in (single, batch):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "wrong_key_scope"
    assert Event.objects.count() == 0 and TimelineEvent.objects.count() == 0


def test_a_read_key_sees_only_its_own_workspace(api, read_secret, source, other_workspace):
    theirs, _ = create_source(other_workspace, "Globex CRM")
    make_event(theirs, message="Globex's secret")
    mine = make_event(source, message="ours")
    their_read = issue_key(theirs, scope="read").secret

    ours = api.get(PATH, headers=bearer(read_secret)).json()["items"]
    their = api.get(PATH, headers=bearer(their_read)).json()["items"]

    assert [item["id"] for item in ours] == [mine.public_id]
    assert [item["message"] for item in their] == ["Globex's secret"]
    # Another workspace's source named in the filter finds nothing, never their rows.
    crossed = api.get(f"{PATH}?source={theirs.public_id}", headers=bearer(read_secret))
    assert crossed.status_code == 200 and crossed.json()["items"] == []


def test_a_revoked_read_key_is_refused(api, source):
    issued = issue_key(source, scope="read")
    revoke_key(issued.key)

    response = api.get(PATH, headers=bearer(issued.secret))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "key_revoked"


def test_a_plan_without_the_developer_api_cannot_read(api, free_workspace):
    source, _ = create_source(free_workspace, "Cron")
    secret = issue_key(source, scope="read").secret

    response = api.get(PATH, headers=bearer(secret))

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "plan_disabled"


def test_events_past_retention_are_never_read(api, read_secret, source, workspace):
    make_event(source, timedelta(days=workspace.plan.retention_days + 1))
    kept = make_event(source, timedelta(days=1))

    items = api.get(PATH, headers=bearer(read_secret)).json()["items"]

    assert [item["id"] for item in items] == [kept.public_id]


def test_reads_have_a_burst_window_of_their_own(frozen_rate_clock, client, read_secret, source,
                                                workspace, settings):
    # Small limits: a real Redis expires a window's counter in real time, so a long loop
    # would see its counter vanish under the frozen clock.
    Plan.objects.filter(pk=workspace.plan_id).update(burst_per_key=5, burst_per_workspace=8)
    limit = 8 * settings.RATELIMIT_WINDOW_SECONDS
    second = issue_key(source, scope="read").secret
    for i in range(limit):
        assert client.get(PATH, headers=bearer(read_secret if i % 2 else second)).status_code == 200

    refused = client.get(PATH, headers=bearer(read_secret))
    ingest = client.get("/api/v1/ingest/ping", headers=bearer(issue_key(source).secret))

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited" and refused["Retry-After"]
    assert ingest.status_code == 200  # the senders' workspace window was not spent by reading


def test_createkey_issues_a_read_key(source, capsys):
    call_command("createkey", source.public_id, "--scope", "read")

    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert secret.startswith("ak_read_")
    assert Key.objects.get(source=source, prefix=secret[:12]).scope == "read"


def test_rotation_leaves_read_keys_working(client, owner, source):
    read = issue_key(source, scope="read")
    client.force_login(owner)

    client.post(
        f"/w/{source.workspace.public_id}/sources/{source.public_id}/rotate/",
        {"grace_hours": "0", "newest": read.key.public_id},
    )

    read.key.refresh_from_db()
    assert read.key.revoked_at is None and read.key.expires_at is None
    assert Key.objects.filter(source=source, scope="ingest", revoked_at__isnull=True).count() == 1


def test_the_sources_page_issues_a_read_key_and_shows_how_to_use_it(client, owner, source):
    client.force_login(owner)
    base = f"/w/{source.workspace.public_id}/sources/{source.public_id}"
    newest = Key.objects.filter(source=source).order_by("-created_at", "-id").first()

    response = client.post(f"{base}/keys/new/", {"scope": "read", "newest": newest.public_id},
                           follow=True)

    key = Key.objects.filter(source=source, scope="read").get()
    page = response.content.decode()
    assert key.prefix.startswith("ak_read_") and key.prefix in page
    assert "/api/v1/events" in page and "/api/ingest" not in page
