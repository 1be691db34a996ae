"""Domain classifier test: can a classifier tell reference rows from sample rows?

Out-of-fold predicted probabilities (k-fold) score every row once by a model that did not see it.
Their AUC for "is from the sample" is the distance; the p-value is the one-sided Mann-Whitney U test
that the AUC exceeds 0.5 (AUC = U / (n m)), so no distributional assumption about the data is needed.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu


def domain_classifier_test(reference: np.ndarray, sample: np.ndarray, n_folds: int = 5, seed: int = 0,
                           make_model=None) -> tuple[float, float]:
    """(held-out AUC, p-value)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold

    x = np.concatenate([reference, sample]).reshape(len(reference) + len(sample), -1)
    y = np.concatenate([np.zeros(len(reference)), np.ones(len(sample))])
    scores = np.zeros(len(x))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, test in folds.split(x, y):
        model = make_model() if make_model else HistGradientBoostingClassifier(max_iter=100, random_state=seed)
        model.fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
    result = mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater")
    auc = float(result.statistic / ((y == 1).sum() * (y == 0).sum()))
    return auc, float(result.pvalue)
