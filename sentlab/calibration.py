"""Does a probability of 0.9 mean 90 %? Expected calibration error, reliability diagrams, and temperature scaling.

ECE (Guo et al. 2017): the predictions are put in BINS equal-width bins of their top-class probability (the
confidence); ECE = sum over bins of (rows in the bin / all rows) * |accuracy in the bin - mean confidence in it|.

Temperature scaling (train.calibration=temperature): one T > 0 fitted on the validation split after training,
minimising the negative log-likelihood of softmax(logits / T); it never changes a prediction, only how sure it
is. Log-probabilities stand in for logits (log_softmax(z) is z shifted per row, and softmax ignores shifts), so
the generative head's label-word scores are scaled the same way. The fitted T is saved beside the adapter as
calibration.json and applied wherever a run's model predicts (sentlab.classifier).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BINS = 15  # equal-width bins of the top-class probability over [0, 1]
FILE = "calibration.json"  # beside the adapter (or in a merged or exported folder): {"temperature": T, ...}
T_RANGE = (0.05, 20.0)  # the temperatures a fit may choose from


def _probs(log_probs) -> np.ndarray:
    return np.exp(np.asarray(log_probs, dtype=np.float64))


def reliability(probs, labels, bins: int = BINS) -> list[dict]:
    """Per non-empty bin of confidence: its range, rows, mean confidence and accuracy."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    # bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 goes to the first
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        chosen = index == i
        if chosen.any():
            rows.append(
                {
                    "low": i / bins,
                    "high": (i + 1) / bins,
                    "count": int(chosen.sum()),
                    "confidence": float(confidence[chosen].mean()),
                    "accuracy": float(correct[chosen].mean()),
                }
            )
    return rows


def ece(probs, labels, bins: int = BINS) -> float:
    """Expected calibration error of probabilities [n, n_labels] against labels [n], in `bins` equal-width bins."""
    rows = reliability(probs, labels, bins)
    total = sum(r["count"] for r in rows)
    return float(sum(r["count"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows)) if total else 0.0


def nll(log_probs, labels) -> float:
    """Mean negative log-likelihood of the true labels."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    return float(-log_probs[np.arange(len(labels)), np.asarray(labels)].mean())


def scale(log_probs, temperature: float) -> np.ndarray:
    """log softmax(log_probs / T): the log-probabilities at temperature T (T = 1 returns them unchanged)."""
    log_probs = np.asarray(log_probs)
    if temperature == 1.0:
        return log_probs
    z = log_probs.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(log_probs.dtype)


def fit_temperature(log_probs, labels) -> float:
    """The T in T_RANGE that minimises the NLL of scale(log_probs, T) (a bounded search on log T; the NLL is convex
    in 1/T)."""
    from scipy.optimize import minimize_scalar

    log_probs = np.asarray(log_probs, dtype=np.float64)
    found = minimize_scalar(
        lambda log_t: nll(scale(log_probs, float(np.exp(log_t))), labels),
        bounds=tuple(np.log(T_RANGE)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(found.x))


def summary(log_probs, labels) -> dict[str, float]:
    """ece and nll of log-probabilities against labels."""
    return {"ece": ece(_probs(log_probs), labels), "nll": nll(log_probs, labels)}


def save(folder, temperature: float, **details) -> None:
    """calibration.json in `folder`: the temperature (and what it was fitted on)."""
    info = {"method": "temperature", "temperature": temperature, **details}
    info["use"] = "divide the logits (or label log-probabilities) by temperature before the softmax"
    (Path(folder) / FILE).write_text(json.dumps(info, indent=1))


def load_temperature(folder) -> float:
    """The temperature saved in `folder` (calibration.json), or 1.0 when there is none."""
    file = Path(folder) / FILE if folder is not None else None
    if file is None or not file.is_file():
        return 1.0
    return float(json.loads(file.read_text())["temperature"])


def plot_reliability(curves: dict[str, tuple], title: str):
    """A reliability diagram: accuracy against mean confidence per bin, one line per {name: (probs, labels)},
    the diagonal as perfect calibration, each line labelled with its ECE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.4), layout="constrained")
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="perfectly calibrated")
    for name, (probs, labels) in curves.items():
        rows = reliability(probs, labels)
        ax.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            "o-",
            label=f"{name} (ECE {ece(probs, labels):.3f})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"confidence (top-class probability, {BINS} bins)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    return fig
