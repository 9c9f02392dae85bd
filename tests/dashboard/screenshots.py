"""`make screenshots`: PNGs of the main pages at desktop and phone widths, in screenshots/.

Starts a Daphne process on a fresh demo database (tests/dashboard/tour.py: `manage.py demo`,
then events over the real APIs), signs in as the demo user in headless Chromium and saves
`<page>-<width>.png` (the full page) for every page of the tour, the live page's drawer open and
the live page in dark mode too. Run: .venv/bin/python -m tests.dashboard.screenshots [out-dir]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.dashboard.tour import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OPTIONAL,
    PUBLIC_PAGES,
    WIDTHS,
    demo_server,
    log_in,
    pages,
)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ackly-shots-") as tmp, demo_server(Path(tmp)) as demo, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for width_name, (w, h) in WIDTHS.items():
            for scheme in ("light", "dark"):
                context = browser.new_context(viewport={"width": w, "height": h},
                                              color_scheme=scheme)
                page = context.new_page()
                suffix = f"{width_name}" + ("-dark" if scheme == "dark" else "")
                tour = PUBLIC_PAGES if scheme == "light" else []
                for name, path in tour:
                    page.goto(demo.base + path)
                    page.screenshot(path=out / f"{name}-{suffix}.png", full_page=True)
                log_in(page, demo)
                for name, path in pages(demo):
                    if scheme == "dark" and name not in ("live", "worker", "sources", "usage"):
                        continue
                    answer = page.goto(demo.base + path)
                    if name in OPTIONAL and answer.status == 404:
                        continue
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=out / f"{name}-{suffix}.png", full_page=True)
                    if name == "live":
                        # The fold as a phone shows it, and the drawer open on the first row.
                        page.screenshot(path=out / f"live-fold-{suffix}.png")
                        page.click("#feed li:first-child a.row-link")
                        page.wait_for_selector("#drawer:not([hidden])")
                        page.screenshot(path=out / f"live-drawer-{suffix}.png")
                        page.keyboard.press("Escape")
                context.close()
        browser.close()
    print(f"screenshots in {out}/: {len(list(out.glob('*.png')))} files")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots"))
