"""The lexicon baseline: VADER labels a text with no training and no model.

VADER (Hutto & Gilbert 2014; the vaderSentiment package, its lexicon inside) sums the valence of the words it
knows, adjusted by its rules (negation, "but", intensifiers, capitals, punctuation, emoji), into a compound
score in [-1, 1]. The label follows VADER's own convention, with threshold t = 0.05:

    three labels:  compound >= t: positive   compound <= -t: negative   in between: neutral
    two labels:    compound >= 0: positive   compound < 0: negative     (the neutral band split at 0; a text
                   with no lexicon word, compound exactly 0, is positive, as VADER's boundaries belong to
                   the polar side)

Probabilities over the data's labels (in its label order) are a softmax of `scale` times each label's margin,
-c - t for negative, 0 for neutral, c - t for positive (t = 0 with two labels), so their argmax is the label
above; they rise with the compound score but are not calibrated. The output has the shape of
sentlab.mlflow_model.Classifier.predict: label, probability, prob_<label>.
"""

from __future__ import annotations

import numpy as np

from sentlab.errors import ConfigError

POLARITIES = ("negative", "neutral", "positive")
THRESHOLD = 0.05  # VADER's own convention (its README): +-0.05 on the compound score
TIE = 1e-6  # added to a polar margin: a compound exactly on a boundary goes to the polar label, as in VADER


class Lexicon:
    """VADER as a classifier over `label_names` (negative/positive, or negative/neutral/positive, any order,
    any case)."""

    def __init__(self, label_names, threshold: float = THRESHOLD, scale: float = 5.0):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.label_names = list(label_names)
        names = [str(n).lower() for n in self.label_names]
        if sorted(names) not in (["negative", "positive"], ["negative", "neutral", "positive"]):
            raise ConfigError(
                f"data.label_names: the lexicon baseline labels negative / neutral / positive, but the data's labels "
                f"are {self.label_names}; name them so (e.g. data.label_names=[negative,positive])"
            )
        if not 0 <= threshold < 1 or scale <= 0:
            raise ConfigError(
                f"method.threshold / method.scale: need 0 <= threshold < 1 and scale > 0, got {threshold} and {scale}"
            )
        self.columns = [POLARITIES.index(n) for n in names]  # each label's polarity: 0 neg, 1 neu, 2 pos
        self.two_labels = "neutral" not in names
        self.threshold = 0.0 if self.two_labels else threshold
        self.scale = scale
        self.analyzer = SentimentIntensityAnalyzer()

    def compound(self, texts: list[str]) -> np.ndarray:
        """VADER's compound score of each text, in [-1, 1]."""
        return np.array([self.analyzer.polarity_scores(str(t))["compound"] for t in texts], dtype=np.float64)

    def log_probs(self, texts: list[str]) -> np.ndarray:
        """[n, n_labels] log-probabilities, in the order of label_names."""
        return self.log_probs_of(self.compound(texts))

    def log_probs_of(self, c: np.ndarray) -> np.ndarray:
        """log_probs from compound scores."""
        t = self.threshold
        negative_tie = 0.0 if self.two_labels else TIE  # with two labels, compound 0 is positive
        margins = np.stack([-c - t + negative_tie, np.zeros_like(c), c - t + TIE], axis=1)[:, self.columns]
        margins = margins * self.scale
        return margins - np.logaddexp.reduce(margins, axis=1, keepdims=True)

    def predict(self, texts: list[str]):
        """A DataFrame: label, probability, prob_<label> for every label; one row per text."""
        from sentlab.metrics import prediction_frame

        return prediction_frame(np.exp(self.log_probs(list(texts))), self.label_names)
