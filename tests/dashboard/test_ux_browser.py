"""The dashboard in daily use, in headless Chromium at 1280×800 and 390×844 against real Daphne.

Times in the browser's zone (a half-hour zone: Asia/Kolkata), the chart's hours in that zone,
the live page's first row above the fold on a phone, filters applied as you type and kept in
the URL, the drawer's focus, the worker page's reconnect, dark mode and the favicon. The server
serves the tour's demo workspace (tests/dashboard/tour.py), fed over the real APIs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.dashboard.test_browser_live import browser  # noqa: F401  (the shared Chromium)
from tests.dashboard.test_layout_browser import overlap
from tests.dashboard.tour import WIDTHS, Demo, demo_server, signed_in

pytestmark = [pytest.mark.browser, pytest.mark.server]

KOLKATA = ZoneInfo("Asia/Kolkata")
ISO_IN_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d|\d\d:\d\d:\d\d\.\d{3}")
RELATIVE = re.compile(r"^(just now|\d+ s ago|\d+ min ago|\d+ h ago)$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    with demo_server(tmp_path_factory.mktemp("ux")) as demo:
        yield demo


@pytest.fixture(params=list(WIDTHS))
def width(request) -> str:
    return request.param


def open_page(browser, demo: Demo, width: str, **options):
    w, h = WIDTHS[width]
    context = browser.new_context(viewport={"width": w, "height": h},
                                  storage_state=signed_in(browser, demo), **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def send(demo: Demo, slug: str, path: str, body: dict) -> dict:
    answer = httpx.post(demo.base + path, json=body, timeout=10,
                        headers={"Authorization": f"Bearer {demo.keys[slug]}"})
    assert answer.status_code in (201, 202), answer.text
    return answer.json()


TIMES = """() => [...document.querySelectorAll('time')]
  .filter(t => t.getClientRects().length || t.closest('.tl-meta, #drawer'))
  .map(t => ({datetime: t.getAttribute('datetime'), when: t.dataset.when, title: t.title,
              text: t.textContent}))"""


def test_every_time_is_in_the_browsers_zone_with_the_absolute_time_in_its_title(
    demo, browser, width
):
    page = open_page(browser, demo, width, timezone_id="Asia/Kolkata")
    org = demo.org
    paths = [f"/w/{org}/events/", f"/w/{org}/events/{demo.event_ids[0]}/", f"/w/{org}/workers/",
             f"/w/{org}/workers/{demo.worker}/", f"/w/{org}/sources/",
             f"/w/{org}/sources/{demo.sources['crm-hub']}/rotate/", f"/w/{org}/usage/",
             f"/w/{org}/rejections/", f"/w/{org}/members/", f"/w/{org}/audit/"]
    seen = 0
    for path in paths:
        if page.goto(demo.base + path).status == 404 and path.endswith(("/members/", "/audit/")):
            continue  # pages other work adds: held to the convention once they answer
        page.wait_for_load_state("networkidle")
        times = page.evaluate(TIMES)
        assert times, path
        for t in times:
            instant = datetime.fromisoformat(t["datetime"].replace("Z", "+00:00"))
            local = instant.astimezone(KOLKATA)
            # Kolkata's minute differs from UTC's by 30: the title is the browser's zone's time.
            assert "GMT+5:30" in t["title"], (path, t)
            assert f":{local.minute:02d}:{local.second:02d}" in t["title"], (path, t)
            assert "UTC" not in t["text"] and not ISO_IN_TEXT.search(t["text"]), (path, t)
            if t["when"] == "relative" and abs(datetime.now(UTC) - instant) < timedelta(hours=1):
                assert RELATIVE.match(t["text"]), (path, t)
            seen += 1
        text = page.inner_text("main")
        assert not ISO_IN_TEXT.search(text), (path, ISO_IN_TEXT.search(text))
        assert "UTC" not in text, path
    assert seen >= len(paths)

    # The drawer's times, and a row arriving live, follow the same convention.
    page.goto(f"{demo.base}/w/{org}/events/")
    page.wait_for_selector("#conn.pill-live")
    new = send(demo, "nightly-jobs", "/api/ingest", {"status": "success", "eventType": "job.finished"})
    row = page.wait_for_selector(f'#feed li[data-id="{new["id"]}"]')
    assert RELATIVE.match(row.query_selector("time").inner_text())
    assert "GMT+5:30" in row.query_selector("time").get_attribute("title")
    row.click()
    drawer_times = page.eval_on_selector_all("#drawer time", "ts => ts.map(t => t.title)")
    assert drawer_times and all("GMT+5:30" in title for title in drawer_times)
    assert not ISO_IN_TEXT.search(page.inner_text("#drawer-fields"))
    page.context.close()


def test_the_chart_shows_the_browsers_own_hours_in_a_half_hour_zone(demo, browser, width):
    page = open_page(browser, demo, width, timezone_id="Asia/Kolkata")
    page.goto(f"{demo.base}/w/{demo.org}/events/")
    page.wait_for_selector("#chart rect.hit")
    bars = page.eval_on_selector_all(
        "#chart rect.hit", "rs => rs.map(r => [r.dataset.hour, Number(r.dataset.total)])")
    assert len(bars) == 24
    hours = [datetime.fromisoformat(h.replace("Z", "+00:00")) for h, _ in bars]
    # Kolkata's hours start at half past a UTC hour; the last bar is the current local hour.
    assert {h.minute for h in hours} == {30}
    now = datetime.now(KOLKATA)
    assert hours[-1].astimezone(KOLKATA) == now.replace(minute=0, second=0, microsecond=0)
    since = bars[0][0]
    items = page.evaluate(
        "url => fetch(url).then(r => r.json()).then(b => b.items.length)",
        f"/w/{demo.org}/events/feed.json?limit=500&since={since}",
    )
    assert 0 < items < 500
    assert sum(total for _, total in bars) == items  # every event of these 24 hours, once
    labels = page.eval_on_selector_all("#chart text.axis", "ts => ts.map(t => t.textContent)")
    assert [label for label in labels if ":" in label] and all(
        label.endswith(":00") for label in labels if ":" in label)
    page.context.close()


BOXES = """sels => sels.map(s => {
  const e = document.querySelector(s);
  if (!e || !e.getClientRects().length) return null;
  const r = e.getBoundingClientRect();
  return {sel: s, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
})"""


def test_the_first_event_is_above_the_fold_and_the_filters_wait_behind_a_button(
    demo, browser, width
):
    page = open_page(browser, demo, width)
    page.goto(f"{demo.base}/w/{demo.org}/events/")
    page.wait_for_selector("#conn.pill-live")
    height = WIDTHS[width][1]
    first = page.locator("#feed li").first.bounding_box()
    assert first["y"] + first["height"] <= height
    toggle, form = page.locator("#filters-toggle"), page.locator("#filters")
    feed_top = page.locator(".feed-card").bounding_box()["y"]
    if width == "phone":
        assert toggle.is_visible() and not form.is_visible()
        assert page.locator(".chart-card").bounding_box()["y"] > feed_top
        assert page.locator(".rejections-card").bounding_box()["y"] > feed_top
        toggle.click()
        assert form.is_visible() and toggle.get_attribute("aria-expanded") == "true"
        toggle.click()
        assert not form.is_visible()
    else:
        assert form.is_visible() and not toggle.is_visible()
    # Nothing in the head of the page covers anything else, from 360 px up.
    for w in ([360, 390] if width == "phone" else [WIDTHS[width][0]]):
        page.set_viewport_size({"width": w, "height": height})
        boxes = [b for b in page.evaluate(BOXES, [
            "h1", ".live-head p", "#conn", "#filters-toggle", "#pause", ".feed-card",
            ".switcher summary", ".nav-end",
        ]) if b]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not overlap(a, b), (w, a["sel"], b["sel"])
        assert page.evaluate("document.documentElement.scrollWidth") <= w
    page.context.close()


def row_types(page) -> list[str]:
    return page.eval_on_selector_all("#feed .row-type", "es => es.map(e => e.textContent)")


def test_filters_apply_as_you_type_and_a_reload_keeps_them(demo, browser, width):
    page = open_page(browser, demo, width)
    page.goto(f"{demo.base}/w/{demo.org}/events/")
    page.wait_for_selector("#conn.pill-live")
    page.evaluate("window.__sameDocument = true")
    assert {t.split(".")[0] for t in row_types(page)} > {"deploy"}
    if width == "phone":
        page.click("#filters-toggle")
    page.locator("#filters input[name=eventType]").press_sequentially("deploy.", delay=30)

    page.wait_for_function("() => location.search.includes('eventType=deploy.')")
    page.wait_for_function("""() => [...document.querySelectorAll('#feed .row-type')]
        .every(e => e.textContent.startsWith('deploy.'))""")
    assert row_types(page) and all(t.startswith("deploy.") for t in row_types(page))
    assert page.evaluate("window.__sameDocument") is True  # no page load: fetched, not submitted

    # Live rows obey the prefix too.
    other = send(demo, "nightly-jobs", "/api/ingest", {"status": "success", "eventType": "job.finished"})
    shipped = send(demo, "nightly-jobs", "/api/ingest",
                   {"status": "success", "eventType": "deploy.shipped", "message": "live one"})
    page.wait_for_selector(f'#feed li[data-id="{shipped["id"]}"]')
    assert page.locator(f'#feed li[data-id="{other["id"]}"]').count() == 0

    # The URL is the view: a reload (or the link shared) shows the same rows.
    page.reload()
    page.wait_for_selector("#conn.pill-live")
    assert page.input_value("#filters input[name=eventType]") == "deploy."
    assert row_types(page) and all(t.startswith("deploy.") for t in row_types(page))
    if width == "phone":
        assert page.inner_text("#filters-toggle") == "Filters (1)"
    page.context.close()


IN_DRAWER = "document.getElementById('drawer').contains(document.activeElement)"


def test_the_drawer_keeps_focus_inside_and_gives_it_back_to_its_row(demo, browser, width):
    page = open_page(browser, demo, width)
    page.goto(f"{demo.base}/w/{demo.org}/events/")
    page.wait_for_selector("#conn.pill-live")
    row = page.locator("#feed li").nth(1)
    row_id = row.get_attribute("data-id")
    row.locator("a.row-link").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#drawer:not([hidden])")
    assert page.evaluate("document.activeElement.hasAttribute('data-close')")
    for key in ["Tab"] * 5 + ["Shift+Tab"] * 7:
        page.keyboard.press(key)
        assert page.evaluate(IN_DRAWER), key
    page.keyboard.press("Escape")
    assert page.locator("#drawer").is_hidden()
    assert page.evaluate("document.activeElement.closest('li') && "
                         "document.activeElement.closest('li').dataset.id") == row_id
    page.context.close()


COUNT_SOCKETS = """
window.__sockets = 0;
const Native = window.WebSocket;
window.WebSocket = function (url, protocols) { window.__sockets += 1; return new Native(url, protocols); };
window.WebSocket.prototype = Native.prototype;
"""


def test_the_worker_page_reconnects_as_soon_as_the_network_is_back(demo, browser, width):
    page = open_page(browser, demo, width)
    page.add_init_script(COUNT_SOCKETS)
    page.goto(f"{demo.base}/w/{demo.org}/workers/{demo.worker}/")
    page.wait_for_selector("#conn.pill-live")
    scripts = page.eval_on_selector_all("script[src]", "ss => ss.map(s => s.src)")
    assert any(s.endswith("/js/socket.js") for s in scripts)  # the live page's reconnect code

    page.context.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    page.wait_for_selector("#conn.pill-reconnecting")
    # Failed attempts while offline push the backoff up: after five, the next is 8-16 s away.
    page.wait_for_function("() => window.__sockets >= 6", timeout=30_000)
    missed = send(demo, "crm-hub", "/api/v1/ingest/events", {"events": [
        {"eventType": "call.logged", "category": "sales", "actor": {"externalId": "crm-alex"}},
    ]})
    assert missed["results"]["accepted"]
    page.context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    # Back at once, not after the backoff: well under the 8 s the next attempt would wait.
    page.wait_for_selector("#conn.pill-live", timeout=5_000)
    page.wait_for_function(
        """() => [...document.querySelectorAll('#timeline .row-type')]
          .filter(e => e.textContent === 'call.logged').length >= 2""",
        timeout=5_000)
    page.context.close()


LUMINANCE = """sel => {
  const parse = c => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = rgb => {
    const [r, g, b] = rgb.map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const bg = e => {
    for (; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (!c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return parse(c);
    }
    return [255, 255, 255];
  };
  const el = document.querySelector(sel);
  const fg = lum(parse(getComputedStyle(el).color)), back = lum(bg(el));
  return {background: back, contrast: (Math.max(fg, back) + 0.05) / (Math.min(fg, back) + 0.05)};
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_colour_scheme_follows_the_system_and_text_stays_readable(demo, browser, width, scheme):
    page = open_page(browser, demo, width, color_scheme=scheme)
    page.goto(f"{demo.base}/w/{demo.org}/events/")
    page.wait_for_selector("#feed li")
    body = page.evaluate(LUMINANCE, "body")
    assert (body["background"] < 0.05) if scheme == "dark" else (body["background"] > 0.8)
    for sel in ["h1", ".live-head p", "#feed .row-type", "#feed .row-time", ".nav a", "#feed .badge"]:
        assert page.evaluate(LUMINANCE, sel)["contrast"] >= 4.5, sel
    page.context.close()


def test_the_favicon_is_served_and_favicon_ico_leads_to_it(demo, browser):
    answer = httpx.get(f"{demo.base}/favicon.ico", follow_redirects=True, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
    assert answer.history and answer.history[0].status_code == 301
    page = open_page(browser, demo, "desktop")
    page.goto(f"{demo.base}/w/{demo.org}/events/")
    href = page.get_attribute("link[rel=icon]", "href")
    assert httpx.get(demo.base + href, timeout=10).content == answer.content
    page.context.close()
