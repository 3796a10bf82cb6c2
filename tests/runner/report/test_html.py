"""report.html in a real browser (Debian's chromium, headless, driven by Playwright from PyPI with no browser of
its own): it renders with no console error and no request beyond the file itself, every figure is visible, a
click on a column's header reorders the rows, a flag in a table explains itself, the commands can be copied.

STRESSBENCH_SCREENSHOT=docs/report.png python -m pytest tests/runner/report/test_html.py renews the picture the
README shows (a plain run writes nothing into the checkout)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from runner.report.document import write_report
from runner.run.server import find_program

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip  # the machine's closed network: ask nothing


def _sweep(smoke_sweeps, tmp_path: Path) -> Path:
    """A real sweep (tests/runner/conftest.py's smoke sweeps, with repeats: three tables), its report written
    again in a copy."""
    sweep = Path(shutil.copytree(smoke_sweeps[0].path, tmp_path / "sweep"))
    write_report(sweep)
    return sweep / "report.html"


@pytest.mark.slow
@pytest.mark.needs("chromium")
def test_report_html_renders_sorts_explains_and_asks_for_nothing(smoke_sweeps, tmp_path):
    from playwright.sync_api import sync_playwright

    page_file = _sweep(smoke_sweeps, tmp_path)
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_program("chromium"), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            assert errors == []
            assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
            images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.alt, i.naturalWidth, i.complete])")
            assert len(images) >= 4 and all(width > 100 and done for _, width, done in images), images
            table = page.locator("table").first
            column = [h.strip() for h in table.locator("thead th").all_inner_texts()].index("Server")
            before = table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts()
            table.locator("thead th").nth(column).click()
            after = table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts()
            assert after == sorted(before) and table.locator("thead th").nth(column).get_attribute("aria-sort")
            table.locator("thead th").nth(column).click()
            assert table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts() == sorted(before)[::-1]
            assert page.locator("pre button").count() >= 1
            if (shot := os.environ.get("STRESSBENCH_SCREENSHOT")):
                page.screenshot(path=shot, full_page=False)
            assert errors == []
        finally:
            browser.close()


@pytest.mark.needs("chromium")
def test_a_flag_in_a_table_explains_itself(tmp_path):
    """The tooltip is the Flags section's own text (runner/report/document.py _legend), put in by the page's
    script."""
    from playwright.sync_api import sync_playwright

    from runner.report.html import render_html

    page_file = tmp_path / "report.html"
    page_file.write_text(render_html("| Server | Flags |\n|:--|:--|\n| select | contended, errors |\n", tmp_path, "t",
                                     {"contended": "other processes used more than 25%"}))  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_program("chromium"), args=ARGS)
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            assert page.locator("span.explained").get_attribute("title") == "other processes used more than 25%"
            assert page.locator("td").nth(1).inner_text() == "contended, errors"  # a flag without a legend stays text
        finally:
            browser.close()
