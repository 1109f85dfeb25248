"""Lesson 06: classical machine learning on CNN features -- a random forest and an SVM,
cross-validated on each feature set: good features make simple classifiers strong."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ..checks import check_labels, check_lengths, check_matrix
from ._arrays import as_numpy

__all__ = ["compare_classifiers"]


def _check_labels(features: np.ndarray, labels, name: str) -> np.ndarray:
    """``features`` must be [N, D] and ``labels`` [N]; returns the labels as a NumPy array."""
    labels = as_numpy(labels).reshape(-1)
    check_matrix(features, what="compare_classifiers", name=name)
    check_lengths(f"compare_classifiers ({name})", features=features, labels=labels)
    check_labels(torch.as_tensor(labels), what="compare_classifiers")  # classes: integers
    return labels


def compare_classifiers(
    features_by_name: Mapping[str, object], labels, cv: int = 5, seed: int = 0
) -> list[dict]:
    """Cross-validated accuracy of a random forest and an SVM on each feature set.

    ``features_by_name``: e.g. ``{"raw pixels": x.flatten(1), "CNN features": feats}``, each
    [N, D] for the same N samples, with ``labels`` [N]. Every (feature set, classifier) pair is
    scored by ``cv``-fold stratified cross-validation: the same shuffled folds (fixed by ``seed``)
    for everyone, so the numbers are comparable.

    - Random forest (100 trees): indifferent to the scale of each feature.
    - SVM with an RBF kernel, after ``StandardScaler``: the kernel measures distances, so
      features must be on comparable scales. Inside the ``Pipeline`` the scaler is fitted on each
      training fold only, so no statistics of the validation fold leak into training.

    Returns one row per pair, ``{"features", "classifier", "mean_accuracy", "std"}`` (the std of
    the ``cv`` fold accuracies); show them with ``print(format_table(rows))``.
    """
    if not features_by_name:
        raise ValueError("features_by_name is empty: pass {name: features [N, D]}")
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    classifiers = {
        "random forest": RandomForestClassifier(n_estimators=100, random_state=seed),
        "SVM (RBF)": make_pipeline(StandardScaler(), SVC()),
    }
    rows = []
    for name, features in features_by_name.items():
        features = as_numpy(features)
        y = _check_labels(features, labels, f"features {name!r}")
        for clf_name, clf in classifiers.items():
            scores = cross_val_score(clf, features, y, cv=folds)
            rows.append(
                {
                    "features": name,
                    "classifier": clf_name,
                    "mean_accuracy": float(scores.mean()),
                    "std": float(scores.std()),
                }
            )
    return rows
