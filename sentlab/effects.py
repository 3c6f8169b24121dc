"""What mattered in a sweep (part of what `python -m sentlab.compare` prints, saves and logs to the parent run):

- each swept key's effect: for every override key that takes more than one value among the sweep's scored runs
  (trained to the end, not the zero-shot baseline), the mean of the metric over the runs with each value and its
  95 % t-interval (effects.csv); a numeric key with many values (an Optuna interval) is cut into quartiles;
- for an Optuna study (runs tagged sentlab.trial), Optuna's parameter importances with the evaluator named
  (importances.csv);
- a parallel-coordinates plot of the swept keys against the metric (parallel_coordinates.png).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from sentlab import tags
from sentlab.stats import mean_ci

EFFECTS_CSV = "effects.csv"
IMPORTANCES_CSV = "importances.csv"
PARALLEL_PNG = "parallel_coordinates.png"
MAX_LEVELS = 6  # a numeric key with more distinct values among the runs is cut into quartiles


def scored(frame, metric: str):
    """The runs that count for effects: finished (or reused), not the baseline, with the metric."""
    return frame[(frame.status == "FINISHED") & (frame.kind != "baseline") & frame[metric].notna()]


def _numeric(values) -> bool:
    number = (int, float, np.integer, np.floating)
    return all(isinstance(v, number) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _levels(values) -> tuple[list, list]:
    """(the level of each run, the levels in order): the values themselves, or quartile ranges of a numeric key
    with more than MAX_LEVELS values."""
    import pandas as pd

    if _numeric(values) and values.nunique() > MAX_LEVELS:
        bins = pd.qcut(values.astype(float), 4, duplicates="drop")
        label = {b: f"{b.left:.3g}..{b.right:.3g}" for b in bins.cat.categories}
        return [label[b] for b in bins], list(label.values())
    order = sorted(set(values), key=lambda v: (0, v, "") if _numeric([v]) else (1, 0, str(v)))
    return list(values), order


def effects(frame, swept: list[str], metric: str):
    """One row per (swept key, value): the runs with that value, the metric's mean over them and its 95 %
    t-interval (NaN for one run); `spread` is the key's largest minus smallest mean. Keys that move the metric
    most come first. An empty frame when no key takes two values among the scored runs."""
    import pandas as pd

    done = scored(frame, metric)
    rows = []
    for key in swept:
        if key not in done or done[key].nunique(dropna=False) < 2:
            continue
        levels, order = _levels(done[key])
        key_rows = []
        for level in order:
            summary = mean_ci(done[metric][[x == level for x in levels]])
            key_rows.append(
                {"key": key, "value": str(level), "runs": summary["n"], "metric": metric}
                | {"mean": summary["mean"], "ci_low": summary["low"], "ci_high": summary["high"]}
            )
        means = [r["mean"] for r in key_rows]
        rows += [{**r, "spread": max(means) - min(means)} for r in key_rows]
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    rank = table.groupby("key", sort=False)["spread"].transform("first")
    return table.assign(_rank=rank).sort_values("_rank", ascending=False, kind="stable").drop(columns="_rank")


def print_effects(table, metric: str) -> None:
    print(f"\nwhat mattered: {metric} by swept value, mean [95% interval] over the runs with that value")
    width = max(len(str(k)) for k in table.key)
    shown = None
    for _, row in table.iterrows():
        interval = f"[{row.ci_low:.4f}, {row.ci_high:.4f}]" if math.isfinite(row.ci_low) else "(one run)"
        first = row.key != shown
        key = f"{row.key:<{width}}" if first else " " * width
        spread = f"  spread {row.spread:.4f}" if first else ""
        print(f"  {key}  {_shown(row.value):<22} {row.runs:>3} runs  {row['mean']:.4f} {interval}{spread}")
        shown = row.key


def _shown(value: str) -> str:
    """A value as printed: a long number to 4 significant digits (the CSV keeps it whole)."""
    try:
        return f"{float(value):.4g}" if len(value) > 8 else value
    except ValueError:
        return _short(value, 22)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def find_study(client, runs):
    """The Optuna study behind a sweep's trial runs (storage and name from a trial run's config.yaml), or None."""
    from omegaconf import OmegaConf

    from sentlab.study import load_optuna

    trial_runs = [r for r in runs if tags.TRIAL in r.data.tags]
    if not trial_runs:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        cfg = OmegaConf.load(client.download_artifacts(trial_runs[0].info.run_id, "config.yaml", tmp))
    return load_optuna().load_study(study_name=cfg.trial.study, storage=cfg.trial.storage)


def importances(study):
    """Optuna's parameter importances of a study (fANOVA, seeded): a frame of param, importance, evaluator, or a
    one-line reason why there are none (e.g. fewer than two complete trials, or every trial scored the same)."""
    import pandas as pd

    from sentlab.study import load_optuna

    optuna = load_optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:  # Optuna would answer equal shares: say so instead
        return f"{len(complete)} complete trial(s); importances need at least 2"
    if len({t.value for t in complete}) < 2:
        return f"all {len(complete)} complete trials scored {complete[0].value:.4g}: nothing to attribute"
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as err:
        return str(err).splitlines()[0]
    name = f"optuna.importance.{type(evaluator).__name__}(seed=0)"
    return pd.DataFrame([{"param": k, "importance": v, "evaluator": name} for k, v in values.items()])


def print_importances(study, found) -> None:
    if isinstance(found, str):
        print(f"\nOptuna parameter importances of study {study.study_name}: none ({found})")
        return
    evaluator = found.evaluator.iloc[0] if len(found) else "-"
    print(f"\nOptuna parameter importances of study {study.study_name} ({evaluator}, sum 1):")
    for _, row in found.iterrows():
        print(f"  {row.param:<30} {row.importance:.3f}")


def _axis(values):
    """A column's positions in [0, 1] and its tick labels: numbers scaled (log10 when positive and spanning 20x or
    more, e.g. a learning rate), anything else as ordered categories."""
    if _numeric(values):
        x = [float(v) for v in values]
        log = min(x) > 0 and max(x) / min(x) >= 20
        y = [math.log10(v) for v in x] if log else x
        low, high = min(y), max(y)
        pos = [0.5 if high == low else (v - low) / (high - low) for v in y]
        return pos, ({0.0: f"{min(x):.3g}", 1.0: f"{max(x):.3g}"} if high > low else {0.5: f"{x[0]:.3g}"})
    order = sorted({str(v) for v in values})
    step = 1 / max(1, len(order) - 1)
    where = {v: (i * step if len(order) > 1 else 0.5) for i, v in enumerate(order)}
    return [where[str(v)] for v in values], {p: _short(v, 16) for v, p in where.items()}


def parallel_plot(frame, keys: list[str], metric: str, path: Path) -> Path:
    """One line per scored run across the swept keys' axes and the metric's, coloured by the metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = scored(frame, metric)
    columns = [*keys, metric]
    axes = [_axis(list(done[c])) for c in columns]
    values = done[metric].astype(float)
    norm = plt.Normalize(values.min(), values.max() if values.max() > values.min() else values.min() + 1e-9)
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(columns)), 4), layout="constrained")
    for i, value in enumerate(values):
        ax.plot(range(len(columns)), [pos[i] for pos, _ in axes], color=plt.cm.viridis(norm(value)), alpha=0.8)
    for j, (_, ticks) in enumerate(axes):
        ax.axvline(j, color="gray", lw=0.8)
        for at, text in ticks.items():
            ax.text(j, at, f" {text}", fontsize=7, va="center")
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    ax.set_yticks([])
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=metric)
    ax.set_title(f"swept keys against {metric} ({len(done)} runs)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(client, frame, runs, swept: list[str], metric: str, out: Path) -> list[Path]:
    """Print the effects (and an Optuna study's importances), save them and the parallel-coordinates plot in
    `out`; the files written."""
    paths = []
    table = effects(frame, swept, metric)
    if not table.empty:
        print_effects(table, metric)
        table.to_csv(out / EFFECTS_CSV, index=False)
        keys = list(dict.fromkeys(table.key))
        paths += [out / EFFECTS_CSV, parallel_plot(frame, keys, metric, out / PARALLEL_PNG)]
    try:
        study = find_study(client, runs)
    except Exception as err:  # e.g. compared on another machine than the study's sqlite file
        print(f"\nOptuna parameter importances: the sweep's study cannot be opened ({str(err).splitlines()[0]})")
        study = None
    if study is not None:
        found = importances(study)
        print_importances(study, found)
        if not isinstance(found, str):
            found.to_csv(out / IMPORTANCES_CSV, index=False)
            paths.append(out / IMPORTANCES_CSV)
    return paths
