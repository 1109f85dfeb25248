"""Lesson 06: clustering features without labels (k-means, DBSCAN), scored against the classes."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import DBSCAN, KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from ..checks import check_lengths, check_matrix
from ._arrays import as_numpy

__all__ = ["cluster_features", "cluster_scores"]


def cluster_features(
    features, method: str = "kmeans", *, n_clusters: int | None = None, seed: int = 0, **kwargs
) -> np.ndarray:
    """Group the rows of ``features`` [N, D] without labels; returns cluster ids [N] (int).

    - ``"kmeans"`` needs ``n_clusters``. It runs ``n_init=10`` times from different random
      starts and keeps the tightest result: one run (scikit-learn's default since 1.4) can get
      stuck with two centres in one class. ``seed`` makes the starts reproducible.
    - ``"dbscan"`` finds the number of clusters itself: dense regions become clusters and the
      points in between get the id -1 ("noise"). It uses the cosine distance ``1 - cos``, the
      measure that :func:`nearest_neighbours` uses; ``eps`` (default 0.1 here) is the largest
      cosine distance between neighbours, ``min_samples`` (default 5) the size of a dense region.
      (Equivalently: on L2-normalised rows, ``|u - v|^2 = 2 (1 - cos)``, so Euclidean DBSCAN with
      ``eps = sqrt(2 * 0.1)`` gives the same clusters.)

    Other ``kwargs`` go to scikit-learn's ``KMeans`` or ``DBSCAN``.
    """
    features = as_numpy(check_matrix(features, what="cluster_features"))
    if method == "kmeans":
        if n_clusters is None:
            raise ValueError('method="kmeans" needs n_clusters, e.g. n_clusters=10 for digits')
        model = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed, **kwargs)
    elif method == "dbscan":
        if n_clusters is not None:
            raise ValueError('method="dbscan" finds the number of clusters itself: drop n_clusters')
        model = DBSCAN(metric="cosine", **({"eps": 0.1} | kwargs))
    else:
        raise ValueError(f'method must be "kmeans" or "dbscan", got {method!r}')
    return model.fit_predict(features)


def cluster_scores(true_labels, cluster_labels) -> dict:
    """How well clusters [N] match the true classes [N]: ``{"ari", "nmi", "clusters"}``.

    Cluster ids are arbitrary (cluster 3 need not be digit 3), so both scores compare groupings,
    not ids. ARI (adjusted Rand index) counts the pairs of samples that both groupings put
    together or apart, corrected so that random clusters score 0 (1 = identical groupings). NMI
    (normalised mutual information, 0 to 1) measures how much knowing the cluster tells about
    the class. ``clusters`` is the number of clusters found (DBSCAN's noise, -1, not counted).
    """
    true_labels = as_numpy(true_labels).reshape(-1)
    cluster_labels = as_numpy(cluster_labels).reshape(-1)
    check_lengths("cluster_scores", true_labels=true_labels, cluster_labels=cluster_labels)
    return {
        "ari": float(adjusted_rand_score(true_labels, cluster_labels)),
        "nmi": float(normalized_mutual_info_score(true_labels, cluster_labels)),
        "clusters": len(set(cluster_labels.tolist()) - {-1}),
    }
