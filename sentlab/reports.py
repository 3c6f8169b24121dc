"""What a run logs about its results on a split, beside the metrics: the confusion matrix (JSON and PNG), the
per-example predictions that compare's paired test reads, the misclassified examples, and the reliability diagrams
of its probabilities. A training run and an evaluation run log alike."""

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


ERRORS = "test_errors.json"  # the misclassified test examples, an MLflow table (`mlflow.load_table`)


def errors_table(evaluation, texts: list[str], label_names: list[str]):
    """The misclassified examples of `evaluation` as a DataFrame, most confident first: id (the row in the split,
    as in test_predictions.csv), text, label, prediction, a probability per label, confidence (the prediction's)."""
    import numpy as np
    import pandas as pd

    probs = np.exp(evaluation.log_probs.astype(np.float64))
    names = np.asarray(label_names, dtype=object)
    frame = pd.DataFrame(
        {
            "id": np.arange(len(evaluation.labels)),
            "text": list(texts),
            "label": names[evaluation.labels],
            "prediction": names[evaluation.preds],
        }
    )
    for i, name in enumerate(label_names):
        frame[f"prob_{name}"] = probs[:, i].round(6)
    frame["confidence"] = probs.max(axis=1).round(6)
    wrong = frame[evaluation.preds != evaluation.labels]
    return wrong.sort_values("confidence", ascending=False, kind="stable").reset_index(drop=True)


def log_errors(run, evaluation, texts: list[str], label_names: list[str]) -> None:
    """The misclassified test examples (errors_table) as the MLflow table test_errors.json."""
    run.log_table(errors_table(evaluation, texts, label_names), ERRORS)
