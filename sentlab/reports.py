"""What a run logs about its results on a split, beside the metrics: the confusion matrix (JSON and PNG), the
per-example predictions that compare's paired test reads, and the reliability diagrams of its probabilities. A
training run and an evaluation run log alike."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sentlab import calibration
from sentlab.metrics import confusion, plot_confusion


def log_confusion(run, evaluation, label_names: list[str]) -> None:
    """The test confusion matrix of `evaluation` (sentlab.training.Evaluation) as confusion_matrix.json and .png."""
    matrix = confusion(evaluation.labels, evaluation.preds, label_names)
    run.log_dict({"labels": list(label_names), "matrix": matrix.tolist()}, "confusion_matrix.json")
    run.log_figure(plot_confusion(matrix, label_names, "test confusion matrix"), "confusion_matrix.png")


def log_predictions(run, evaluation, label_names: list[str], path: str = "test_predictions.csv") -> None:
    """Per-example predictions (row id, label, prediction, a probability per label): what compare's paired test
    between runs reads."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(
        {"id": np.arange(len(evaluation.labels)), "label": evaluation.labels, "prediction": evaluation.preds}
    )
    for i, name in enumerate(label_names):
        frame[f"prob_{name}"] = np.exp(evaluation.log_probs[:, i]).round(6)
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / path
        frame.to_csv(file, index=False)
        run.log_artifact(str(file))


def log_reliability(run, evaluations: dict, before: dict | None = None) -> None:
    """reliability_<split>.png per {split: Evaluation}: accuracy against confidence in calibration.BINS bins; with
    `before` ({split: (log_probs, labels)} before temperature scaling) both curves in one picture."""
    import numpy as np

    for split, evaluation in evaluations.items():
        curves = {split: (np.exp(evaluation.log_probs), evaluation.labels)}
        if before:
            log_probs, labels = before[split]
            curves = {f"{split}, uncalibrated": (np.exp(log_probs), labels), f"{split}, T-scaled": curves[split]}
        run.log_figure(calibration.plot_reliability(curves, f"{split} reliability"), f"reliability_{split}.png")
