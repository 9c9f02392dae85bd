"""Accessibility of every dashboard page, at desktop and phone widths, in light and dark.

axe-core (through axe-playwright-python) runs in headless Chromium against a real Daphne
process serving the tour's demo workspace (tests/dashboard/tour.py): no serious or critical
violation on any page, the live page with its drawer open included. Every page's first
focusable element is a "Skip to content" link that moves focus to the main content.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dashboard.test_browser_live import browser  # noqa: F401  (the shared Chromium)
from tests.dashboard.tour import (
    OPTIONAL,
    PUBLIC_PAGES,
    WIDTHS,
    Demo,
    demo_server,
    log_in,
    pages,
)

pytestmark = [pytest.mark.browser, pytest.mark.server]

SERIOUS = {"serious", "critical"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    with demo_server(tmp_path_factory.mktemp("a11y")) as demo:
        yield demo


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(node["target"][0] if isinstance(node["target"][0], str) else str(node["target"])
                    for node in v["nodes"][:5])
        for v in found if v["impact"] in SERIOUS
    ]


FIRST_FOCUSABLE = """() => {
  const all = [...document.querySelectorAll(
    'a[href], button, input, select, textarea, summary, [tabindex]')];
  const reachable = all.filter(e => !e.disabled && e.tabIndex >= 0
    && !e.closest('[hidden], [inert]') && getComputedStyle(e).visibility !== 'hidden');
  const first = reachable.find(e => e.tabIndex > 0) || reachable[0];
  return [first.className, first.textContent.trim()];
}"""


def skip_link_works(page) -> bool:
    """The skip link comes first in the tab order; following it focuses the main content."""
    if page.evaluate(FIRST_FOCUSABLE) != ["skip-link", "Skip to content"]:
        return False
    page.focus(".skip-link")
    if not page.locator(".skip-link").is_visible():
        return False  # shown when focused
    page.keyboard.press("Enter")
    return page.evaluate("document.activeElement.id") == "content"


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", list(WIDTHS))
def test_no_page_has_a_serious_or_critical_violation(demo, browser, width, scheme):
    w, h = WIDTHS[width]
    context = browser.new_context(viewport={"width": w, "height": h}, color_scheme=scheme)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: dict[str, list[str]] = {}
    checked = []
    for name, path in PUBLIC_PAGES:
        page.goto(demo.base + path)
        problems[name] = serious_violations(page)
        if not skip_link_works(page):
            problems[name].append("no working skip link first in the tab order")
        checked.append(name)
    log_in(page, demo)
    for name, path in pages(demo):
        answer = page.goto(demo.base + path)
        if name in OPTIONAL and answer.status == 404:
            continue  # not built (yet): part of the tour as soon as it answers
        assert answer.status == 200, (name, answer.status)
        page.wait_for_load_state("networkidle")
        problems[name] = serious_violations(page)
        if not skip_link_works(page):
            problems[name].append("no working skip link first in the tab order")
        checked.append(name)
        if name == "live":
            page.wait_for_selector("#conn.pill-live")
            page.click("#feed li:first-child a.row-link")
            page.wait_for_selector("#drawer:not([hidden])")
            problems["live, drawer open"] = serious_violations(page)
            page.keyboard.press("Escape")
            if width == "phone":
                page.click("#filters-toggle")
                problems["live, filters open"] = serious_violations(page)
    context.close()
    assert {"login", "signup", "live", "event", "workers", "worker", "sources", "source",
            "key-new", "key-rotate", "usage", "docs"} <= set(checked)
    found = [f"{name}: {p}" for name, ps in problems.items() for p in ps]
    assert not found, f"{width} {scheme}:\n" + "\n".join(found)
