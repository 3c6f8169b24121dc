"""A champion promoted on evidence: when a sweep ends with `tracking.registered_model=NAME`, its best run's model is
registered as a new version of NAME, and the alias `champion` moves to it only when `tracking.promote` allows:

- `better` (the default): the best run beats the current champion on the same test set, by the paired bootstrap
  that compare uses (stats.paired_bootstrap over the runs' test_predictions.csv rows): the 95 % interval of the test
  accuracy difference lies above 0;
- `not_worse`: that interval's lower end lies above -`tracking.promote_margin` (at least as good, within the margin);
- `always`: it moves whatever the comparison says (as before promotion needed evidence).

The first version of a model becomes champion as before. Test sets that differ (other data, other rows) cannot be
compared: promotion is refused, unless `always`. Either way the new version records why (tags sentlab.promotion*,
and its description), and one line is printed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from sentlab import tags
from sentlab.stats import paired_bootstrap

ALIAS = "champion"


@dataclass
class Verdict:
    """Whether the alias moves, and why, in one line; `numbers`: the comparison's, for the version's tags."""

    promote: bool
    reason: str
    numbers: dict = field(default_factory=dict)


def judge(candidate, champion, rule: str, margin: float) -> Verdict:
    """Compare per-example correctness (0/1 arrays over the same test rows) of the candidate and the champion."""
    test = paired_bootstrap([candidate], [champion])
    p = "p<0.0001" if test["p"] == 0 else f"p={test['p']:.3g}"
    said = (
        f"test accuracy {test['diff']:+.4f} against the champion (95% interval {test['low']:+.4f} to "
        f"{test['high']:+.4f}, {p}, paired bootstrap over {len(candidate)} test examples)"
    )
    numbers = {"accuracy_diff": test["diff"], "ci_low": test["low"], "ci_high": test["high"], "p_value": test["p"]}
    numbers["examples"] = len(candidate)
    if rule == "always":
        return Verdict(True, f"promote=always; {said}", numbers)
    bound = 0.0 if rule == "better" else -margin
    needs = "above 0" if rule == "better" else f"above -{margin:g} (the margin)"
    if test["low"] > bound:
        return Verdict(True, f"promote={rule}: {said}, the interval lies {needs}", numbers)
    return Verdict(False, f"promote={rule} needs the interval {needs}: {said}", numbers)


def _test_input(run) -> str | None:
    """The digest of the run's test split as logged (an MLflow dataset input with context `test`), if any."""
    for item in run.inputs.dataset_inputs if run.inputs else []:
        if any(t.key == "mlflow.data.context" and t.value == "test" for t in item.tags):
            return item.dataset.digest
    return None


def _predictions(client, run_id: str):
    """(run, its test_predictions.csv sorted by id, or None): the run whose artifacts hold the results."""
    import pandas as pd

    run = client.get_run(run_id)
    source = client.get_run(run.data.tags.get(tags.REUSES, run_id))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            frame = pd.read_csv(client.download_artifacts(source.info.run_id, "test_predictions.csv", tmp))
    except Exception:
        return source, None
    return source, frame.sort_values("id").reset_index(drop=True)


def _differs(a, b, runs) -> str | None:
    """Why two runs' test sets cannot be compared row by row, or None when they are the same."""
    digests = [_test_input(r) for r in runs]
    if None not in digests and digests[0] != digests[1]:
        return f"the test sets differ (test data digest {digests[0]} against the champion's {digests[1]})"
    if len(a) != len(b):
        return f"the test sets differ ({len(a)} test rows against the champion's {len(b)})"
    if not (a.id.astype(str).tolist() == b.id.astype(str).tolist() and a.label.tolist() == b.label.tolist()):
        return "the test sets differ (other example ids or labels than the champion's)"
    return None


def evidence(client, candidate_id: str, champion_id: str, rule: str, margin: float) -> Verdict:
    """The verdict on moving the champion from run champion_id to run candidate_id (their test predictions)."""
    (mine, a), (theirs, b) = _predictions(client, candidate_id), _predictions(client, champion_id)
    missing = [r.info.run_id for r, frame in ((mine, a), (theirs, b)) if frame is None]
    why = f"no test_predictions.csv in run(s) {', '.join(missing)}" if missing else _differs(a, b, (mine, theirs))
    if why:
        if rule == "always":
            return Verdict(True, f"promote=always, without a comparison: {why}")
        return Verdict(False, f"promote={rule} refused: {why}")
    right = [(f.label == f.prediction).to_numpy(dtype=float) for f in (a, b)]
    return judge(right[0], right[1], rule, margin)


def current_champion(client, name: str):
    """The model version the alias points at, or None (no such model yet, or no champion)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def register(name: str, run_id: str, rule: str = "better", margin: float = 0.01) -> tuple[str, Verdict]:
    """Register run_id's model (a reusing child: the run it reuses) as a new version of `name`; move @champion to it
    when the verdict says so; record the verdict on the version and print it. (version, verdict)."""
    from sentlab import mlflow_model

    client = mlflow_model.mlflow.MlflowClient()
    source = client.get_run(run_id).data.tags.get(tags.REUSES, run_id)
    before = current_champion(client, name)
    if before is not None and before.run_id == source:  # e.g. the same sweep run again: nothing new to register
        print(f"registry: run {source} is already models:/{name}@{ALIAS} (version {before.version})")
        return before.version, Verdict(True, "already the champion")
    version = mlflow_model.mlflow.register_model(mlflow_model.model_uri(source), name).version
    if before is None:
        verdict = Verdict(True, "the first champion of this model")
    else:
        verdict = evidence(client, source, before.run_id, rule, margin)
    if verdict.promote:
        client.set_registered_model_alias(name, ALIAS, version)
    _record(client, name, version, verdict, before, rule)
    where = f"is models:/{name}@{ALIAS}" if verdict.promote else f"stays behind @{ALIAS} (version {before.version})"
    print(f"registry: {name} version {version} (run {source}) {where}: {verdict.reason}")
    return version, verdict


def _record(client, name: str, version: str, verdict: Verdict, before, rule: str) -> None:
    """The verdict as the version's tags and description."""
    record = {
        tags.PROMOTION: "promoted" if verdict.promote else "refused",
        tags.PROMOTION_RULE: rule,
        tags.PROMOTION_REASON: verdict.reason,
        tags.PROMOTION_AGAINST: f"version {before.version} (run {before.run_id})" if before else "none",
    }
    record.update({f"{tags.PROMOTION}.{k}": f"{v:.6g}" for k, v in verdict.numbers.items()})
    for key, value in record.items():
        client.set_model_version_tag(name, version, key, value)
    moved = f"Promoted to @{ALIAS}" if verdict.promote else f"Not promoted to @{ALIAS}"
    client.update_model_version(name, version, description=f"{moved}: {verdict.reason}")
