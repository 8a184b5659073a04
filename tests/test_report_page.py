"""The report page in a real headless Chromium: self-contained, every figure decodes, numbers shown."""
from __future__ import annotations

import json
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [test] extra")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_report_renders_offline_with_all_figures(small_run, browser, tmp_path):
    root, _ = small_run
    run_dir = (root / "reports" / "latest").resolve()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((run_dir / "report.html").as_uri())
    page.wait_for_load_state("load")

    # Self-contained: the only request is the page itself (figures are data: URIs).
    assert [u for u in requests if not u.startswith("data:")] == [(run_dir / "report.html").as_uri()]
    assert errors == []
    widths = page.evaluate("[...document.images].map(i => i.complete ? i.naturalWidth : -1)")
    assert len(widths) >= 8, "expected exploration, training and evaluation figures"
    assert all(w > 100 for w in widths), widths
    # Wide tables scroll inside their section instead of widening the page.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    shown = page.inner_text("#test-accuracy")
    assert shown == f"{100 * metrics['test_accuracy']:.2f}%"
    assert page.inner_text("#run-id") == metrics["run_id"]
    assert page.inner_text("#rerun-command") == metrics["rerun_command"]  # shown whole, wrapped, not cut
    assert "--augment true" in metrics["rerun_command"]
    for section in ("acquisition", "cleaning", "exploration", "training", "evaluation", "parameters"):
        assert page.locator(f"section#{section}").count() == 1
        assert page.locator(f"section#{section}").inner_text().strip()
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000  # a real rendering, not a blank page
    page.close()
