"""Contract fuzzing (issue 7 item 3): schemathesis against the served /openapi/v1.yaml.

A real Daphne process (its own SQLite file, or a fresh PostgreSQL database and Redis db 12 on
the second pass) serves the document; the schemathesis CLI reads it from the server, sends
the examples, the coverage phase's boundary and type-breaking values, and bounded random
bodies (valid and invalid) to every operation with a Pro key, and applies every check that
means something for a stateless ingest API (see CHECKS). Any 5xx, undocumented status, body
or header off its schema, invalid data accepted or valid data refused fails the test with
schemathesis's report and a curl line to reproduce.

tests/reliability/contract_fuzz_hooks.py narrows generation where OpenAPI 3.0 cannot state a
rule (timestamps relative to now, metric name lengths). docs/reliability.md says what runs
and how to run a longer fuzz by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ROOT, daphne, manage, own_database, own_redis, server_env

pytestmark = pytest.mark.server

REDIS_DB = 12  # this file's own Redis database (its keys cleared before and after)

# Every check that applies to these operations. Left off: the stateful ones (use_after_free,
# ensure_resource_availability: no resource is created then read back, no OpenAPI links) and
# object_level_authorization (no object id in any path; tenancy is test_security.py's).
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "ignored_auth",
]
# Bodies per operation in the fuzzing phase; examples and coverage enumerate the schema anyway.
MAX_EXAMPLES = int(os.environ.get("CONTRACT_FUZZ_MAX_EXAMPLES", "60"))

# Run in the server's environment: limits the fuzz cannot trip (burst, quota), a Pro source that
# whitelists the documented example's eventType, and a Free one for plan_disabled.
SETUP = """
import json
from billing.models import Plan
from ingest.models import Event
from sources.services import create_source, issue_key
from workspaces.services import create_workspace

Plan.objects.filter(code__in=["pro", "free"]).update(burst_per_key=100000, burst_per_workspace=100000)
pro = create_workspace("Fuzz", "pro", event_limit=100_000_000)
_, pro_key = create_source(pro, "Fuzz", slug="fuzz", allowed_event_types=["ticket.resolved"])
free = create_workspace("Fuzz Free", "free")
_, free_key = create_source(free, "Free", slug="free", allowed_event_types=["ticket.resolved"])
read_key = issue_key(pro_key.key.source, scope="read")
for i in range(30):  # something to read, on more than one page
    Event.objects.create(workspace=pro, source=pro_key.key.source, status="success", message=f"m{i}")
print(json.dumps({"pro": pro_key.secret, "free": free_key.secret, "read": read_key.secret}))
"""

READ_PATH = "/api/v1/events"
CONFIG = Path(__file__).with_name("schemathesis.toml")  # also the docs' run by hand


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    """Daphne on a fresh database (PostgreSQL + Redis db 12 when configured, else SQLite)."""
    env = server_env()
    work = tmp_path_factory.mktemp("fuzz")
    with contextlib.ExitStack() as stack:
        if env.get("REDIS_URL"):
            # Cached key and plan look-ups of an earlier run's workspace ids must not leak in.
            env["REDIS_URL"] = stack.enter_context(own_redis(REDIS_DB))
        env = stack.enter_context(own_database(env, "ackly_fz", tmp_path_factory.mktemp("fuzz-db")))
        keys = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        with daphne(env, work / "daphne.log") as base:
            yield {"base": base, "work": work, "log": work / "daphne.log", **keys}


def schemathesis(server: dict, *args: str) -> subprocess.CompletedProcess:
    """The schemathesis CLI against the served document, with this file's config; its output."""
    return subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
         "run", f"{server['base']}/openapi/v1.yaml", "--workers", "1", "--no-color",
         "--continue-on-failure", "--request-timeout", "30", *args],
        cwd=server["work"], capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _assert_clean(done: subprocess.CompletedProcess, server: dict) -> None:
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "No issues found" in report, report
    log = server["log"].read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log, log[-5000:]


def test_every_operation_honours_the_document_under_examples_coverage_and_fuzzing(server):
    done = schemathesis(
        server,
        "--header", f"Authorization: Bearer {server['pro']}",
        "--exclude-path", READ_PATH,  # an ingest key's every read is 403 wrong_key_scope: below
        "--phases", "examples,coverage,fuzzing",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(MAX_EXAMPLES),
    )
    _assert_clean(done, server)
    assert "4 selected / 5 total" in done.stdout, done.stdout
    # Valid data really reached storage on every operation, not only the refusals (Daphne's
    # access log: `"POST /api/ingest" 201 …`).
    log = server["log"].read_text()
    for method, path, status in (("GET", "/api/v1/ingest/ping", 200), ("POST", "/api/ingest", 201),
                                 ("POST", "/api/v1/ingest/events", 202),
                                 ("POST", "/api/v1/ingest/snapshots", 202)):
        assert re.search(rf'"{method} {re.escape(path)}(\?[^"]*)?" {status} ', log), (path, status)


def test_the_read_api_honours_the_document_with_a_read_key(server):
    done = schemathesis(
        server,
        "--header", f"Authorization: Bearer {server['read']}",
        "--include-path", READ_PATH,
        "--phases", "examples,coverage,fuzzing",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(MAX_EXAMPLES),
    )
    _assert_clean(done, server)
    assert "1 selected / 5 total" in done.stdout, done.stdout
    log = server["log"].read_text()
    assert re.search(rf'"GET {re.escape(READ_PATH)}(\?[^"]*)?" 200 ', log)
    # An ingest key reading gets the documented refusal, never data.
    ingest = httpx.get(f"{server['base']}{READ_PATH}", timeout=30,
                       headers={"Authorization": f"Bearer {server['pro']}"})
    assert ingest.status_code == 403 and ingest.json()["error"]["code"] == "wrong_key_scope"


def test_a_free_plan_key_gets_the_documented_402_plan_disabled_on_v1(server):
    headers = {"Authorization": f"Bearer {server['free']}", "Content-Type": "application/json"}
    for method, path in (("GET", "ping"), ("POST", "events"), ("POST", "snapshots")):
        response = httpx.request(method, f"{server['base']}/api/v1/ingest/{path}", headers=headers,
                                 content=b"{}" if method == "POST" else None, timeout=30)
        assert response.status_code == 402, response.text
        assert response.json()["error"]["code"] == "plan_disabled"
    # Every v1 answer to that key, valid body or not, conforms to the document.
    done = schemathesis(
        server,
        "--header", f"Authorization: Bearer {server['free']}",
        "--include-path-regex", "^/api/v1/",
        "--phases", "fuzzing",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_headers_conformance,response_schema_conformance",
        "--max-examples", "10",
        "--warnings", "off",  # "operations mostly rejected generated data": all 402, as intended
    )
    _assert_clean(done, server)
