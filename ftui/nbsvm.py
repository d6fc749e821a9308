"""NBSVM-style baseline (Wang & Manning 2012, as logistic regression): binary word 1-2-gram features scaled by each
class's naive-Bayes log-count ratio, one-vs-rest; sklearn-compatible so a Pipeline saves, loads and scores it."""

from __future__ import annotations

from typing import Any

import numpy as np

ALPHA = 1.0  # additive smoothing of the per-class feature counts


def nb_vectorizer() -> Any:
    """Word 1-2-grams present/absent: NB log-count ratios are computed over binarized counts."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(ngram_range=(1, 2), binary=True, min_df=1)


def log_count_ratio(x: Any, positive: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """r = log((p/|p|₁) / (q/|q|₁)), p and q the smoothed feature counts of the positive and the other rows."""
    p = alpha + np.asarray(x[positive].sum(0)).ravel()
    q = alpha + np.asarray(x[~positive].sum(0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


class NBLogistic:
    """One binary logistic regression per class on x ∘ r_class; probabilities are the per-class scores normalised."""

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        self.c, self.seed = c, seed

    def fit(self, x: Any, y: np.ndarray) -> NBLogistic:
        """Fit r and a classifier per class seen in y (two classes: one ratio, one classifier, as in the paper)."""
        from scipy import sparse
        from sklearn.linear_model import LogisticRegression

        self.classes_ = np.unique(y)
        targets = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        self.ratios_, self.models_ = [], []
        for k in targets:
            pos = np.asarray(y == k)
            r = log_count_ratio(x, pos)
            clf = LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed)
            self.ratios_.append(r)
            self.models_.append(clf.fit(sparse.csr_matrix(x).multiply(r).tocsr(), pos.astype(int)))
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        """(rows, classes_) probabilities, rows summing to 1."""
        from scipy import sparse

        x = sparse.csr_matrix(x)
        pos = np.stack([m.predict_proba(x.multiply(r).tocsr())[:, 1] for m, r in zip(self.models_, self.ratios_, strict=True)], 1)
        if len(self.classes_) == 2:
            return np.concatenate([1 - pos, pos], 1)
        return pos / np.clip(pos.sum(1, keepdims=True), 1e-12, None)

    def predict(self, x: Any) -> np.ndarray:
        """The most probable class of each row."""
        return self.classes_[self.predict_proba(x).argmax(1)]
