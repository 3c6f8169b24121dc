"""A champion promoted on evidence (sentlab/promotion.py): a sweep with tracking.registered_model registers its best
run's model and moves @champion to it only when tracking.promote allows, comparing it with the champion on the same
test set (paired bootstrap over test_predictions.csv); the version records why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, all_runs, tiny_args
from test_bad_input import assert_refused

RIGHT, WRONG = np.ones(200), np.zeros(200)
HALF = np.tile([1.0, 0.0], 100)


@pytest.mark.parametrize(
    ("candidate", "champion", "rule", "promoted"),
    [
        (HALF, HALF, "better", False),  # the same: not better
        (RIGHT, HALF, "better", True),
        (HALF, HALF, "not_worse", True),  # the same is not worse
        (np.r_[HALF[:190], np.zeros(10)], HALF, "not_worse", False),  # 0.025 worse, interval below -0.01
        (WRONG, RIGHT, "always", True),
    ],
)
def test_the_rules(candidate, champion, rule, promoted):
    from sentlab import promotion

    verdict = promotion.judge(candidate, champion, rule, margin=0.01)
    assert verdict.promote == promoted, verdict.reason
    assert verdict.numbers["accuracy_diff"] == pytest.approx(candidate.mean() - champion.mean())
    assert verdict.numbers["ci_low"] <= verdict.numbers["accuracy_diff"] <= verdict.numbers["ci_high"]
    assert verdict.reason.startswith(f"promote={rule}") and "95% interval" in verdict.reason


def test_a_bad_rule_is_refused_before_the_sweep(tiny_models, train, store, capsys):
    args = ["-m", *tiny_args(tiny_models, "bert"), *FAST, "lora.r=2,4", "tracking.registered_model=reviews"]
    assert_refused(train, store, capsys, [*args, "tracking.promote=sometimes"], "tracking.promote",
                   ["sometimes", "better or not_worse or always"])  # fmt: skip
    assert_refused(train, store, capsys, [*args, "tracking.promote=not_worse", "tracking.promote_margin=2"],
                   "tracking.promote_margin", ["[0, 1)", "2"])  # fmt: skip


def _plant(client, run_id: str, tmp_path, right: bool) -> None:
    """Overwrite a run's test predictions: every one right, or every one wrong."""
    file = client.download_artifacts(run_id, "test_predictions.csv", str(tmp_path))
    frame = pd.read_csv(file)
    frame["prediction"] = frame.label if right else (frame.label + 1) % 3
    planted = tmp_path / "planted" / "test_predictions.csv"
    planted.parent.mkdir(exist_ok=True)
    frame.to_csv(planted, index=False)
    client.log_artifact(run_id, str(planted))


def _accuracy(client, run_id: str, tmp_path) -> float:
    frame = pd.read_csv(client.download_artifacts(run_id, "test_predictions.csv", str(tmp_path / run_id)))
    return float((frame.label == frame.prediction).mean())


def test_champion_moves_only_on_evidence(tiny_models, train, store, tmp_path, capsys):
    model = [*tiny_args(tiny_models, "bert"), *FAST, "data.max_samples.test=60", "tracking.registered_model=reviews"]

    def sweep(*args):
        train("-m", *model, *args)
        client = store()
        latest = max(int(v.version) for v in client.search_model_versions("name = 'reviews'"))
        return client, client.get_model_version("reviews", str(latest)), capsys.readouterr().out

    client, first, out = sweep("lora.r=2")  # the first champion, as before
    assert int(first.version) == 1 and first.aliases == ["champion"]
    assert first.tags["sentlab.promotion"] == "promoted" and "first champion" in first.description

    _plant(client, first.run_id, tmp_path, right=True)  # a champion that gets every test example right
    client, worse, out = sweep("lora.r=4")
    champion = client.get_model_version_by_alias("reviews", "champion")
    assert int(worse.version) == 2 and int(champion.version) == 1  # registered, not promoted
    assert worse.tags["sentlab.promotion"] == "refused" and worse.tags["sentlab.promotion_rule"] == "better"
    diff = _accuracy(client, worse.run_id, tmp_path) - 1.0
    assert float(worse.tags["sentlab.promotion.accuracy_diff"]) == pytest.approx(diff, abs=1e-5)
    assert float(worse.tags["sentlab.promotion.examples"]) == 60
    assert worse.tags["sentlab.promotion_against"] == f"version 1 (run {first.run_id})"
    assert "promote=better needs the interval above 0" in worse.tags["sentlab.promotion_reason"]
    assert worse.description.startswith("Not promoted to @champion: promote=better")
    assert "registry: reviews version 2" in out and "stays behind @champion (version 1)" in out

    _plant(client, first.run_id, tmp_path, right=False)  # now one that gets every one wrong
    client, better, out = sweep("lora.r=8")
    assert int(client.get_model_version_by_alias("reviews", "champion").version) == int(better.version) == 3
    assert better.tags["sentlab.promotion"] == "promoted"
    assert float(better.tags["sentlab.promotion.ci_low"]) > 0
    assert "registry: reviews version 3" in out and "is models:/reviews@champion: promote=better" in out

    client, same, out = sweep("lora.r=8")  # the same sweep again: its best run is the champion already
    assert int(same.version) == 3 and f"run {better.run_id} is already models:/reviews@champion" in out


@pytest.mark.slow
def test_other_test_sets_are_refused_unless_always(tiny_models, train, store, capsys):
    model = [*tiny_args(tiny_models, "bert"), *FAST, "tracking.registered_model=reviews", "lora.r=2"]
    train("-m", *model, "data.max_samples.test=60")
    train("-m", *model, "data.max_samples.test=30", "lora.r=4")
    client = store()
    refused = client.get_model_version("reviews", "2")
    assert int(client.get_model_version_by_alias("reviews", "champion").version) == 1
    assert refused.tags["sentlab.promotion"] == "refused"
    assert "the test sets differ" in refused.tags["sentlab.promotion_reason"]
    # The same job again with promote=always: a child reusing that run, whose model is registered and promoted.
    train("-m", *model, "data.max_samples.test=30", "lora.r=4", "tracking.promote=always")
    forced = client.get_model_version_by_alias("reviews", "champion")
    assert int(forced.version) == 3 and forced.run_id == refused.run_id
    assert forced.tags["sentlab.promotion_reason"].startswith("promote=always, without a comparison: the test sets")
    assert any("sentlab.reuses" in r.data.tags for r in all_runs(client))
