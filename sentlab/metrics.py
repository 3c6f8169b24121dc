"""Classification metrics: accuracy, precision/recall/F1 (macro and per class), confusion matrix."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def classification_metrics(labels, preds, label_names: list[str]) -> dict[str, float]:
    """Flat dict of scalar metrics, e.g. accuracy, f1_macro, recall_macro, f1_positive."""
    ids = list(range(len(label_names)))
    metrics = {"accuracy": float(accuracy_score(labels, preds))}
    p, r, f, _ = precision_recall_fscore_support(labels, preds, labels=ids, average="macro", zero_division=0)
    metrics.update(precision_macro=float(p), recall_macro=float(r), f1_macro=float(f))
    p, r, f, support = precision_recall_fscore_support(labels, preds, labels=ids, average=None, zero_division=0)
    for i, name in enumerate(label_names):
        metrics.update({f"precision_{name}": float(p[i]), f"recall_{name}": float(r[i]), f"f1_{name}": float(f[i])})
    return metrics


def metrics_table(metrics: dict[str, float], label_names: list[str]) -> str:
    """The headline metrics and a precision / recall / F1 row per class, as text for the console."""
    lines = [
        "  " + "  ".join(f"{k} {metrics[k]:.4f}" for k in ("accuracy", "f1_macro", "recall_macro")),
        f"  {'':<{width(label_names)}}  precision  recall      f1",
    ]
    for name in label_names:
        lines.append(
            f"  {name:<{width(label_names)}}  {metrics[f'precision_{name}']:9.4f}  "
            f"{metrics[f'recall_{name}']:6.4f}  {metrics[f'f1_{name}']:6.4f}"
        )
    return "\n".join(lines)


def width(names) -> int:
    return max(map(len, names))


def confusion(labels, preds, label_names: list[str]) -> np.ndarray:
    """Rows are true labels, columns predictions, in label_names order."""
    return confusion_matrix(labels, preds, labels=list(range(len(label_names))))


def plot_confusion(matrix: np.ndarray, label_names: list[str], title: str):
    """A matplotlib figure of the confusion matrix, counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(label_names) + 2, 1.2 * len(label_names) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(label_names)), label_names, rotation=30, ha="right")
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = matrix.max() or 1
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    fig.tight_layout()
    return fig


def prediction_frame(probs, label_names: list[str]):
    """A DataFrame of [n, n_labels] probabilities: label, its probability, and prob_<label> for every label."""
    import pandas as pd

    best = probs.argmax(axis=1)
    frame = pd.DataFrame({"label": [label_names[i] for i in best], "probability": probs[np.arange(len(best)), best]})
    for i, name in enumerate(label_names):
        frame[f"prob_{name}"] = probs[:, i]
    return frame
