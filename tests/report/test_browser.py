"""Open a failing report in a real browser (headless Debian chromium) at 390 and 1400 px:
the lost job's story is visible without clicking, nothing overflows at 390 px, and the page
makes no network request. Screenshots go to ``$BULLETPROOF_SCREENSHOTS`` when set."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.report import build
from tests.report import recorded
from tests.report.cdp import Browser, find_chromium

DATA = Path(__file__).parent / "data" / "recorded-seed11"
LOST = "job-network_cut-206"
REAL_LOST = "job-worker_crash__defect_no_stall_recovery-9"

# Text-bearing elements must fit the viewport, unless inside a container that scrolls on its
# own (a wide table, a preformatted block) or inside a chart (an SVG scales to the page).
OVERFLOWING = """
(() => {
  const w = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('h1,h2,h3,h4,p,li,dt,dd,summary,span,a,code,b')) {
    if (el.closest('.wrap, pre, svg')) continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > w + 1 || r.left < -1)) {
      out.push(el.tagName + ' ' + (el.textContent || '').slice(0, 60) + ' ' + Math.round(r.right));
    }
  }
  return out.slice(0, 20);
})()
"""
STORY_VISIBLE = """
((id) => {
  const d = document.getElementById(id);
  const list = d && d.querySelector('ol.story');
  if (!list) return null;
  const r = list.getBoundingClientRect();
  return {open: d.open, height: r.height, visible: list.checkVisibility(),
          text: list.innerText};
})
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); CI installs it")
    with Browser(binary) as b:
        yield b


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reports = tmp_path_factory.mktemp("browser")
    shutil.copytree(DATA, reports, dirs_exist_ok=True)  # a real mutation run that lost jobs
    recorded.write_failing(reports)  # plus a failing scenario with process logs
    built = build(reports, run={"seed": recorded.SEED, "backend": "local", "profile": "fast"})
    assert built.doc["verdict"] == "fail"
    return built.index_html


def _shots(tmp: Path) -> Path:
    target = Path(os.environ.get("BULLETPROOF_SCREENSHOTS") or tmp)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.mark.parametrize("width", [390, 1400])
def test_failing_report_in_a_real_browser(
    browser: Browser, report: Path, width: int, tmp_path: Path
) -> None:
    url = report.resolve().as_uri()
    browser.open(url, width)
    shots = _shots(tmp_path)
    browser.screenshot(shots / f"report-{width}.png")
    # no request but the page itself
    assert browser.requests() == [url]
    # nothing wider than the viewport
    scroll, inner = browser.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= inner, f"the page is {scroll} px wide in a {inner} px viewport"
    assert browser.evaluate(OVERFLOWING) == []
    # the lost jobs' stories are open, laid out and readable without a click
    for anchor in (LOST, REAL_LOST):
        found = browser.evaluate(f"{STORY_VISIBLE}({anchor!r})")
        assert found is not None, anchor
        assert found["open"] and found["visible"] and found["height"] > 40, found
    text = browser.evaluate(f"{STORY_VISIBLE}({LOST!r})")["text"]
    assert "fault starts: reset_peer on jokeapi" in text and "Job 206: Fetching joke" in text
    real = browser.evaluate(f"{STORY_VISIBLE}({REAL_LOST!r})")["text"]
    assert "fault starts: kill on worker:w1" in real and "never ended" in real
    # the banner links straight to the lost job's story
    assert browser.evaluate(f"!!document.querySelector('#verdict a[href=\"#{LOST}\"]')"), (
        "the banner does not link the lost job"
    )
    browser.evaluate(f"document.getElementById({LOST!r}).scrollIntoView()")
    browser.screenshot(shots / f"report-{width}-lost-story.png")
    browser.evaluate("document.querySelector('[id^=chart-timeline-network_cut]').scrollIntoView()")
    browser.screenshot(shots / f"report-{width}-timeline.png")


def test_a_scenario_page_of_a_split_report_in_a_real_browser(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.report import render

    monkeypatch.setattr(render, "INLINE_SCENARIOS", 2)  # as a soak's many runs would
    recorded.write_failing(tmp_path)
    build(tmp_path, run={"seed": recorded.SEED, "backend": "local", "profile": "fast"})
    page = (tmp_path / "pages" / "worker_crash.html").resolve().as_uri()
    browser.open(page, 390)
    browser.screenshot(_shots(tmp_path) / "report-page-390.png")
    assert browser.requests() == [page]
    scroll, inner = browser.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= inner and browser.evaluate(OVERFLOWING) == []
    height = browser.evaluate(
        "document.querySelector('svg[id^=chart-timeline-worker_crash]')"
        ".getBoundingClientRect().height"
    )
    assert height > 100, "the timeline is not drawn"
    back = browser.evaluate("document.querySelector('main p a').getAttribute('href')")
    assert back == "../index.html#s-worker_crash"
