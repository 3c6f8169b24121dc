"""Where a sweep's runs differ, example by example (`python -m sentlab.compare --errors`).

The best run of the sweep (by the compare metric, default val_<train.select_metric>) against each other run that
has test predictions of the same test set (test_predictions.csv, aligned by row id): how many test examples both
get right, only the best gets right, only the other gets right, both get wrong, and those examples themselves
(their texts come from the runs' test_errors.json: an example one run gets wrong is in its table). Then every
run's F1 per class against the class's share of the test set, as a table and a plot. All of it is saved in
RUNS/compare/<sweep>/errors/ and logged to the sweep's parent run under compare/errors/.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sentlab import comparison, tags

SHOWN = 3  # examples printed per pair and direction (the CSV has them all)
FILES = ("errors_vs_best.csv", "disagreements.csv", "per_class_f1.csv", "per_class_f1.png")


def _download(client, run, path: str):
    """A run's artifact as a local path (a reused run's from the run it reuses), or None."""
    source = run.data.tags.get(tags.REUSES, run.info.run_id)
    try:
        return client.download_artifacts(source, path)
    except Exception:
        return None


def predictions(client, run):
    """The run's test_predictions.csv by row id, with each row's confidence; None without one."""
    import pandas as pd

    file = _download(client, run, "test_predictions.csv")
    if file is None:
        return None
    frame = pd.read_csv(file).sort_values("id").reset_index(drop=True)
    frame["confidence"] = frame.filter(like="prob_").max(axis=1)
    return frame


def texts(client, runs) -> dict[int, str]:
    """{row id: text} of every example some run got wrong (their test_errors.json tables)."""
    import pandas as pd

    from sentlab.reports import ERRORS

    found = {}
    for run in runs:
        if file := _download(client, run, ERRORS):
            table = pd.read_json(file, orient="split")
            found.update(zip(table["id"], table["text"]))
    return found


def pair(best, other, names: list[str], text: dict[int, str]):
    """(counts, disagreements) of two runs' aligned predictions; counts only say why not when the test sets differ."""
    import pandas as pd

    if len(best) != len(other) or not (best.label.to_numpy() == other.label.to_numpy()).all():
        return {"note": "not the same test set (rows or labels differ)"}, pd.DataFrame()
    a, b = best.prediction == best.label, other.prediction == other.label
    counts = {
        "examples": len(best),
        "both_right": int((a & b).sum()),
        "only_best_right": int((a & ~b).sum()),
        "only_other_right": int((~a & b).sum()),
        "both_wrong": int((~a & ~b).sum()),
    }
    differ = a != b
    rows = pd.DataFrame(
        {
            "id": best.id[differ],
            "right": ["best" if x else "other" for x in a[differ]],
            "label": [names[i] for i in best.label[differ]],
            "best_prediction": [names[i] for i in best.prediction[differ]],
            "best_confidence": best.confidence[differ],
            "other_prediction": [names[i] for i in other.prediction[differ]],
            "other_confidence": other.confidence[differ],
            "text": [text.get(i, "") for i in best.id[differ]],
        }
    )
    rows["wrong_confidence"] = rows.other_confidence.where(rows.right == "best", rows.best_confidence)
    rows = rows.sort_values(["right", "wrong_confidence"], ascending=[True, False], kind="stable")
    return counts, rows.drop(columns="wrong_confidence").reset_index(drop=True)


def per_class(named_predictions: dict, names: list[str]):
    """One row per (run, class): the class's count and share of the test set, and the run's F1 on it."""
    import pandas as pd
    from sklearn.metrics import f1_score

    rows = []
    for run_name, frame in named_predictions.items():
        f1 = f1_score(frame.label, frame.prediction, labels=list(range(len(names))), average=None, zero_division=0)
        counts = frame.label.value_counts()
        for i, name in enumerate(names):
            count = int(counts.get(i, 0))
            rows.append({"run": run_name, "class": name, "count": count, "share": count / len(frame), "f1": f1[i]})
    return pd.DataFrame(rows)


