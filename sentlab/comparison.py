"""A sweep's runs compared: a table (printed and saved as CSV) and plots, logged to the sweep's parent run
(`python -m sentlab.compare` is its command line; a sweep of repeated seeds runs it when it ends).

Rows are the sweep's child runs (those that reuse a FINISHED run's results marked `reused`), and zero-shot runs
(train.epochs=0) of the same backbone and data as the `baseline`, first. Columns: the method (method=full,
head_only and lexicon rows marked `<method> baseline`: what the PEFT rows are judged against), the swept values,
trainable parameters and %, adapter size, validation and test metrics, train time, test accuracy per million
trainable parameters. Sorted by the metric (default: val_<train.select_metric>).

Runs that differ only in train.seed are repeats of one setting (`-m sweep=seeds lora.r=4,8`): a second table gives
each setting's mean ± std and 95 % interval per metric over its seeds, and a paired bootstrap on the test set's
per-example predictions says whether the best setting really beats each other one; the r and lr plots draw the
intervals as error bars.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from sentlab import effects, tags
from sentlab.stats import mean_ci, paired_bootstrap

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

METRICS = [
    "trainable_params",
    "trainable_pct",
    "adapter_size_mb",
    "val_accuracy",
    "val_f1_macro",
    "test_accuracy",
    "test_ece",  # expected calibration error (sentlab.calibration): how far to trust its probabilities
    "test_f1_macro",
    "test_recall_macro",
    "train_time_s",
]
PLOTS = ("metric_vs_r.png", "metric_vs_lr.png", "trainable_vs_metric.png", "all_runs.png")
SUMMARY = ["test_accuracy", "test_f1_macro"]  # summarized over seeds beside the sort metric
# Methods that are the baselines PEFT rows are judged against (sentlab.methods): marked `<method> baseline`.
BASELINE_METHODS = ("full", "head_only", "lexicon")
PER_PARAM = "test_accuracy_per_M_trainable"  # test accuracy per million trainable parameters


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in str(text) and "e" not in str(text).lower() else value


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _overrides(run) -> dict:
    from sentlab.tracking import is_infra

    pairs = (o.split("=", 1) for o in run.data.tags.get(tags.OVERRIDES, "").split() if "=" in o)
    return {k.lstrip("+~"): v for k, v in pairs if not is_infra(k)}


def collect(client, sweep: str | None, experiment: str | None, experiment_name: str):
    """(runs, kinds, parent): the runs to compare, {run_id: 'baseline' | 'reused' | 'pruned' | 'evaluate'}, the
    parent run or None."""
    kinds, parent = {}, None
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            sys.exit(f"sentlab.compare: no experiment {experiment!r} in {client.tracking_uri}")
        runs = [
            r
            for r in client.search_runs([exp.experiment_id], max_results=50000)
            if r.data.tags.get(tags.SWEEP) != "parent" and tags.REUSES not in r.data.tags
        ]
        exp_id = exp.experiment_id
    else:
        if sweep:
            parent = client.get_run(sweep)
        else:
            exp = client.get_experiment_by_name(experiment_name)
            found = exp and client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.`{tags.SWEEP}` = 'parent'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if not found:
                sys.exit(f"sentlab.compare: no sweep in experiment {experiment_name!r} of {client.tracking_uri}")
            parent = found[0]
        exp_id = parent.info.experiment_id
        runs = client.search_runs(
            [exp_id], filter_string=f"tags.`{tags.PARENT_RUN_ID}` = '{parent.info.run_id}'", max_results=50000
        )
        for run in runs:  # jobs answered by a FINISHED run from elsewhere: their child carries its results
            if tags.REUSES in run.data.tags:
                kinds[run.info.run_id] = "reused"
            if run.info.status == "KILLED" and tags.PRUNED in run.data.tags:  # its val_* are of its last epoch
                kinds[run.info.run_id] = "pruned"
    for run in runs:
        if run.data.params.get("train.epochs") == "0":
            kinds[run.info.run_id] = "baseline"
        if run.data.tags.get(tags.SOURCE_RUN_ID):  # a trained run tested on other data: sentlab.evaluate
            kinds[run.info.run_id] = "evaluate"
    if runs and "baseline" not in kinds.values():  # a zero-shot run of the same backbone and data, if any
        keys = {(r.data.params.get("backbone.source"), r.data.params.get("data.name")) for r in runs}
        zero = client.search_runs(
            [exp_id],
            filter_string="params.`train.epochs` = '0' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1000,
        )
        for run in zero:
            if (run.data.params.get("backbone.source"), run.data.params.get("data.name")) in keys:
                runs.insert(0, run)
                kinds[run.info.run_id] = "baseline"
                break
    return runs, kinds, parent


def table(runs, kinds: dict, metric: str):
    """One row per run: swept values, size, metrics; the baseline first, then by metric, best first."""
    import pandas as pd

    overrides = [_overrides(r) for r in runs if kinds.get(r.info.run_id) != "baseline"]
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    swept = [k for k in keys if len({o.get(k) for o in overrides}) > 1] or keys
    rows = [_row(run, kinds.get(run.info.run_id, ""), swept, metric) for run in runs]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame, swept
    frame["_baseline"] = frame["kind"] != "baseline"
    frame["_pruned"] = frame["kind"] == "pruned"  # after the runs that trained to the end
    frame = frame.sort_values(
        ["_baseline", "_pruned", metric], ascending=[True, True, False], na_position="last", kind="stable"
    )
    return frame.drop(columns=["_baseline", "_pruned"]).reset_index(drop=True), swept


def _row(run, kind: str, swept: list[str], metric: str) -> dict:
    """A run's row: its method (a baseline method marked in `kind`), swept values, metrics, accuracy per
    trainable parameter."""
    params, metrics = run.data.params, run.data.metrics
    method = params.get("method.name", "lora")  # runs from before the method group trained LoRA
    if not kind and method in BASELINE_METHODS:
        kind = f"{method} baseline"
    row = {"run": run.info.run_name, "status": run.info.status, "kind": kind, "method": method}
    row.update({k: _number(params.get(k, _overrides(run).get(k))) for k in swept if k != "method"})
    row.update({k: metrics.get(k) for k in dict.fromkeys([metric, *METRICS])})
    accuracy, trainable = metrics.get("test_accuracy"), metrics.get("trainable_params")
    row[PER_PARAM] = accuracy / trainable * 1e6 if accuracy is not None and trainable else None
    row["run_id"] = run.info.run_id
    return row


def plots(frame, runs, metric: str, out: Path) -> list[Path]:
    """Metric against r and against lr, trainable % against the metric, and every run in one picture; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_id = {r.info.run_id: r.data.params for r in runs}
    frame = frame.assign(
        r=[_number(by_id[i].get("lora.r")) for i in frame.run_id],
        lr=[_number(by_id[i].get("train.lr")) for i in frame.run_id],
    )
    done = frame[(frame.status == "FINISHED") & frame[metric].notna()]
    trained, base = done[done.kind != "baseline"], done[done.kind == "baseline"]
    figures = {
        "metric_vs_r.png": _against(trained, base, metric, "r", "lr", 2),
        "metric_vs_lr.png": _against(trained, base, metric, "lr", "r", 10),
        "trainable_vs_metric.png": _trainable(trained, base, metric),
        "all_runs.png": _all_runs(frame, metric),
    }
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
    return [out / name for name in figures]


