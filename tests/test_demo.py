"""`python -m sentlab.demo` (make demo) on 127.0.0.1, started and stopped by its pid, driven in headless Chromium:
a text typed and classified shows, for each of two models side by side, the label and the probabilities that
`python -m sentlab.predict` gives for the same text; an example fills the text box."""

from __future__ import annotations

import json
import re
import sys

from conftest import FAST, all_runs, tiny_args
from test_server import _free_port, running
from test_ui_browser import ARGS, CHROMIUM, _browser_or_skip

TEXT = "broke after a day, terrible"


def _predicted(run_id: str, uri: str, capsys) -> dict:
    from sentlab import predict

    capsys.readouterr()
    assert predict.main([run_id, TEXT, "--tracking-uri", uri]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _shown(page, i: int) -> dict[str, int]:
    """Model i's gr.Label as percentages by label name (its bars), and its headline label."""
    box = page.locator(f"#model-{i}")
    lines = [line.strip() for line in box.inner_text().splitlines() if line.strip()]
    bars = {name: int(value[:-1]) for name, value in zip(lines, lines[1:]) if re.fullmatch(r"\d+%", value)}
    return {"bars": bars, "text": lines}


def test_demo_page_answers_as_predict(tiny_models, train, store, runs_dir, tmp_path, capsys):
    sync_playwright = _browser_or_skip()
    from playwright.sync_api import expect

    args = [*FAST, *tiny_args(tiny_models, "roberta")]
    train(*args, "train.seed=1")
    train(*args, "train.seed=2", "train.lr=5e-3")
    first, second = (r.info.run_id for r in sorted(all_runs(store()), key=lambda r: r.info.start_time))
    uri = f"sqlite:///{runs_dir}/mlflow.db"
    expected = [_predicted(first, uri, capsys), _predicted(second, uri, capsys)]

    port = _free_port()
    command = [sys.executable, "-m", "sentlab.demo", first, "--compare", second, "--tracking-uri", uri]
    env = {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "MLFLOW_DISABLE_TELEMETRY": "true"}
    url = f"http://127.0.0.1:{port}"
    with running([*command, "--port", str(port)], url, tmp_path / "demo.log", env, 180), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_label("Text").fill(TEXT)
            page.get_by_role("button", name="Classify").click()
            for i, want in enumerate(expected):
                page.locator(f"#model-{i}").get_by_text(want["label"]).first.wait_for()
            page.wait_for_timeout(500)
            shown = [_shown(page, i) for i in range(2)]
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            page.locator("table, .gallery, [data-testid='examples']").first.get_by_text(re.compile(".+")).first.click()
            box = page.get_by_label("Text")
            expect(box).not_to_have_value(TEXT, timeout=30_000)  # the page fills it asynchronously
            example = box.input_value()
        finally:
            browser.close()
    for want, got in zip(expected, shown):
        assert want["label"] in got["text"][:3], got  # the headline label
        probs = {k.removeprefix("prob_"): v for k, v in want.items() if k.startswith("prob_")}
        assert got["bars"] == {k: round(100 * v) for k, v in probs.items()}, (got, probs)
    assert example and example != TEXT
