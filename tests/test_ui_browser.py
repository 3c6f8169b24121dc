"""The MLflow UI opens sentlab's experiment on its training runs (a model-training experiment, not MLflow 3's GenAI
view) and shows a finished sweep as a parent with its child runs and their metrics: headless Chromium
(Debian's package, driven by Playwright) on a server started here on 127.0.0.1; a screenshot is saved."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import FAST, tiny_args
from test_server import mlflow_server

from sentlab.tracking import ui_link

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
]


def _browser_or_skip():
    if not shutil.which("chromium"):
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium; .ci/run tries it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install playwright; it is in the dev extra)")
    return sync_playwright


def test_mlflow_ui_shows_sweep_children_and_metric(tiny_models, train, runs_dir, tmp_path):
    sync_playwright = _browser_or_skip()
    train("-m", *tiny_args(tiny_models, "bert"), "lora.r=2,4", *FAST)
    metric = "val_f1_macro"
    shot = tmp_path / "mlflow_ui_sweep.png"
    with mlflow_server(runs_dir) as uri, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.set_default_timeout(30_000)
            # The experiment's page as `make ui` and a run's printed link open it: it lands on the training runs.
            page.goto(ui_link(uri, "1"), wait_until="domcontentloaded", timeout=60_000)
            parent = page.get_by_text("sweep ", exact=False).first
            parent.wait_for()
            landed = page.url
            if page.get_by_role("button", name="Close").count():  # the assistant side panel
                page.get_by_role("button", name="Close").first.click()
            # A metric column: chosen in the table's column selector, as a user would.
            page.get_by_role("button", name="Columns").click()
            page.get_by_placeholder("Search columns").fill(metric)
            options = page.get_by_role("dialog").locator("[role=treeitem], .du-bois-light-tree-treenode")
            options.filter(has_text=re.compile(rf"^{metric}$")).first.click()  # not best_{metric} (the parent's)
            page.keyboard.press("Escape")
            # The sweep is one row; its expander shows the child runs.
            page.locator("[role=gridcell][col-id='attributes.`Run Name`'] button").first.click()
            for name in ("lora.r=2", "lora.r=4"):
                page.get_by_role("link", name=name, exact=True).wait_for()
            column = f"[col-id='metrics.`{metric}`']"
            page.locator(f"[role=columnheader]{column}").first.wait_for()
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot), full_page=True)
            body = page.inner_text("body")
            values = [t.strip() for t in page.locator(f"[role=gridcell]{column}").all_inner_texts()]
        finally:
            browser.close()
    assert "/experiments/1/runs?workflowType=machine_learning" in landed, landed  # the runs, not traces
    assert "lora.r=2" in body and "lora.r=4" in body and metric in body
    assert sum(bool(re.fullmatch(r"[01]\.\d+.*|[01]", v)) for v in values) == 2, values  # each child's value
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