def _baseline(ax, base, metric: str) -> None:
    """The zero-shot runs as dashed lines."""
    for _, row in base.iterrows():
        ax.axhline(row[metric], color="gray", ls="--", lw=1, label=f"zero-shot ({_short(row['run'], 30)})")


def _against(trained, base, metric: str, x: str, other: str, log: int):
    """The metric against lora.r or train.lr, a line per value of the other: the mean over seeds at each x, with
    its 95 % interval as an error bar (none for a single run)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for value, group in trained.groupby(other, dropna=False):
        points = [(at, mean_ci(runs_at[metric])) for at, runs_at in group.groupby(x)]
        ax.errorbar(
            [at for at, _ in points],
            [p["mean"] for _, p in points],
            yerr=[0 if p["n"] < 2 else p["high"] - p["mean"] for _, p in points],
            fmt="o-",
            capsize=3,
            label=f"{'lora.r' if other == 'r' else 'train.lr'}={value}",
        )
    _baseline(ax, base, metric)
    if len(trained) and all(isinstance(v, (int, float)) and v > 0 for v in trained[x]):
        ax.set_xscale("log", base=log)
    ax.set_xlabel("lora.r" if x == "r" else "train.lr")
    repeated = len(trained) and trained.groupby(["r", "lr"]).size().max() > 1
    ax.set_ylabel(f"{metric} (mean over seeds, 95% interval)" if repeated else metric)
    ax.set_title(f"{metric} against {'LoRA rank' if x == 'r' else 'learning rate'}")
    ax.legend(fontsize=7)
    return fig


def _trainable(trained, base, metric: str):
    """Quality against the trainable share, coloured by rank (and named by method when several are compared)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    points = ax.scatter(
        trained["trainable_pct"], trained[metric], c=[math.log2(v) for v in trained["r"]], cmap="viridis"
    )
    if len(trained):
        fig.colorbar(points, ax=ax, label="log2 lora.r")
    if trained["method"].nunique() > 1:  # methods side by side: each point named, shares over decades
        for _, row in trained.iterrows():
            ax.annotate(row["method"], (row["trainable_pct"], row[metric]), fontsize=7)
        ax.set_xscale("log")
    _baseline(ax, base, metric)
    ax.set_xlabel("trainable parameters (%)")
    ax.set_ylabel(metric)
    ax.set_title("quality against trainable share")
    return fig


