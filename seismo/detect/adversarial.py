"""Adversarial inputs, seen in the model's own representation.

`ClassMahalanobisAdversarial` is the Mahalanobis detector of Lee, Lee, Lee and Shin, "A Simple Unified
Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks" (NeurIPS 2018): fit one
Gaussian per class on the model's penultimate-layer embedding of labelled training data, with a
covariance shared by the classes; an input's score is its squared Mahalanobis distance to the closest
class mean. Imperceptible pixel noise that flips a prediction has to move the embedding a long way,
and it lands where no training image of any class lies: the distance gives it away, while the model
itself reports a confident prediction.

It needs no BSL code and no extra model calls: the model server already puts the penultimate
embedding on every response event (seismo.embeddings), so the outlier service scores response events
with it. The threshold is split-conformal (seismo.detect.calibration; 95: a 5 % false positive rate on
clean unseen data): from embeddings of inputs the *model* never trained on when `fit` is given them
(`calibration=`), else from a held-out part of the fitting data. The second is what the detector alone
can do, and it is not enough: the model's own training inputs embed closer to their class means than
unseen ones (7.2 % of clean unseen images flagged at a nominal 5 % in the example), so pass a calibration
set whenever the labelled embeddings come from the model's training data.
bench/adversarial.py measures detection of FGSM and PGD attacks at several budgets.

Because the statistics belong to one embedding space, scoring refuses embeddings of any other
version, a retrained (patch) model's included: refit then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seismo.detect.base import Detector, InstanceScores, OutlierResult, check_batch
from seismo.detect.calibration import calibrate


class AdversarialVersionError(ValueError):
    """Embeddings from another model version than the detector was fitted on."""


class ClassMahalanobisAdversarial(Detector):
    kind = "ClassMahalanobisAdversarial"

    def __init__(self, threshold_percentile: float = 95.0, holdout_fraction: float = 0.2, ridge: float = 1e-3, seed: int = 0,
                 version: str | None = None, preprocess=None):
        if not 0 < threshold_percentile < 100:
            raise ValueError(f"threshold_percentile must be in (0, 100), got {threshold_percentile}")
        if not 0 < holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
        self.threshold_percentile = threshold_percentile
        self.holdout_fraction = holdout_fraction
        self.ridge = ridge
        self.seed = seed
        self.version = version
        self.preprocess = preprocess
        self.threshold: float | None = None
        self._class_terms: np.ndarray | None = None  # see _mean_terms

    def fit(self, embeddings: Any, labels: Any, version: str | None = None, calibration: Any = None) -> ClassMahalanobisAdversarial:
        """`embeddings` [N, D] of labelled inputs (true labels, or the model's own predictions) fit the class
        Gaussians; `calibration` [M, D], embeddings of clean inputs the model never trained on, sets the threshold
        (without it, `holdout_fraction` of `embeddings` is held out of the fit for that)."""
        x = self._reference_features(embeddings).astype(np.float64)
        y = np.asarray(labels)
        if y.shape != (len(x),) or y.dtype.kind not in "iu" or (y < 0).any():
            raise ValueError(f"labels must be {len(x)} non-negative class indices, got shape {list(y.shape)} of {y.dtype}")
        order = np.random.default_rng(self.seed).permutation(len(x))
        if calibration is not None:
            held = self._features(calibration, "calibration embeddings").astype(np.float64)
            train, source = order, "calibration set"
        else:
            n_holdout = max(int(len(x) * self.holdout_fraction), 2)
            train, source = order[n_holdout:], "held out of the labelled embeddings"
            held = x[order[:n_holdout]]
        classes = np.unique(y[train])
        if len(classes) < 2:
            raise ValueError("fitting needs at least two classes in the labels")
        self.classes = classes.astype(np.int64)
        self.means = np.stack([x[train][y[train] == c].mean(axis=0) for c in classes])
        centred = x[train] - self.means[np.searchsorted(classes, y[train])]
        covariance = centred.T @ centred / len(train)
        scale = max(float(np.trace(covariance)) / len(covariance), 1e-12)
        self.precision = np.linalg.inv(covariance + self.ridge * scale * np.eye(len(covariance)))
        self._class_terms = None
        self.threshold, self.calibration = calibrate(lambda rows: self._distances(rows).min(axis=1), held, self.threshold_percentile,
                                                     source, self.seed)
        if version is not None:
            self.version = version
        return self

    def _distances(self, x: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row to each class mean: [N, classes]."""
        # (x - mu)' P (x - mu) = x'Px - 2 x'P mu + mu'P mu, without an [N, classes, D] array
        with np.errstate(over="ignore", invalid="ignore"):
            xp = x @ self.precision
            distances = np.einsum("nd,nd->n", xp, x)[:, None] - 2 * xp @ self.means.T + self._mean_terms()[None, :]
        # Embeddings near FP32's limits overflow to inf - inf = NaN: as far from every class as can be, never "clean".
        return np.where(np.isnan(distances), np.inf, distances).clip(min=0)

    def _mean_terms(self) -> np.ndarray:
        """mu'P mu per class: fixed once fitted, and the einsum took longer than the rest of a delivered
        batch's distances (1.2 ms at 256 dimensions), so it is kept until fit or load sets new statistics."""
        if self._class_terms is None:
            with np.errstate(over="ignore", invalid="ignore"):
                self._class_terms = np.einsum("kd,de,ke->k", self.means, self.precision, self.means)
        return self._class_terms

    def check_version(self, version: str | None) -> None:
        if self.version is not None and version != self.version:
            raise AdversarialVersionError(f"embedding version {version} is not the detector's {self.version}: its class statistics "
                                          f"belong to that embedding space; refit it (`make model` for the example)")

    def _embedding_distances(self, x: Any) -> np.ndarray:
        if self.threshold is None:
            raise RuntimeError(f"{self.kind} is not fitted: call fit(embeddings, labels) first")
        return self._distances(check_batch(x, self.instance_shape, "embeddings").reshape(len(x), -1).astype(np.float64))

    def score(self, x: Any) -> InstanceScores:
        return InstanceScores(self._embedding_distances(x).min(axis=1), None)

    def predict(self, x: Any) -> OutlierResult:
        return self.check(x)[0]

    def check(self, x: Any) -> tuple[OutlierResult, np.ndarray]:
        """The verdict and, from the same distances, the class whose training embeddings each input lies closest to."""
        distances = self._embedding_distances(x)
        scores = distances.min(axis=1)
        assert self.threshold is not None
        return OutlierResult(scores > self.threshold, scores, self.threshold, None), self.classes[distances.argmin(axis=1)]

    def nearest_class(self, x: Any) -> np.ndarray:
        return self.check(x)[1]

    def _params(self) -> dict[str, Any]:
        return {"threshold_percentile": self.threshold_percentile, "holdout_fraction": self.holdout_fraction, "ridge": self.ridge,
                "seed": self.seed, "version": self.version}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"classes": self.classes, "means": self.means, "precision": self.precision, "threshold": np.array(self.threshold)}

    def _restore(self, arrays: dict[str, np.ndarray], folder: Path) -> None:
        self.classes, self.means, self.precision = arrays["classes"], arrays["means"], arrays["precision"]
        self._class_terms = None
        self.threshold = float(arrays["threshold"])
