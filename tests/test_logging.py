"""Log lines as an operator's shipper reads them: once per 4xx, JSON on request, never a key."""

from __future__ import annotations

import json

import pytest

from tests.servers import manage, server_env

KEY = "ak_live_" + "Lg7" * 13 + "q"  # well-formed, never issued

SCRIPT = f"""
import logging
from django.test import Client
from workspaces.services import create_workspace
from sources.services import create_source

workspace = create_workspace("Logs", "pro")
source, key = create_source(workspace, "Cron", slug="cron")
client = Client(HTTP_HOST="localhost")
unknown = client.post("/api/ingest", data="{{}}", content_type="application/json",
                      HTTP_AUTHORIZATION="Bearer {KEY}")
invalid = client.post("/api/ingest", data="[1]", content_type="application/json",
                      HTTP_AUTHORIZATION="Bearer " + key.secret)
logging.getLogger("ackly.test").warning("a careless line with %s inside", "{KEY}")
try:
    raise ValueError("could not use Bearer {KEY} for {KEY}")
except ValueError:
    logging.getLogger("ackly.test").exception("a careless traceback")
print("ANSWERS", unknown.status_code, unknown["X-Request-Id"], invalid.status_code,
      invalid["X-Request-Id"], workspace.public_id, source.public_id)
"""


def run(tmp_path, **env: str) -> tuple[list[str], list[str]]:
    """Migrate a fresh SQLite file, run SCRIPT there; (the log lines, the ANSWERS fields)."""
    env = server_env(SQLITE_PATH=str(tmp_path / "db.sqlite3"), LOG_LEVEL="INFO", **env)
    for name in ("DATABASE_URL", "REDIS_URL"):  # a SQLite file of its own, whatever the pass
        env.pop(name, None)
    manage(env, "migrate", "--noinput", "-v", "0")
    import subprocess
    import sys

    from tests.servers import ROOT

    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SCRIPT], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answers = [line for line in done.stdout.splitlines() if line.startswith("ANSWERS")][-1]
    return done.stderr.splitlines(), answers.split()[1:]


@pytest.mark.server
def test_each_4xx_is_one_json_line_with_the_request_workspace_and_source_ids(tmp_path):
    lines, (unknown, unknown_id, invalid, invalid_id, org_id, app_id) = run(tmp_path, LOG_FORMAT="json")
    records = [json.loads(line) for line in lines if line.startswith("{")]

    assert (unknown, invalid) == ("401", "400")
    assert len(records) == len(lines)  # nothing but JSON objects
    by_request = {}
    for record in records:
        if record["logger"] == "ackly.test":
            continue
        by_request.setdefault(record["request_id"], []).append(record)
    assert [r["status_code"] for r in by_request[unknown_id]] == [401]  # logged once
    assert [r["status_code"] for r in by_request[invalid_id]] == [400]
    assert by_request[unknown_id][0]["workspace_id"] == "-"  # no key matched: no tenant
    assert by_request[invalid_id][0]["workspace_id"] == org_id
    assert by_request[invalid_id][0]["source_id"] == app_id
    assert {"time", "level", "logger", "message"} <= set(records[0])


@pytest.mark.server
@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_no_line_ever_holds_a_key_not_even_in_a_traceback(tmp_path, log_format):
    lines, _ = run(tmp_path, LOG_FORMAT=log_format)
    text = "\n".join(lines)

    assert "a careless line with [Filtered] inside" in text
    assert "ValueError: could not use [Filtered] for [Filtered]" in (
        text if log_format == "plain"
        else "\n".join(json.loads(line).get("exc_info", "") for line in lines if line.startswith("{"))
    )
    assert KEY not in text and KEY[:16] not in text
    assert sum("Unauthorized: /api/ingest" in line for line in lines) == 1  # once, DEBUG or not
