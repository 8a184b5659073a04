"""Both pages in a real headless Chromium: self-contained, every image decodes, no horizontal overflow at
1280 and 800 px, no console error; the run page's narrative, comparison and provenance on two real runs;
the index's charts, sorting and filtering on real runs and on 1 and 50 recorded runs."""
from __future__ import annotations

import json
import re
import shutil
import time

import luigi
import pytest

from tests.conftest import storage_at

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = (1280, 800)
TWO_RUNS = [dict(train_limit=1000, epochs=1, seed=1, preset="simple"),
            dict(train_limit=1000, epochs=1, seed=2, preset="simple", augment=False)]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [test] extra")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, mnist_dir):
    """Two cheap real runs with different parameters (seed, augmentation) into one data and report
    directory, one after the other; yields (root, [run dir of the first, of the second])."""
    from tasks import RenderReport, RunPipeline

    root = tmp_path_factory.mktemp("two-runs")
    run_dirs = []
    with storage_at(root):
        for params in TWO_RUNS:
            result = luigi.build([RunPipeline(**params)], local_scheduler=True, detailed_summary=True,
                                 log_level="WARNING")
            assert result.scheduling_succeeded, result.summary_text
            run_dirs.append(RenderReport(**params).output_dir())
            time.sleep(1.1)  # metrics.json's `created` has one-second resolution: keep the runs ordered
    return root, run_dirs


def open_checked(browser, path, width: int):
    """Open ``path`` at ``width`` px and check what every page must satisfy; return the page.

    No request leaves the page (only the page itself and data: URIs), every image decodes, the page
    is no wider than the window, and the console shows no error.
    """
    page = browser.new_page(viewport={"width": width, "height": 900})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert [u for u in requests if not u.startswith("data:")] == [path.as_uri()], f"at {width}px"
    widths = page.evaluate("[...document.images].map(i => i.complete ? i.naturalWidth : -1)")
    assert all(w > 0 for w in widths), f"an image does not decode at {width}px: {widths}"
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the {width}px window"
    assert errors == [], errors
    page.errors = errors  # later interactions are checked too
    return page


def test_report_renders_offline_with_all_figures(small_run, browser, tmp_path):
    root, _ = small_run
    run_dir = (root / "reports" / "latest").resolve()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for width in WIDTHS:
        page = open_checked(browser, run_dir / "report.html", width)
        widths = page.evaluate("[...document.images].map(i => i.naturalWidth)")
        assert len(widths) >= 8 and all(w > 100 for w in widths), "exploration, training and evaluation figures"
        page.close()
    page = open_checked(browser, run_dir / "report.html", 1280)
    shown = page.inner_text("#test-accuracy")
    assert shown == f"{100 * metrics['test_accuracy']:.2f}%"
    assert page.inner_text("#run-id") == metrics["run_id"]
    assert page.inner_text("#rerun-command") == metrics["rerun_command"]  # shown whole, wrapped, not cut
    assert "--augment true" in metrics["rerun_command"]
    for section in ("summary", "comparison", "acquisition", "cleaning", "exploration", "training", "evaluation",
                    "provenance", "parameters"):
        assert page.locator(f"section#{section}").count() == 1
        assert page.locator(f"section#{section}").inner_text().strip()
    # what a reader tripped over: NaN for empty calibration bins, the mistakes' index shown twice, "1 runs"
    text = page.inner_text("body")
    assert "NaN" not in text and not re.search(r"\b1 (runs|epochs|models|mistakes|images)\b", text)
    mistakes = page.locator("section#evaluation .tables > div", has_text="Most confident mistakes")
    headers = mistakes.locator("th").all_inner_texts()
    assert headers[0] == "index = source_index" and headers.count("source_index") == 0
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000  # a real rendering, not a blank page
    page.close()


def test_the_first_run_says_it_is_first_and_the_second_names_it(two_runs, browser):
    root, (first, second) = two_runs
    page = open_checked(browser, first / "report.html", 1280)
    assert "This is the first run in this report directory" in page.inner_text("#narrative")
    assert "first run" in page.inner_text("section#comparison")
    page.close()

    first_id = first.name
    for width in WIDTHS:
        open_checked(browser, second / "report.html", width).close()
    page = open_checked(browser, second / "report.html", 1280)
    story = page.inner_text("#narrative")
    assert story.startswith("This run trained one model (seed 2) with the simple preset for 1 epoch on the first "
                            "1,000 training images")
    assert "without augmentation" in story
    assert f"Against the previous run, also the best so far, {first_id} (rendered " in story
    assert "augment true → false and seed 1 → 2" in story
    assert "McNemar's test on 10,000 paired test images" in story
    assert "Compared with the 1 other run of this report directory" in page.inner_text("#definitions")
    link = page.locator("#narrative a")
    assert link.count() == 1 and link.get_attribute("href") == f"../{first_id}/report.html"
    assert (second / link.get_attribute("href")).resolve() == (first / "report.html").resolve()
    # the comparison section: the other run, its parameters, metrics and per-digit changes
    section = page.locator("section#comparison")
    assert section.locator("h3 a").get_attribute("href") == f"../{first_id}/report.html"
    assert section.locator("h4").all_inner_texts() == ["Parameters that differ", "Metrics", "Accuracy per digit"]
    params = section.locator("table").first.inner_text()
    assert "augment" in params and "seed" in params
    assert section.locator("table").nth(2).locator("tbody tr").count() == 10
    page.close()


