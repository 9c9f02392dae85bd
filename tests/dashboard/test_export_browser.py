"""Export from the live page in headless Chromium against a real Daphne process: the filtered
view downloads as CSV through the page's streaming reader, which reports its progress."""

from __future__ import annotations

import csv
import io
import secrets

import httpx
import pytest

try:  # The Daphne-process and Chromium fixtures live with the live-page browser test.
    from tests.dashboard.test_browser_live import (  # noqa: F401
        browser,
        create_source_in_browser,
        server,
        sign_up,
    )
except ImportError:  # pragma: no cover - only while that module is absent
    server = browser = sign_up = create_source_in_browser = None


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.skipif(sign_up is None, reason="needs tests/dashboard/test_browser_live.py fixtures")
def test_the_filtered_view_exports_as_csv_with_progress_in_the_page(server, browser):
    base = server["base"]
    page, org_id = sign_up(browser, server, f"erin{secrets.token_hex(3)}")
    key = create_source_in_browser(page, base, org_id, "Nightly backup")
    for status, message in [("success", "ok"), ("failure", "disk full"), ("failure", "=1+1")]:
        sent = httpx.post(f"{base}/api/ingest", json={"status": status, "message": message},
                          headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert sent.status_code == 201, sent.text

    page.goto(f"{base}/w/{org_id}/events/?status=failure")
    with page.expect_download() as download:
        page.click("#export a[data-export]:has-text('CSV')")
    page.wait_for_selector("#export-progress:has-text('Exported')")

    text = download.value.path().read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(row["message"] for row in rows) == ["'=1+1", "disk full"]
    assert download.value.suggested_filename.startswith(f"ackly-{org_id}-")
    assert download.value.suggested_filename.endswith(".csv")
