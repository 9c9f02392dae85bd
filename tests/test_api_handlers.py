"""API paths run through their own lean middleware chain in both entry points (ackly/handlers.py).

The test client always uses the full chain, so these call the real WSGI and ASGI
applications, as the servers do.
"""

from __future__ import annotations

import io
import json

import pytest
from channels.testing import HttpCommunicator

from ackly.asgi import application as asgi_application
from ackly.wsgi import application as wsgi_application

pytestmark = pytest.mark.django_db(transaction=True)

BAD_KEY = b"Bearer ak_live_" + b"0" * 40


def wsgi(method: str, path: str, body: bytes = b"", chunked: bool = False, **headers: str):
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1",
        "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": "application/json",
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    }
    if chunked:  # as gunicorn hands it over: de-chunked input, no Content-Length
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    else:
        environ["CONTENT_LENGTH"] = str(len(body))
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started["status"] = int(status.split()[0])
        started["headers"] = response_headers

    content = b"".join(wsgi_application(environ, start_response))
    return started["status"], started["headers"], content


def names(headers) -> set[str]:
    return {name.lower() for name, _ in headers}


def test_wsgi_api_paths_answer_through_the_lean_chain():
    status, headers, body = wsgi("POST", "/api/ingest", b"{}", authorization=BAD_KEY.decode())
    assert status == 401
    assert json.loads(body)["error"]["code"] == "invalid_key"
    found = dict((k.lower(), v) for k, v in headers)
    assert found["x-request-id"].startswith("req_")
    assert found["x-content-type-options"] == "nosniff"
    assert found["x-frame-options"] == "DENY"
    assert found["content-length"] == str(len(body))  # not chunked
    # No session, CSRF or auth middleware ran: nothing about cookies.
    assert "set-cookie" not in found
    assert "Cookie" not in found.get("vary", "")


def test_no_dashboard_middleware_runs_on_an_api_path(settings):
    settings.ROOT_URLCONF = "tests.ingest.raising_urls"
    _, _, api = wsgi("GET", "/api/middleware-seen")
    _, _, dashboard = wsgi("GET", "/middleware-seen")
    assert json.loads(api) == {"session": False, "user": False}
    assert json.loads(dashboard) == {"session": True, "user": True}


def test_a_chunked_body_under_wsgi_is_read_and_capped(source_and_key, secret):
    """WSGI servers de-chunk into wsgi.input with no Content-Length, where Django reads nothing."""
    auth = f"Bearer {secret}"
    status, _, body = wsgi("POST", "/api/ingest", b'{"status": "success"}', chunked=True,
                           authorization=auth)
    assert status == 201, body
    big = b'{"status": "success", "message": "' + b"x" * (1024 * 1024) + b'"}'
    status, _, body = wsgi("POST", "/api/ingest", big, chunked=True, authorization=auth)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_wsgi_dashboard_paths_keep_the_full_chain():
    status, headers, _ = wsgi("GET", "/login/")
    assert status == 200
    assert "set-cookie" in names(headers)  # the CSRF cookie of the login form


def test_an_exception_in_an_api_view_is_the_json_envelope_through_the_lean_chain(settings):
    settings.ROOT_URLCONF = "tests.ingest.raising_urls"
    settings.DEBUG = True  # Django would answer its HTML debug page without the envelope
    status, _, body = wsgi("GET", "/api/boom")
    assert status == 500
    error = json.loads(body)["error"]
    assert error["code"] == "internal_error"
    assert "secret internal detail" not in body.decode()


async def test_asgi_api_paths_answer_through_the_lean_chain():
    communicator = HttpCommunicator(
        asgi_application, "POST", "/api/ingest", body=b"{}",
        headers=[(b"authorization", BAD_KEY), (b"host", b"127.0.0.1"),
                 (b"content-type", b"application/json")],
    )
    response = await communicator.get_response(timeout=10)
    assert response["status"] == 401
    assert json.loads(response["body"])["error"]["code"] == "invalid_key"
    found = {k.decode().lower(): v.decode() for k, v in response["headers"]}
    assert found["x-request-id"].startswith("req_")
    assert found["x-content-type-options"] == "nosniff"
    assert found["content-length"] == str(len(response["body"]))  # not chunked
    assert "set-cookie" not in found
