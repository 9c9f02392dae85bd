"""POST /api/ingest: every field rule and response of docs/api.md, and the headers."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ingest.models import Event, Rejection
from sources.services import issue_key, revoke_key
from tests.executors import DjangoApi

URL = "/api/ingest"
SEED = (
    '{"status": "success", "message": "Nightly backup completed", "eventType": "backup", '
    '"durationMs": 4820, "metadata": { "sizeBytes": 104857600 }}'
)
HEX24 = re.compile(r"[0-9a-f]{24}")

pytestmark = pytest.mark.django_db


def sender(api, auth_header):
    def send(body, path: str = URL, content_type: str = "application/json", **extra):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return api.post(path, data, content_type=content_type, **auth_header, **extra)

    return send


@pytest.fixture
def post(api, auth_header):
    """POST with the source's key, on each executor (the `api` fixture)."""
    return sender(api, auth_header)


@pytest.fixture
def post_in_process(auth_header):
    """POST with the source's key through Django's test client only."""
    return sender(DjangoApi(), auth_header)


def error_of(response, code: str, status: int) -> dict:
    """The envelope's error, after checking status, code and the request id header."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["requestId"] == response["X-Request-Id"]
    assert error["docsUrl"].endswith(f"/docs/errors/{code}/")
    return error


# --- 201 -----------------------------------------------------------------------------------------


def test_it_stores_the_seed_example(post, source):
    response = post(SEED)
    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    event_id = response.json()["id"]
    assert HEX24.fullmatch(event_id)
    event = Event.objects.get(public_id=event_id)
    assert (event.status, event.message, event.event_type) == (
        "success", "Nightly backup completed", "backup",
    )
    assert event.duration_ms == 4820
    assert event.metadata == {"sizeBytes": 104857600}
    assert (event.source_id, event.workspace_id) == (source.pk, source.workspace_id)


def test_ids_are_time_ordered(post):
    ids = [post({"status": "success"}).json()["id"] for _ in range(5)]
    assert ids == sorted(ids)
    assert int(ids[0][:8], 16) == pytest.approx(timezone.now().timestamp(), abs=5)


def test_it_accepts_every_field_at_its_maximum_length(post):
    body = {
        "status": "partial",
        "message": "m" * 1000,
        "description": "d" * 10000,
        "eventType": "e" * 100,
        "externalId": "x" * 255,
        "durationMs": 12.5,
    }
    response = post(body)
    assert response.status_code == 201
    event = Event.objects.get(public_id=response.json()["id"])
    assert (len(event.message), len(event.description)) == (1000, 10000)
    assert (len(event.event_type), len(event.external_id), event.duration_ms) == (100, 255, 12.5)


@pytest.mark.parametrize("status", ["success", "failure", "partial"])
def test_it_accepts_each_status(post, status):
    response = post({"status": status})
    assert response.status_code == 201
    assert Event.objects.get(public_id=response.json()["id"]).status == status


def test_unknown_fields_are_ignored(post):
    response = post({"status": "success", "colour": "blue", "nested": {"a": [1, 2]}})
    assert response.status_code == 201
    assert Event.objects.count() == 1


def test_null_means_absent_for_every_optional_field(post):
    body = {"status": "failure", "message": None, "description": None, "eventType": None,
            "externalId": None, "durationMs": None, "metadata": None}
    response = post(body)
    assert response.status_code == 201
    event = Event.objects.get()
    assert (event.message, event.description, event.event_type, event.external_id) == ("",) * 4
    assert event.duration_ms is None and event.metadata is None


@pytest.mark.parametrize("metadata", [{"a": 1}, [1, "two", None], "text", 42, 1.5, True, False])
def test_metadata_may_be_any_json_value(post, metadata):
    response = post({"status": "success", "metadata": metadata})
    assert response.status_code == 201
    assert Event.objects.get().metadata == metadata


def test_metadata_of_exactly_64_kb_is_accepted_and_one_byte_more_is_not(post):
    filler = "x" * (64 * 1024 - len('{"k":""}'))
    assert post({"status": "success", "metadata": {"k": filler}}).status_code == 201
    too_big = post({"status": "success", "metadata": {"k": filler + "y"}})
    error = error_of(too_big, "invalid_body", 400)
    assert "metadata" in error["message"]
    assert Event.objects.count() == 1


def test_metadata_size_counts_utf8_bytes_of_compact_json(post):
    # 'é' is 2 bytes in UTF-8: 32,768 of them are 64 KB of characters' worth of bytes.
    body = {"status": "success", "metadata": "é" * (32 * 1024)}
    error_of(post(body), "invalid_body", 400)


@pytest.mark.parametrize("duration", [0, 0.0, 4820, 12.75, 1e15])
def test_duration_accepts_integers_and_decimals(post, duration):
    response = post({"status": "success", "durationMs": duration})
    assert response.status_code == 201
    assert Event.objects.get().duration_ms == duration


def test_the_description_field_is_stored(post):
    post({"status": "failure", "description": "Line one\nline two"})
    assert Event.objects.get().description == "Line one\nline two"


def test_the_path_works_with_a_trailing_slash_and_without_a_redirect(post):
    response = post({"status": "success"}, path="/api/ingest/")
    assert response.status_code == 201
    assert Event.objects.count() == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_the_body_is_json_whatever_the_content_type(post, content_type):
    response = post('{"status": "success"}', content_type=content_type)
    assert response.status_code == 201


def test_no_csrf_token_or_session_is_needed(post):
    response = post('{"status": "success"}')  # both clients send no token and no cookie
    assert response.status_code == 201
    assert "Set-Cookie" not in response


# --- 400 invalid_body ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "status is required"),
        ({"status": None}, "status is required"),
        ({"status": "ok"}, "status must be one of"),
        ({"status": "SUCCESS"}, "status must be one of"),
        ({"status": 1}, "status must be one of"),
        ({"status": "success", "message": "m" * 1001}, "message must be at most 1000"),
        ({"status": "success", "message": 5}, "message must be a string"),
        ({"status": "success", "description": "d" * 10001}, "description must be at most 10000"),
        ({"status": "success", "description": ["x"]}, "description must be a string"),
        ({"status": "success", "eventType": "e" * 101}, "eventType must be at most 100"),
        ({"status": "success", "eventType": {"a": 1}}, "eventType must be a string"),
        ({"status": "success", "externalId": "x" * 256}, "externalId must be at most 255"),
        ({"status": "success", "externalId": 123}, "externalId must be a string"),
        ({"status": "success", "durationMs": -1}, "durationMs must be at least 0"),
        ({"status": "success", "durationMs": "5"}, "durationMs must be a number"),
        ({"status": "success", "durationMs": True}, "durationMs must be a number"),
        ({"status": "success", "durationMs": [1]}, "durationMs must be a number"),
    ],
)
def test_it_refuses_a_field_that_breaks_its_rule(post, body, field):
    error = error_of(post(body), "invalid_body", 400)
    assert field in error["message"]
    assert Event.objects.count() == 0


def test_the_message_names_every_offending_field(post):
    body = {"status": "nope", "message": 1, "eventType": "e" * 101, "externalId": [],
            "durationMs": -5, "description": False}
    message = error_of(post(body), "invalid_body", 400)["message"]
    for name in ("status", "message", "eventType", "externalId", "durationMs", "description"):
        assert name in message


@pytest.mark.parametrize(("raw", "needle"), [
    ("1e400", "the number 1e400 is too large for a float"),  # the parser: it would be infinity
    ("-1e400", "the number -1e400 is too large for a float"),
    ("1" + "0" * 400, "durationMs must be a finite number"),  # an exact integer: the validator
])
def test_durations_too_large_for_a_float_are_not_finite(post, raw, needle):
    error = error_of(post('{"status": "success", "durationMs": ' + raw + "}"), "invalid_body", 400)
    assert needle in error["message"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("", "empty"),
        ("not json", "not valid JSON"),
        ('{"status": "success"', "not valid JSON"),
        ('["status", "success"]', "must be a JSON object"),
        ('"success"', "must be a JSON object"),
        ("null", "must be a JSON object"),
        ('{"status": "success", "durationMs": NaN}', "NaN"),
        ('{"status": "success", "durationMs": Infinity}', "Infinity"),
        ('{"status": "success", "durationMs": -Infinity}', "-Infinity"),
        ('{"status": "success", "metadata": {"a": 1, "a": 2}}', "duplicate key 'a'"),
        ('{"status": "success", "status": "failure"}', "duplicate key 'status'"),
        ('{"status": "success", "metadata": "\\ud800"}', "surrogate"),
        ('{"status": "success", "metadata": {"k\\u0000": 1}}', "NUL"),
    ],
)
def test_it_refuses_a_body_that_is_not_strict_json(post, raw, needle):
    error = error_of(post(raw), "invalid_body", 400)
    assert needle in error["message"]
    assert Event.objects.count() == 0


def test_it_refuses_invalid_utf8(post):
    error = error_of(post(b'{"status": "success", "message": "\xff\xfe"}'), "invalid_body", 400)
    assert "UTF-8" in error["message"]


def test_nesting_of_64_levels_is_accepted_and_65_is_not(post):
    def nested(levels: int) -> str:
        # The body object is level 1; metadata adds levels - 1 more.
        inner = "[" * (levels - 1) + "]" * (levels - 1)
        return '{"status": "success", "metadata": ' + inner + "}"

    assert post(nested(64)).status_code == 201
    error = error_of(post(nested(65)), "invalid_body", 400)
    assert "deeper than 64" in error["message"]
    error = error_of(post(nested(100_000)), "invalid_body", 400)
    assert "deeper than 64" in error["message"]


def test_paired_surrogate_escapes_are_fine(post):
    response = post('{"status": "success", "message": "\\ud83d\\ude00"}')
    assert response.status_code == 201
    assert Event.objects.get().message == "\U0001f600"


# --- 401 -----------------------------------------------------------------------------------------


def test_a_missing_header_is_missing_authorization(api, django_assert_num_queries):
    with django_assert_num_queries(0):  # in process; a server counts its own
        response = api.post(URL, SEED, content_type="application/json")
    error_of(response, "missing_authorization", 401)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Basic dXNlcjpwYXNz", "missing_authorization"),
        ("Bearer", "missing_authorization"),
        ("Bearer ", "missing_authorization"),
        ("ak_live_" + "a" * 40, "missing_authorization"),
        ("Bearer ak_live_short", "invalid_key"),
        ("Bearer ak_test_" + "a" * 40, "invalid_key"),
        ("Bearer ak_live_" + "a" * 39 + "!", "invalid_key"),
        ("Bearer ak_live_" + "a" * 41, "invalid_key"),
    ],
)
def test_a_malformed_header_never_reaches_the_database(
    api, django_assert_num_queries, header, code
):
    with django_assert_num_queries(0):
        response = api.post(URL, SEED, content_type="application/json",
                            HTTP_AUTHORIZATION=header)
    error_of(response, code, 401)
    assert "X-Quota-Limit" not in response


def test_an_unknown_key_is_invalid_key_and_is_not_counted(api, source):
    response = api.post(URL, SEED, content_type="application/json",
                        HTTP_AUTHORIZATION="Bearer ak_live_" + "Z" * 40)
    error_of(response, "invalid_key", 401)
    assert Rejection.objects.count() == 0


def test_the_scheme_is_case_insensitive(api, secret):
    response = api.post(URL, SEED, content_type="application/json",
                        HTTP_AUTHORIZATION=f"bearer {secret}")
    assert response.status_code == 201


def test_a_revoked_key_is_refused_on_the_next_request_and_counted(post, source_and_key):
    source, issued = source_and_key
    assert post(SEED).status_code == 201
    revoke_key(issued.key)
    error_of(post(SEED), "key_revoked", 401)
    assert Event.objects.count() == 1
    rejection = Rejection.objects.get()
    assert (rejection.source_id, rejection.code, rejection.count) == (source.pk, "key_revoked", 1)


def test_an_expired_key_is_key_expired(api, source):
    issued = issue_key(source, expires_at=timezone.now() - timedelta(seconds=1))
    response = api.post(URL, SEED, content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    error_of(response, "key_expired", 401)
    assert Rejection.objects.get().code == "key_expired"


def test_a_key_of_another_workspace_stores_in_that_workspace_only(api, other_workspace, source):
    from sources.services import create_source

    _, issued = create_source(other_workspace, "Globex jobs")
    response = api.post(URL, SEED, content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert response.status_code == 201
    assert Event.objects.get().workspace_id == other_workspace.pk
    assert not Event.objects.filter(workspace=source.workspace).exists()


# --- 413 -----------------------------------------------------------------------------------------


def test_a_body_over_1_mb_is_refused_before_parsing(post):
    body = b'{"status": "success", "metadata": "' + b"x" * (1024 * 1024) + b'"}'
    error = error_of(post(body), "payload_too_large", 413)
    assert "1 MB" in error["message"]
    assert Event.objects.count() == 0
    assert Rejection.objects.get().code == "payload_too_large"


# Django's client only: an HTTP client sends the Content-Length of the body it sends.
def test_a_declared_content_length_over_1_mb_is_refused_without_reading(post_in_process):
    # The body is small, the header says otherwise: the header alone decides.
    response = post_in_process('{"status": "success"}', CONTENT_LENGTH=str(1024 * 1024 + 1))
    error_of(response, "payload_too_large", 413)


def test_a_body_of_exactly_1_mb_is_read(post):
    # Exactly the limit is read and parsed (then refused for its metadata size, not its length).
    prefix, suffix = b'{"status": "success", "message": "', b'"}'
    body = prefix + b"x" * (1024 * 1024 - len(prefix) - len(suffix)) + suffix
    assert len(body) == 1024 * 1024
    error = error_of(post(body), "invalid_body", 400)
    assert "message must be at most 1000" in error["message"]


# --- headers of §10 ------------------------------------------------------------------------------


def test_every_response_after_auth_carries_quota_and_rate_headers(
    api, post, workspace, frozen_rate_clock
):
    ok = post(SEED)
    bad = post({"status": "nope"})
    for response in (ok, bad):
        assert response["X-Quota-Limit"] == "5000000"
        assert response["RateLimit-Limit"] == "500"
        assert int(response["RateLimit-Reset"]) >= 1
        assert int(response["X-Quota-Reset"]) > timezone.now().timestamp()
    assert ok["X-Quota-Remaining"] == "4999999"
    assert bad["X-Quota-Remaining"] == "4999999"
    assert int(ok["RateLimit-Remaining"]) == 499
    # The server's clock is not frozen: its second request may open the next 1 s window.
    assert int(bad["RateLimit-Remaining"]) in ({498} if api.executor == "django" else {498, 499})


def test_the_request_id_header_is_on_success_too(post):
    response = post(SEED)
    assert response["X-Request-Id"].startswith("req_")


def test_a_request_id_sent_by_the_client_is_never_taken(post):
    """ackly.requestid.request_id_of: the server makes every id, on either executor."""
    chosen = "req_01M93HK09GJBKK712HXS4JBRPP"
    ok = post(SEED, HTTP_X_REQUEST_ID=chosen)
    bad = post({"status": "nope"}, HTTP_X_REQUEST_ID=chosen)
    assert ok.status_code == 201 and bad.status_code == 400
    ids = {ok["X-Request-Id"], bad["X-Request-Id"], bad.json()["error"]["requestId"]}
    assert chosen not in ids and len(ids) == 2
    assert all(re.fullmatch(r"req_[0-9A-Z]{26}", request_id) for request_id in ids)


# --- dry run -------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["true", "TRUE", "True", "1"])
def test_a_dry_run_answers_201_and_stores_nothing(post, flag, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(SEED, path=f"{URL}?dryRun={flag}")
    assert response.status_code == 201
    assert HEX24.fullmatch(response.json()["id"])
    assert Event.objects.count() == 0
    assert callbacks == []
    assert response["X-Quota-Remaining"] == "5000000"


@pytest.mark.parametrize("flag", ["false", "0", "yes", ""])
def test_other_dry_run_values_store(post, flag):
    assert post(SEED, path=f"{URL}?dryRun={flag}").status_code == 201
    assert Event.objects.count() == 1


def test_a_dry_run_reports_errors_with_the_same_status_and_counts_nothing(post):
    error_of(post({"status": "nope"}, path=f"{URL}?dryRun=true"), "invalid_body", 400)
    assert Rejection.objects.count() == 0


def test_a_dry_run_checks_quota_room(post, workspace):
    workspace.event_limit_override = 1
    workspace.save()
    assert post(SEED).status_code == 201
    error_of(post(SEED, path=f"{URL}?dryRun=true"), "quota_exceeded", 429)
    assert Event.objects.count() == 1
    assert Rejection.objects.count() == 0


def test_a_dry_run_of_a_revoked_key_is_not_counted(post, source_and_key):
    revoke_key(source_and_key[1].key)
    error_of(post(SEED, path=f"{URL}?dryRun=1"), "key_revoked", 401)
    assert Rejection.objects.count() == 0


# --- the hot path --------------------------------------------------------------------------------


# In process: the queries are counted on the suite's own connection.
def test_the_success_path_takes_a_fixed_number_of_queries(
    post_in_process, settings, django_assert_num_queries
):
    post = post_in_process
    assert post(SEED).status_code == 201  # first use: the period's counter row, last_used_at
    # SAVEPOINT, the writes, RELEASE (savepoints: the test's own transaction). The writes are
    # ONE statement on PostgreSQL (quota, event: ingest.services.record_event_at_once), the
    # quota UPDATE…RETURNING and the INSERT elsewhere. Without a shared cache (no REDIS_URL)
    # also the key look-up (one query: the key, its source, workspace and plan).
    writes = 1 if connection.vendor == "postgresql" else 2
    with django_assert_num_queries(2 + writes + (0 if settings.REDIS_URL else 1)):
        assert post(SEED).status_code == 201


# In process: the queries are counted on the suite's own connection.
def test_the_success_path_with_a_shared_auth_cache_skips_the_look_ups(
    post_in_process, shared_auth_cache, django_assert_num_queries
):
    post = post_in_process
    assert post(SEED).status_code == 201
    # SAVEPOINT, the writes (one statement on PostgreSQL, two elsewhere), RELEASE.
    with django_assert_num_queries(3 if connection.vendor == "postgresql" else 4):
        assert post(SEED).status_code == 201


def test_it_records_last_used_at(post, source_and_key):
    post(SEED)
    source_and_key[1].key.refresh_from_db()
    assert source_and_key[1].key.last_used_at is not None