def _all_runs(frame, metric: str):
    """Every run with the metric as a bar, baselines grey, reused orange, pruned silver."""
    import matplotlib.pyplot as plt

    shown = frame[frame[metric].notna()].iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.32 * len(shown) + 1)), layout="constrained")
    colors = [
        "gray" if k == "baseline" else "tab:orange" if k == "reused" else "silver" if k == "pruned" else "tab:blue"
        for k in shown.kind
    ]
    ax.barh(range(len(shown)), shown[metric], color=colors)
    ax.set_yticks(
        range(len(shown)), [_short(n) + (f" [{k}]" if k else "") for n, k in zip(shown.run, shown.kind)], fontsize=7
    )
    for i, value in enumerate(shown[metric]):
        ax.text(value, i, f" {value:.3f}", va="center", fontsize=7)
    failed = int(((frame.status != "FINISHED") & (frame.kind != "pruned")).sum())
    ax.set_xlabel(metric)
    ax.set_title(f"all runs by {metric}" + (f" ({failed} failed, not shown)" if failed else ""))
    return fig


def repeats(frame, runs, metric: str):
    """One row per setting whose runs differ only in train.seed: the seeds, and mean, std and 95 % interval of each
    metric over them, best mean first; None when no setting ran with more than one seed."""
    import pandas as pd

    by_id = {r.info.run_id: r for r in runs}
    done = frame[frame.status == "FINISHED"]
    key = [by_id[i].data.tags.get(tags.SETTING_HASH, i) for i in done.run_id]
    groups = list(done.groupby(key, sort=False))
    if all(len(group) < 2 for _, group in groups):
        return None
    rows = []
    for _, group in groups:
        row = {
            "setting": group.run.iloc[0],
            "kind": group.kind.iloc[0],
            "n_seeds": len(group),
            "seeds": " ".join(sorted(by_id[i].data.params.get("train.seed", "?") for i in group.run_id)),
            "run_ids": " ".join(group.run_id),
        }
        for name in dict.fromkeys([metric, *SUMMARY]):
            summary = mean_ci(group[name])
            row.update(
                {
                    f"{name}_mean": summary["mean"],
                    f"{name}_std": summary["std"],
                    f"{name}_ci_low": summary["low"],
                    f"{name}_ci_high": summary["high"],
                }
            )
        rows.append(row)
    return pd.DataFrame(rows).sort_values(f"{metric}_mean", ascending=False, na_position="last").reset_index(drop=True)


def paired_tests(client, groups, runs) -> list[dict]:
    """The best setting (first row of `groups`) against each other one: a paired bootstrap of test accuracy over
    the test examples, on the runs of both with the same seeds (so, the same test rows)."""
    import numpy as np
    import pandas as pd

    seed_of = {r.info.run_id: r.data.params.get("train.seed") for r in runs}
    source = {r.info.run_id: r.data.tags.get(tags.REUSES, r.info.run_id) for r in runs}  # who has the artifact
    correct = {}  # run id -> 0/1 per test example (by id), or None without a predictions artifact

    def right(run_id):
        if run_id not in correct:
            try:
                file = client.download_artifacts(source[run_id], "test_predictions.csv")
                predictions = pd.read_csv(file).sort_values("id")
                correct[run_id] = (predictions.label == predictions.prediction).to_numpy(dtype=float)
            except Exception:
                correct[run_id] = None
        return correct[run_id]

    best = groups.iloc[0]
    results = []
    for _, other in groups.iloc[1:].iterrows():
        mine = {seed_of[i]: i for i in best.run_ids.split()}
        theirs = {seed_of[i]: i for i in other.run_ids.split()}
        seeds = sorted(set(mine) & set(theirs))
        a = [right(mine[s]) for s in seeds]
        b = [right(theirs[s]) for s in seeds]
        row = {"best": best.setting, "other": other.setting, "seeds": len(seeds)}
        if not seeds or any(x is None for x in a + b) or len({len(x) for x in a + b}) != 1:
            results.append({**row, "note": "no shared seeds with test predictions of one test set"})
            continue
        test = paired_bootstrap(np.stack(a), np.stack(b))
        results.append(
            {
                **row,
                "examples": len(a[0]),
                "accuracy_diff": test["diff"],
                "ci_low": test["low"],
                "ci_high": test["high"],
                "p_value": test["p"],
            }
        )
    return results


