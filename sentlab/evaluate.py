"""Test a trained run on another data set (a cross-domain check), logged as an MLflow run of its own.

    python -m sentlab.evaluate RUN_ID data=rotten_tomatoes data.dir=../shared/data/rotten_tomatoes
    python -m sentlab.evaluate models:/reviews@champion data=sst2 data.dir=../shared/data/sst2 data.max_samples.test=500
    python -m sentlab.evaluate RUN_ID data=csv data.dir=my_reviews label_map.pos=positive label_map.neg=negative
    python -m sentlab.evaluate RUN_ID data=csv data.dir=held_out/tweets.csv   # a lone labelled file: its test split

The data is composed as for training (`data=<group>` and `data.*` keys) and its test split alone is read (no
train or val file needed; `data.dir` may be the lone labelled file itself) and classified by the run's model.
The data's label names must be labels of the run (by name), or be mapped onto them with
`label_map.<data label>=<run label>`; else a one-line error. The evaluation is logged in the source run's
experiment, tagged `sentlab.source_run_id`: test_* metrics (macro averages over the run's labels; test_ece
and test_nll of the probabilities at the run's temperature), the confusion matrix, the reliability diagram, the
test split as its dataset. `python -m sentlab.compare --experiment sentlab` lists it.
"""

from __future__ import annotations

import tempfile

from sentlab import cli
from sentlab.errors import ConfigError


def label_mapping(data_names: list[str], run_names: list[str], label_map: dict[str, str]) -> dict[int, int]:
    """{data label id: run label id}: by name (case-insensitive), or as label_map says."""
    lower = [n.lower() for n in run_names]
    for key in label_map:
        if key not in data_names:
            raise ConfigError(
                f"label_map.{key}: '{key}' is not a label of the data (its labels: {', '.join(data_names)})"
            )
    ids, missing = {}, []
    for i, name in enumerate(data_names):
        target = str(label_map.get(name, name)).lower()
        if target in lower:
            ids[i] = lower.index(target)
        else:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"label_map: the data's labels {', '.join(missing)} are not labels of the run ({', '.join(run_names)}); "
            f"map each onto one, e.g. label_map.{missing[0]}={run_names[0]}"
        )
    return ids


def compose_data(overrides: list[str]):
    """The data node, composed from conf/ as for training; ConfigError for other keys or a bad override."""
    from hydra.errors import HydraException

    from sentlab import config

    for override in overrides:
        if not override.startswith(("data=", "data.")):
            raise ConfigError(
                f"{override}: an evaluation takes data=<group>, data.<key>=... and label_map.<label>=... overrides only"
            )
    try:
        cfg = config.compose(overrides)
    except HydraException as err:
        raise ConfigError(f"{' '.join(overrides)}: {str(err).splitlines()[0]}") from None
    only_the_test_split(cfg.data)
    config.check_data(cfg.data, needed=("test",))
    return cfg


def only_the_test_split(data) -> None:
    """An evaluation reads the test split alone: the other splits' files are dropped from the data node (they need
    not exist), and a data.dir that is a file is that lone test file."""
    from pathlib import Path

    if data.get("dir") and Path(data.dir).expanduser().is_file():
        file = Path(data.dir).expanduser()
        data.dir, data.files = str(file.parent), {"test": file.name}
    for splits in ("files", "hub_splits"):
        if data.get(splits):
            data[splits] = {"test": data[splits].get("test")}


def evaluate(ref: str, cfg, label_map: dict[str, str], tracking_uri: str) -> str:
    """Classify the data's test split with the model, log the evaluation run; its id."""
    from sentlab import calibration, mlflow_model, reports, tags, tracking
    from sentlab.data import load_data
    from sentlab.runs import Run, Store

    with tempfile.TemporaryDirectory() as tmp:
        files = mlflow_model.fetch(ref, tmp)
        run_names = list(files.cfg.data.label_names)
        mapping = label_mapping(list(cfg.data.label_names), run_names, label_map)
        data = load_data(cfg.data, only=("test",))
        classifier = files.classifier()
    test = data.splits["test"]
    test_ids = [mapping[y] for y in test["label"]]
    evaluation = classifier.evaluate(test["text"], test_ids)
    metrics = {**evaluation.metrics(classifier.label_names), **calibration.summary(evaluation.log_probs, test_ids)}

    source = mlflow_model.mlflow.get_run(files.run_id)
    store = Store(tracking_uri, source.info.experiment_id)
    run_tags = {
        tags.SOURCE_RUN_ID: files.run_id,
        tags.EVALUATE: ref,
        tags.DATA: data.name,
        tags.BACKBONE: source.data.tags.get(tags.BACKBONE, ""),
        tags.HEAD: source.data.tags.get(tags.HEAD, ""),
    }
    run = Run.new(store, f"evaluate {source.info.run_name} on {data.name}", run_tags)
    with run.closing():
        run.log_params(
            {
                "source_run_id": files.run_id,
                "model": ref,
                **{f"label_map.{k}": v for k, v in label_map.items()},
                **{f"data.{k}": v for k, v in tracking.flat_params(cfg.data).items()},
                "dataset.test_size": len(test),
            }
        )
        mlflow_model.log_inputs(run, cfg, data, splits=("test",))
        run.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        reports.log_confusion(run, evaluation, classifier.label_names)
        reports.log_reliability(run, {"test": evaluation})
        reports.log_errors(run, evaluation, test["text"], classifier.label_names)
    print(f"{run.name}: " + "  ".join(f"test_{k}={metrics[k]:.4f}" for k in ("accuracy", "f1_macro", "recall_macro")))
    print(f"MLflow run {run.id} (tag {tags.SOURCE_RUN_ID}={files.run_id})")
    return run.id


@cli.entry_point("sentlab.evaluate")
def main(argv=None) -> int:
    p = cli.parser("sentlab.evaluate", __doc__)
    p.add_argument("overrides", nargs="*", help="data=<group>, data.<key>=..., label_map.<data label>=<run label>")
    args = p.parse_args(argv)
    pairs = [o.split("=", 1) for o in args.overrides if o.startswith("label_map.")]
    if any(len(pair) != 2 for pair in pairs):
        raise ConfigError("label_map: write label_map.<data label>=<run label>, e.g. label_map.pos=positive")
    label_map = {key.removeprefix("label_map."): value for key, value in pairs}
    cfg = compose_data([o for o in args.overrides if not o.startswith("label_map.")])
    from sentlab import mlflow_model

    mlflow_model.use_store(args.tracking_uri)
    evaluate(args.model, cfg, label_map, args.tracking_uri)
    return 0


if __name__ == "__main__":
    cli.run(main)
