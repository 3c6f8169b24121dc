"""Compare the runs of a sweep: a table (printed and saved as CSV) and plots, logged to the sweep's parent run.

    python -m sentlab.compare                              # the latest sweep in runs/mlflow.db
    python -m sentlab.compare --sweep PARENT_RUN_ID        # a given sweep
    python -m sentlab.compare --experiment sentlab         # every run of an experiment
    python -m sentlab.compare --store http://127.0.0.1:5000 --metric test_accuracy

Rows are the sweep's child runs (those that reuse a FINISHED run's results marked `reused`), and zero-shot runs
(train.epochs=0) of the same backbone and data as the `baseline`, first. Columns: the swept values, trainable %,
adapter size, validation and test metrics, train time. Sorted by --metric (default: val_<train.select_metric>).

Runs that differ only in train.seed are repeats of one setting (`-m sweep=seeds lora.r=4,8`): a second table gives
each setting's mean ± std and 95 % interval per metric over its seeds, and a paired bootstrap on the test set's
per-example predictions says whether the best setting really beats each other one; the r and lr plots draw the
intervals as error bars.

    python -m sentlab.compare --errors                     # the best run against each other run, example by example

`--errors`: how many test examples the best run gets right and another wrong (and the other way round), with
the examples (aligned by row of test_predictions.csv, texts from each run's test_errors.json), and every run's
F1 per class against the class's share of the test set (a table and a plot), logged under compare/errors/.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m sentlab.compare", description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--runs-dir", default="runs", help="the project's runs folder (store: RUNS/mlflow.db)")
    where.add_argument("--store", help="an MLflow tracking URI instead: sqlite:///path/mlflow.db or http://host:port")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--sweep", metavar="RUN_ID", help="the sweep's parent run id (default: the latest sweep)")
    what.add_argument("--experiment", metavar="NAME", help="compare every run of this experiment instead")
    p.add_argument("--experiment-name", default="sentlab", help="where to look for the latest sweep")
    p.add_argument("--metric", help="sort and plot by this metric (default: val_<train.select_metric>)")
    p.add_argument("--out", help="folder for the CSV and PNGs (default: RUNS/compare/<sweep or experiment>)")
    p.add_argument("--no-log", action="store_true", help="do not log the table and plots to the parent run")
    p.add_argument(
        "--errors",
        action="store_true",
        help="instead: the best run against each other one, example by example, and F1 per class (in OUT/errors)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import mlflow

    from sentlab import comparison

    uri = args.store or f"sqlite:///{Path(args.runs_dir).resolve()}/mlflow.db"
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        sys.exit(f"sentlab.compare: no MLflow store at {uri} (run a sweep first, or pass --store / --runs-dir)")
    client = mlflow.MlflowClient(tracking_uri=uri)
    if args.errors:
        from sentlab import error_analysis

        error_analysis.report(client, args.runs_dir, args.sweep, args.experiment, args.experiment_name, args.metric,
                              args.out, log=not args.no_log)  # fmt: skip
        return 0
    comparison.report(client, args.runs_dir, args.sweep, args.experiment, args.experiment_name, args.metric,
                      args.out, log=not args.no_log)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