def plot_per_class(classes, best_name: str):
    """F1 per class against the class's share of the test set: a line per run, the best run drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    for run_name, group in classes.groupby("run", sort=False):
        group = group.sort_values("share")
        best = run_name == best_name
        ax.plot(group.share, group.f1, "o-", lw=2.2 if best else 1, alpha=1 if best else 0.45,
                label=comparison._short(run_name, 30) + (" (best)" if best else ""))  # fmt: skip
    for _, row in classes[classes.run == best_name].iterrows():
        ax.annotate(row["class"], (row.share, row.f1), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("class share of the test set")
    ax.set_ylabel("F1 of the class")
    ax.set_ylim(0, 1.05)
    ax.set_title("per-class F1 against class frequency")
    ax.legend(fontsize=7)
    return fig


def analyse(client, runs, frame):
    """(best run name, pair counts table, disagreements, per-class table) of the table's runs (best first)."""
    import pandas as pd

    by_id = {r.info.run_id: r for r in runs}
    done = frame[frame.status == "FINISHED"]
    loaded = {i: predictions(client, by_id[i]) for i in done.run_id}
    order = [i for i in done[done.kind != "baseline"].run_id if loaded[i] is not None]
    order += [i for i in done[done.kind == "baseline"].run_id if loaded[i] is not None]  # the baseline last
    if not order:
        sys.exit("sentlab.compare --errors: no finished run with test predictions (test_predictions.csv)")
    best_id, name = order[0], {i: by_id[i].info.run_name for i in order}
    names = by_id[best_id].data.params.get("dataset.label_names", "").split(",")
    text = texts(client, [by_id[i] for i in order])
    counts, examples = [], []
    for other_id in order[1:]:
        count, rows = pair(loaded[best_id], loaded[other_id], names, text)
        counts.append({"best": name[best_id], "other": name[other_id], **count})
        examples.append(rows.assign(other=name[other_id]))
    classes = per_class({name[i]: loaded[i] for i in order}, names)
    disagreements = pd.concat(examples, ignore_index=True) if examples else pd.DataFrame()
    return name[best_id], pd.DataFrame(counts), disagreements, classes


def show(best: str, counts, disagreements, classes, metric: str) -> None:
    """The pair counts with a few examples each way, and the per-class table (a column per run)."""
    print(f"errors: the best run {comparison._short(best)} (by {metric}) against {len(counts)} other runs")
    for _, row in counts.iterrows():
        if isinstance(row.get("note"), str):
            print(f"  {comparison._short(row.other)}: not compared ({row.note})")
            continue
        n = {k: int(row[k]) for k in ("examples", "both_right", "only_best_right", "only_other_right", "both_wrong")}
        print(
            f"  {comparison._short(row.other)}: {n['examples']} test examples: both right {n['both_right']}, only "
            f"best right {n['only_best_right']}, only this run right {n['only_other_right']}, both wrong "
            f"{n['both_wrong']}"
        )
        mine = disagreements[disagreements.other == row.other] if len(disagreements) else disagreements
        for who, wrong in (("best", "other"), ("other", "best")):
            for _, ex in mine[mine.right == who].head(SHOWN).iterrows():
                print(
                    f"    only {'best' if who == 'best' else 'this run'} right: [{ex.id}] {ex.label}, the "
                    f"{'other' if wrong == 'other' else 'best'} says {ex[f'{wrong}_prediction']} "
                    f"({ex[f'{wrong}_confidence']:.2f}): {comparison._short(str(ex.text), 70)!r}"
                )
    wide = classes.pivot_table(index=["class", "count", "share"], columns="run", values="f1", sort=False)
    wide = wide[list(dict.fromkeys(classes.run))]  # the best run's column first
    wide.columns = [comparison._short(c, 24) for c in wide.columns]
    print("per-class F1 against the class's count and share of the test set:")
    print(wide.reset_index().to_string(index=False, float_format="{:.3f}".format))


def report(client, runs_dir, sweep=None, experiment=None, experiment_name="sentlab", metric=None, out=None,
           log: bool = True) -> None:  # fmt: skip
    """compare --errors: the best run against each other one, example by example, and F1 per class; printed,
    saved in `out` (default RUNS/compare/<sweep or experiment>/errors) and logged to a sweep's parent run."""
    import matplotlib.pyplot as plt

    runs, kinds, parent = comparison.collect(client, sweep, experiment, experiment_name)
    if not runs:
        sys.exit("sentlab.compare: no runs to compare")
    select = next((r.data.params["train.select_metric"] for r in runs if "train.select_metric" in r.data.params), "")
    metric = metric or f"val_{select or 'f1_macro'}"
    frame, _ = comparison.table(runs, kinds, metric)
    best, counts, disagreements, classes = analyse(client, runs, frame)

    out = Path(out) if out else Path(runs_dir) / "compare" / (parent.info.run_id if parent else experiment) / "errors"
    out.mkdir(parents=True, exist_ok=True)
    counts.to_csv(out / FILES[0], index=False)
    disagreements.to_csv(out / FILES[1], index=False)
    classes.to_csv(out / FILES[2], index=False)
    figure = plot_per_class(classes, best)
    figure.savefig(out / FILES[3], dpi=110)
    plt.close(figure)
    show(best, counts, disagreements, classes, metric)
    print(f"saved {', '.join(FILES)} in {out}")
    if parent and log:
        for name in FILES:
            client.log_artifact(parent.info.run_id, str(out / name), "compare/errors")
        print(f"logged to the parent run {parent.info.run_id} under compare/errors/")
