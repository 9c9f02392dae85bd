"""The live page's rows at phone to desktop widths: no cell covers another, nothing hides.

Rows come through the real ingest APIs of a Daphne process (fixtures of test_browser_live.py):
the longest category, a 100-character eventType, a long message and a long source name.
"""

from __future__ import annotations

import re
import secrets

import httpx
import pytest

from tests.dashboard import test_browser_live as e2e
from tests.servers import manage

# The Daphne-process and Chromium fixtures, and the sign-up helper, of the live-page test.
server, browser, sign_up = e2e.server, e2e.browser, e2e.sign_up

pytestmark = [pytest.mark.browser, pytest.mark.server]

WIDTHS = [360, 390, 768, 1280]
LONG_TYPE = "integration.sync." + "very_long_segment." * 4 + "x" * 11
LONG_MESSAGE = "the nightly export finished after retrying the upstream twice " * 3

# For each row: every cell's painted box (its own box joined with its text's, each text cut by
# the elements around it that clip), and any element in it that clips text without a title
# holding the whole text.
MEASURE = """
rows => rows.map(row => {
  const box = r => ({left: r.left, right: r.right, top: r.top, bottom: r.bottom});
  const clips = e => getComputedStyle(e).overflowX !== 'visible';
  const painted = el => {
    let out = box(el.getBoundingClientRect());
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.textContent.trim()) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      let r = box(range.getBoundingClientRect());
      for (let up = node.parentElement; up && el.contains(up); up = up.parentElement) {
        if (!clips(up)) continue;
        const c = up.getBoundingClientRect();
        r = {left: Math.max(r.left, c.left), right: Math.min(r.right, c.right),
             top: Math.max(r.top, c.top), bottom: Math.min(r.bottom, c.bottom)};
      }
      out = {left: Math.min(out.left, r.left), right: Math.max(out.right, r.right),
             top: Math.min(out.top, r.top), bottom: Math.max(out.bottom, r.bottom)};
    }
    return out;
  };
  const cells = [...row.querySelectorAll(
    '.badge, .row-type, .row-message, .row-source, .row-worker, .row-duration, .row-time')];
  return {
    id: row.dataset.id,
    link: box(row.querySelector('.row-link').getBoundingClientRect()),
    cells: cells.filter(el => el.getClientRects().length).map(el => {
      const cut = [el, ...el.querySelectorAll('*')].filter(e => clips(e)
        && (e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1));
      const title = e => ((e.closest('[title]') || {}).title || '').trim();
      return {
        cls: el.className, text: el.textContent.trim(), box: painted(el),
        cutUntitled: cut.filter(e => title(e) !== e.textContent.trim()).map(e => e.className),
      };
    }),
  };
})
"""


def overlap(a: dict, b: dict, slack: float = 0.5) -> bool:
    return (
        min(a["right"], b["right"]) - max(a["left"], b["left"]) > slack
        and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > slack
    )


def problems(rows: list[dict], width: int) -> list[str]:
    found = []
    for row in rows:
        cells, link = row["cells"], row["link"]
        for i, a in enumerate(cells):
            if a["cutUntitled"]:
                found.append(f"{width}px {row['id']}: {a['cutUntitled']} cut without a title")
            if a["box"]["left"] < link["left"] - 0.5 or a["box"]["right"] > link["right"] + 0.5:
                found.append(f"{width}px {row['id']}: {a['cls']} leaves its row")
            for b in cells[i + 1:]:
                if overlap(a["box"], b["box"]):
                    found.append(f"{width}px {row['id']}: {a['cls']} overlaps {b['cls']}")
    return found


def test_no_cell_overlaps_another_at_any_width(server, browser):
    base = server["base"]
    suffix = secrets.token_hex(3)
    page, org_id = sign_up(browser, server, f"lena{suffix}")
    manage(server["env"], "setplan", org_id, "pro")  # the v1 API, for categories
    out = manage(
        server["env"], "createsource", org_id,
        "Customer relationship management platform (EU production)", f"--allow={LONG_TYPE}",
    )
    key = out.strip().splitlines()[-1].strip()
    headers = {"Authorization": f"Bearer {key}"}
    v1 = httpx.post(
        f"{base}/api/v1/ingest/events",
        json={"events": [
            {"eventType": LONG_TYPE, "category": category, "duration": 75,
             "actor": {"externalId": f"agent-{category}", "displayName": "Maximiliana Oyelaran"}}
            for category in ("project_management", "documentation", "communication",
                             "development")
        ]},
        headers=headers, timeout=10,
    )
    assert v1.status_code == 202, v1.text
    legacy = httpx.post(
        f"{base}/api/ingest",
        json={"status": "partial", "eventType": LONG_TYPE, "message": LONG_MESSAGE,
              "externalId": "export-" + "9" * 60, "durationMs": 83_000},
        headers=headers, timeout=10,
    )
    assert legacy.status_code == 201, legacy.text

    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{base}/w/{org_id}/events/")
        page.wait_for_selector("#feed li:nth-child(5)")
        rows = page.eval_on_selector_all("#feed li", MEASURE)
        assert len(rows) >= 5
        assert {c["text"] for r in rows for c in r["cells"]} >= {"project_management", LONG_TYPE}
        found = problems(rows, width)
        assert not found, "\n".join(found)
        # The row the page's script draws is the same markup: one arriving live is held to it too.
        if width == WIDTHS[0]:
            page.wait_for_selector("#conn.pill-live")
            live = httpx.post(
                f"{base}/api/ingest",
                json={"status": "failure", "eventType": LONG_TYPE, "message": LONG_MESSAGE},
                headers=headers, timeout=10,
            )
            assert live.status_code == 201, live.text
            page.wait_for_selector(f'#feed li[data-id="{live.json()["id"]}"]')
            found = problems(page.eval_on_selector_all("#feed li", MEASURE), width)
            assert not found, "\n".join(found)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.context.close()


def test_the_workspace_switcher_opens_and_switches_on_a_phone(server, browser):
    base = server["base"]
    page, first_org = sign_up(browser, server, f"mira{secrets.token_hex(3)}")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/w/{first_org}/events/")

    # No script: the menu is a <details>; "New workspace" is in it.
    page.click(".switcher summary")
    page.click(".switcher-menu >> text=New workspace")
    page.fill("input[name=name]", "Second workspace with a rather long name for a phone")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/w/org_[0-9A-Z]+/sources/$"))
    second_org = re.search(r"/w/(org_[0-9A-Z]+)/", page.url).group(1)
    assert second_org != first_org

    page.click(".switcher summary")
    menu = page.locator(".switcher-menu")
    links = menu.locator("a[data-workspace]")
    assert sorted(links.evaluate_all("els => els.map(e => e.dataset.workspace)")) == sorted(
        [first_org, second_org]
    )
    assert menu.locator('a[aria-current="true"]').get_attribute("data-workspace") == second_org
    box = menu.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    for i in range(links.count()):
        assert links.nth(i).is_visible()

    menu.locator(f'a[data-workspace="{first_org}"]').click()
    page.wait_for_url(f"{base}/w/{first_org}/events/")
    page.goto(f"{base}/w/{second_org}/usage/")
    page.goto(f"{base}/")
    page.wait_for_url(f"{base}/w/{second_org}/events/")  # the last visited
    page.context.close()
