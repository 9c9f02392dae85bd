"""The API body limit through the real ASGI application (ackly.asgi: BodyLimitGuard in front of
the fast lane and the pipeline): exactly the documented limit passes, one byte more is 413 in
the envelope, streamed or declared; a Content-Length that declares no one length is 400.

On PostgreSQL with Redis the fast lane serves the accepted requests and hands the refused ones
to the pipeline; on SQLite the pipeline answers them all. Both must answer alike.
"""

from __future__ import annotations

import json

import pytest
from channels.testing import ApplicationCommunicator
from django.conf import settings

from ackly.asgi import application
from ingest.models import Event, Rejection

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = settings.INGEST_MAX_BODY_BYTES
CHUNK = 64 * 1024


def event_of_size(size: int, marker: str) -> bytes:
    """A valid ingest event of exactly `size` bytes (padded with trailing spaces)."""
    body = json.dumps({"status": "success", "message": marker}).encode()
    return body + b" " * (size - len(body))


async def post(secret: str, body: bytes | None, content_length: list[bytes] | None = None,
               path: str = "/api/ingest") -> tuple[int, dict[str, str], bytes]:
    """POST through the ASGI app. `body` None: no body is ever sent (a client still sending it).
    Without `content_length` the body arrives in 64 KiB pieces, as a chunked one does."""
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"authorization", f"Bearer {secret}".encode())]
    headers += [(b"content-length", value) for value in content_length or []]
    communicator = ApplicationCommunicator(application, {
        "type": "http", "http_version": "1.1", "method": "POST", "path": path,
        "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
        "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    })
    if body is not None:
        pieces = [body[i:i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
        for n, piece in enumerate(pieces):
            await communicator.send_input({
                "type": "http.request", "body": piece, "more_body": n < len(pieces) - 1,
            })
    start = await communicator.receive_output(timeout=20)
    assert start["type"] == "http.response.start", start
    content = b""
    while True:
        message = await communicator.receive_output(timeout=20)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(timeout=5)
    found = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], found, content


def error_of(status: int, headers: dict[str, str], content: bytes, expected: int) -> dict:
    assert status == expected, content[:300]
    assert headers["content-type"] == "application/json"
    error = json.loads(content)["error"]
    assert error["requestId"] == headers["x-request-id"]
    return error


@pytest.mark.parametrize("declared", [False, True], ids=["streamed", "content-length"])
async def test_a_body_of_exactly_the_limit_is_stored(secret, declared):
    body = event_of_size(LIMIT, "exactly-the-limit")
    status, _, content = await post(secret, body, [str(LIMIT).encode()] if declared else None)
    assert status == 201, content[:300]
    assert await Event.objects.filter(message="exactly-the-limit").acount() == 1


async def test_one_byte_over_the_limit_streamed_is_413_in_the_envelope(secret):
    status, headers, content = await post(secret, event_of_size(LIMIT + 1, "one-over"))
    error = error_of(status, headers, content, 413)
    assert (error["code"], error["message"]) == (
        "payload_too_large", "The request body is larger than 1 MB."
    )
    assert not await Event.objects.aexists()
    assert await Rejection.objects.filter(code="payload_too_large").aexists()


@pytest.mark.parametrize("length", [LIMIT + 1, 10**30], ids=["one-over", "thirty-one-digits"])
@pytest.mark.parametrize(("path", "code"), [("/api/ingest", "payload_too_large"),
                                            ("/api/v1/ingest/events", "batch_too_large")])
async def test_a_declared_length_over_the_limit_is_413_before_the_body(
    secret, path, code, length
):
    status, headers, content = await post(secret, None, [str(length).encode()], path=path)
    error = error_of(status, headers, content, 413)
    assert (error["code"], error["message"]) == (code, "The request body is larger than 1 MB.")


@pytest.mark.parametrize("lengths", [["N", "N"], ["N, N"], ["N", "0N"]],
                         ids=["twice", "a-list", "leading-zero"])
async def test_content_lengths_of_one_number_declare_that_length(secret, lengths):
    body = event_of_size(200, f"repeated-{len(lengths)}")
    values = [v.replace("N", str(len(body))).encode() for v in lengths]
    status, headers, content = await post(secret, body, values)
    assert status == 201, content[:300]
    assert "connection" not in headers
    assert await Event.objects.filter(message=f"repeated-{len(lengths)}").acount() == 1


@pytest.mark.parametrize(("lengths", "message"), [
    (["200", "205"], "The request has several Content-Length values that differ."),
    (["200, 205"], "The request has several Content-Length values that differ."),
    (["5", str(LIMIT + 1)], "The request has several Content-Length values that differ."),
    (["200", "abc"], "The Content-Length header is not a number."),
    (["+200"], "The Content-Length header is not a number."),
], ids=["two-headers", "a-list", "small-then-too-large", "not-a-number", "signed"])
async def test_content_lengths_that_declare_no_one_length_are_400_and_close(
    secret, lengths, message
):
    # No body is sent: the app must not wait for one whose end it cannot know.
    status, headers, content = await post(secret, None, [v.encode() for v in lengths])
    error = error_of(status, headers, content, 400)
    assert (error["code"], error["message"]) == ("invalid_body", message)
    assert headers["connection"] == "close"
    assert not await Event.objects.aexists()
