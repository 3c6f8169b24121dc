"""Test a trained run on another data set (a cross-domain check), logged as an MLflow run of its own.

    python -m sentlab.evaluate RUN_ID data=rotten_tomatoes data.dir=../shared/data/rotten_tomatoes
    python -m sentlab.evaluate models:/reviews@champion data=sst2 data.dir=../shared/data/sst2 data.max_samples.test=500
    python -m sentlab.evaluate RUN_ID data=csv data.dir=my_reviews label_map.pos=positive label_map.neg=negative

The data is composed as for training (`data=<group>` and `data.*` keys) and its test split is classified by the
run's model. The data's label names must be labels of the run (by name), or be mapped onto them with
`label_map.<data label>=<run label>`; else a one-line error. The evaluation is logged in the source run's
experiment, tagged `sentlab.source_run_id`: test_* metrics (macro averages over the run's labels), the
confusion matrix, the test split as its dataset. `python -m sentlab.compare --experiment sentlab` lists it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

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
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from sentlab.data import check_data_config
    from sentlab.train import CONF_DIR

    for override in overrides:
        if not override.startswith(("data=", "data.")):
            raise ConfigError(
                f"{override}: an evaluation takes data=<group>, data.<key>=... and label_map.<label>=... overrides only"
            )
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    except HydraException as err:
        raise ConfigError(f"{' '.join(overrides)}: {str(err).splitlines()[0]}") from None
    check_data_config(cfg.data)
    return cfg


def evaluate(ref: str, cfg, label_map: dict[str, str]) -> str:
    """Classify the data's test split with the model, log the evaluation run; its id."""
    from mlflow.models import Model
    from omegaconf import OmegaConf

    from sentlab import mlflow_model, tracking
    from sentlab.data import load_data
    from sentlab.pipeline import _log_confusion

    mlflow = tracking.mlflow
    with tempfile.TemporaryDirectory() as tmp:
        paths = mlflow_model.download(ref, tmp)
        run_cfg = OmegaConf.load(paths["config"])
        source_id = Model.load(Path(paths["config"]).parents[1]).run_id
        mapping = label_mapping(list(cfg.data.label_names), list(run_cfg.data.label_names), label_map)
        data = load_data(cfg.data)
        classifier = mlflow_model.from_artifacts(paths)
    test = data.splits["test"]
    evaluation = classifier.evaluate(test["text"], [mapping[y] for y in test["label"]])
    metrics = evaluation.metrics(classifier.label_names)

    source = mlflow.get_run(source_id)
    tags = {
        "sentlab.source_run_id": source_id,
        "sentlab.evaluate": ref,
        "sentlab.data": data.name,
        "sentlab.backbone": source.data.tags.get("sentlab.backbone", ""),
        "sentlab.head": source.data.tags.get("sentlab.head", ""),
    }
    name = f"evaluate {source.info.run_name} on {data.name}"
    with mlflow.start_run(experiment_id=source.info.experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_params(
            {
                "source_run_id": source_id,
                "model": ref,
                **{f"label_map.{k}": v for k, v in label_map.items()},
                **{f"data.{k}": v for k, v in tracking.flat_params(cfg.data).items()},
                "dataset.test_size": len(test),
            }
        )
        mlflow_model.log_inputs(cfg, data, splits=("test",))
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        _log_confusion(evaluation, classifier.label_names)
    print(f"{name}: " + "  ".join(f"test_{k}={metrics[k]:.4f}" for k in ("accuracy", "f1_macro", "recall_macro")))
    print(f"MLflow run {run.info.run_id} (tag sentlab.source_run_id={source_id})")
    return run.info.run_id


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sentlab.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("model", metavar="MODEL", help="a run id, runs:/RUN_ID/model or models:/NAME@ALIAS")
    p.add_argument("overrides", nargs="*", help="data=<group>, data.<key>=..., label_map.<data label>=<run label>")
    p.add_argument("--tracking-uri", default="sqlite:///runs/mlflow.db", help="the MLflow store (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        pairs = [o.split("=", 1) for o in args.overrides if o.startswith("label_map.")]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigError("label_map: write label_map.<data label>=<run label>, e.g. label_map.pos=positive")
        label_map = {key.removeprefix("label_map."): value for key, value in pairs}
        cfg = compose_data([o for o in args.overrides if not o.startswith("label_map.")])
        from sentlab import mlflow_model

        mlflow_model.use_store(args.tracking_uri)
        evaluate(args.model, cfg, label_map)
    except ConfigError as err:
        print(f"sentlab.evaluate: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from sentlab import console

    console.run_cli(main)