def _interval(row, name: str) -> str:
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    if not math.isfinite(std):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {std:.4f} [{row[f'{name}_ci_low']:.4f}, {row[f'{name}_ci_high']:.4f}]"


def print_repeats(groups, tests, metric: str) -> None:
    names = list(dict.fromkeys([metric, *SUMMARY]))
    width = max(len(_short(s)) for s in groups.setting)
    print(f"\nrepeats over seeds: {len(groups)} settings; mean ± std [95% interval] over n seeds")
    print(f"{'setting':<{width}}  {'n':>2}  " + "  ".join(f"{n:<34}" for n in names).rstrip())
    for _, row in groups.iterrows():
        print(
            f"{_short(row.setting):<{width}}  {row.n_seeds:>2}  "
            + "  ".join(f"{_interval(row, n):<34}" for n in names).rstrip()
        )
    if tests:
        print(f"paired bootstrap on the test set: {_short(groups.setting.iloc[0])} (best by {metric}) against")
    for test in tests:
        if "note" in test:
            print(f"  {_short(test['other'])}: not tested ({test['note']})")
            continue
        p = "p<0.0001" if test["p_value"] == 0 else f"p={test['p_value']:.3g}"  # 0 of 10,000 resamples
        print(
            f"  {_short(test['other'])}: test accuracy {test['accuracy_diff']:+.4f} "
            f"(95% interval {test['ci_low']:+.4f} to {test['ci_high']:+.4f}), {p}, "
            f"{test['examples']} examples x {test['seeds']} seeds"
        )


def report(
    client,
    runs_dir: str,
    sweep=None,
    experiment=None,
    experiment_name="sentlab",
    metric=None,
    out=None,
    log: bool = True,
) -> None:
    """Compare a sweep's runs (the parent run id `sweep`, default: the latest sweep of experiment_name) or every
    run of `experiment`: print the tables, save them and the plots in `out` (default: RUNS/compare/<sweep or
    experiment>) and, for a sweep, log them to its parent run. SystemExit with a message when there is nothing."""
    import pandas as pd

    runs, kinds, parent = collect(client, sweep, experiment, experiment_name)
    if not runs:
        sys.exit("sentlab.compare: no runs to compare")
    select = next(
        (r.data.params.get("train.select_metric") for r in runs if r.data.params.get("train.select_metric")), "f1_macro"
    )
    metric = metric or f"val_{select}"
    frame, swept = table(runs, kinds, metric)

    out = Path(out) if out else Path(runs_dir) / "compare" / (parent.info.run_id if parent else experiment)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "compare.csv"
    frame.to_csv(csv, index=False)
    paths = plots(frame, runs, metric, out)
    groups = repeats(frame, runs, metric)
    tests = []
    if groups is not None:
        tests = paired_tests(client, groups, runs)
        groups.to_csv(out / "repeats.csv", index=False)
        pd.DataFrame(tests).to_csv(out / "paired_tests.csv", index=False)
        paths += [out / "repeats.csv", out / "paired_tests.csv"]

    title = f"sweep {parent.info.run_name} ({parent.info.run_id})" if parent else f"experiment {experiment}"
    print(f"{title}: {len(frame)} runs, sorted by {metric}; swept: {', '.join(swept) or '-'}")
    shown = frame.drop(columns="run_id").assign(run=frame.run.map(_short))
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200,
                           "display.float_format", "{:.4g}".format):  # fmt: skip
        print(shown.to_string(index=False))
    if groups is not None:
        print_repeats(groups, tests, metric)
    paths += effects.report(client, frame, runs, swept, metric, out)  # what mattered: effects, importances, plot
    print(f"saved {csv} and {len(paths)} more files in {out}")
    if parent and log:
        for path in [csv, *paths]:
            client.log_artifact(parent.info.run_id, str(path), "compare")
        print(f"logged to the parent run {parent.info.run_id} under compare/")