def test_provenance_is_in_metrics_and_on_the_page(two_runs, browser):
    from pipeline import store

    root, (_, second) = two_runs
    metrics = store.read_verified_json(second / "metrics.json")
    prov = metrics["provenance"]
    for key in ("run_id", "test_accuracy", "test_accuracy_ci95", "params_sha256", "rerun_command"):
        assert key in metrics  # the keys cron jobs read are still there
    # every stage's code digest, as its manifest recorded it
    stages = {s["task"] for s in prov["stages"]}
    assert {"CleanData", "PrepareData", "ExploreData", "TrainCNN", "EvaluateCNN"} <= stages
    for s in prov["stages"]:
        manifest = store.read_manifest(root / "data" / s["output"])
        assert s["code_digest"] == manifest["code"]["digest"] and s["created"] == manifest["created"]
    fetched = json.loads((root / "data" / "raw" / "mnist" / "manifest.json").read_text())
    assert {k: v["sha256_content"] for k, v in prov["data"].items()} == {
        k: v["sha256_content"] for k, v in fetched.items()}
    assert prov["report"]["code_digest"] == store.read_manifest(second)["code"]["digest"]
    assert prov["inputs"] == store.read_manifest(second)["inputs"]
    assert prov["environment"]["libraries"]["numpy"] and prov["environment"]["blas"]

    page = open_checked(browser, second / "report.html", 1280)
    text = page.inner_text("section#provenance")
    for name, rec in fetched.items():
        assert name in text and rec["sha256_content"] in text
    for s in prov["stages"]:
        assert s["code_digest"][:12] in text
    assert f"numpy\t{prov['environment']['libraries']['numpy']}" in text
    page.close()


def _order(page) -> list[str]:
    return page.locator("#run-table tbody tr:not([hidden]) td:nth-child(2)").all_inner_texts()


def test_index_of_real_runs_sorts_filters_and_links(two_runs, browser):
    root, (first, second) = two_runs
    index = root / "reports" / "index.html"
    for width in WIDTHS:
        open_checked(browser, index, width).close()
    page = open_checked(browser, index, 1280)
    assert page.locator("#accuracy-svg circle").count() == 2 and page.locator("#time-svg circle").count() == 2
    assert _order(page) == [first.name, second.name]  # oldest first
    for href in page.locator("#run-table a").evaluate_all("links => links.map(a => a.getAttribute('href'))"):
        assert (root / "reports" / href).is_file()
    accuracy = {d.name: json.loads((d / "metrics.json").read_text())["test_accuracy"] for d in (first, second)}
    header = page.locator("#run-table th button", has_text="test accuracy")
    header.click()
    assert _order(page) == sorted(accuracy, key=accuracy.get)
    assert page.locator("#run-table th", has_text="test accuracy").get_attribute("aria-sort") == "ascending"
    header.click()
    assert _order(page) == sorted(accuracy, key=accuracy.get, reverse=True)
    page.fill("#filter", "s2")
    assert _order(page) == [second.name] and page.inner_text("#shown") == "1 of 2 shown"
    page.fill("#filter", "simple NO")  # words, any case, all must match: only the run without augmentation
    assert _order(page) == [second.name]
    page.fill("#filter", "")
    assert len(_order(page)) == 2 and page.errors == []
    page.close()


def _recorded_runs(directory, n: int) -> None:
    """``n`` metrics records as runs leave them (seeds n-1 .. 0, accuracy rising), and the index of them."""
    from pipeline import store
    from pipeline.report.index import write_index
    from pipeline.report.metrics import metrics_record

    for i in range(n):
        acc = 0.9 + 0.09 * i / max(n - 1, 1)
        record = metrics_record(f"twoconv-e12-s{n - 1 - i}-{i:08x}", {"epochs": 12, "seed": n - 1 - i,
                                "preset": "twoconv", "train_limit": 0, "augment": i % 2 == 0},
                                {"train_seconds": 100.0 + i, "params_sha256": "ab" * 32, "best_val_accuracy": acc},
                                {"test_accuracy": acc, "ci95": [acc - 0.002, acc + 0.002], "n_test": 10_000},
                                "luigi --module tasks RunPipeline")
        record["created"] = f"2026-{1 + i // 28:02d}-{1 + i % 28:02d}T02:30:00+00:00"
        store.write_json(directory / record["run_id"] / "metrics.json", record)
    write_index(directory)


@pytest.mark.parametrize("n", [1, 50])
def test_index_reads_with_one_run_and_with_fifty(n, tmp_path, browser):
    _recorded_runs(tmp_path, n)
    for width in WIDTHS:
        open_checked(browser, tmp_path / "index.html", width).close()
    page = open_checked(browser, tmp_path / "index.html", 800)
    assert page.locator("#accuracy-svg circle").count() == n
    assert page.locator("#accuracy-svg polyline").count() == (2 if n > 1 else 0)
    labels = page.locator("#accuracy-svg text[text-anchor=middle]").all_text_contents()  # SVG: no innerText
    assert 1 <= len([t for t in labels if t.isdigit()]) <= 12
    header = page.inner_text("header")
    assert (f"{n} run," if n == 1 else f"{n} runs,") in header and "1 runs" not in header
    box = page.locator("#accuracy-svg").bounding_box()
    assert 300 < box["width"] <= 800 and box["height"] > 100  # drawn, and within the window
    if n > 1:
        page.locator("#run-table th button", has_text="seed").click()
        seeds = page.locator("#run-table tbody td:nth-child(6)").all_inner_texts()
        assert seeds == [str(s) for s in range(n)]  # 0, 1, ..., 10, 11: numbers, not text
        page.fill("#filter", "-s4-")
        assert _order(page) == [f"twoconv-e12-s4-{n - 5:08x}"]
    assert page.errors == []
    page.close()
