"""Lesson 06: similarity search -- similar images have similar features.

``cosine_similarity_matrix`` and ``nearest_neighbours`` search by the angle between feature
vectors; ``plot_neighbours`` shows what was found.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ..checks import check_lengths, check_matrix
from ..plot import show_images
from ._arrays import as_numpy

__all__ = ["cosine_similarity_matrix", "nearest_neighbours", "plot_neighbours"]


def _as_features(x, name: str, what: str) -> torch.Tensor:
    """``x`` (tensor or array) as a floating-point tensor [N, D]."""
    x = torch.as_tensor(check_matrix(x, what=what, name=name))
    return x if x.is_floating_point() else x.float()


def cosine_similarity_matrix(a, b=None) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` [N, D] with every row of ``b`` [M, D] (default a).

    Returns [N, M] with entries ``a_i . b_j / (|a_i| |b_j|)`` in [-1, 1]: 1 for vectors pointing the
    same way, whatever their length. Normalising the rows first turns the whole matrix into one
    matrix product. A zero row has similarity 0 with everything (as in scikit-learn).
    """
    a = _as_features(a, "a", "cosine_similarity_matrix")
    b = a if b is None else _as_features(b, "b", "cosine_similarity_matrix")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a [N, D] and b [M, D] need the same D, got {a.shape[1]} and {b.shape[1]}"
        )
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def nearest_neighbours(
    features, query, k: int = 5, exclude_self: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` rows of ``features`` [N, D] most similar (cosine) to ``query``, best first.

    ``query`` is a row index into ``features`` or a vector [D] (e.g. the features of a new image).
    ``exclude_self`` (for an index only) leaves the query itself out -- otherwise it would always
    be its own best match, with similarity 1. Exact duplicates of it still count.

    Returns ``(indices [k] int64, similarities [k])``, similarities descending.
    """
    features = _as_features(features, "features", "nearest_neighbours")
    n = len(features)
    try:
        index = operator.index(query)  # an int, NumPy integer or 0-d integer tensor
    except TypeError:
        index = None
    if index is not None:
        if not 0 <= index < n:
            raise ValueError(f"query index {index} is out of range for {n} feature vectors")
        vector = features[index]
    else:
        vector = torch.as_tensor(query, dtype=features.dtype)
        if vector.shape != features.shape[1:]:
            raise ValueError(
                f"query must be a row index or a vector [D] = [{features.shape[1]}], "
                f"got shape {tuple(vector.shape)}"
            )
    similarities = cosine_similarity_matrix(vector[None], features)[0]
    candidates = n
    if index is not None and exclude_self:
        similarities[index] = -torch.inf  # never among the top k
        candidates -= 1
    if not 1 <= k <= candidates:
        raise ValueError(f"k must be between 1 and {candidates} (the candidates), got {k}")
    values, indices = similarities.topk(k)
    return indices, values


def plot_neighbours(
    images,
    query_index: int,
    indices,
    similarities,
    labels=None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """One row of pictures: the query image, then its neighbours titled by their similarity.

    ``images``: the batch [N, C, H, W] (or list) the features were computed from; ``indices`` and
    ``similarities`` [k]: what :func:`nearest_neighbours` returned. With ``labels`` [N] every title
    also names the class (looked up in ``class_names`` if given), and neighbours from another
    class than the query get a red title.
    """
    indices = [int(i) for i in as_numpy(indices).reshape(-1)]
    similarities = [float(s) for s in as_numpy(similarities).reshape(-1)]
    check_lengths("plot_neighbours", indices=indices, similarities=similarities)
    picks = [query_index, *indices]
    titles = ["query", *(f"{s:.2f}" for s in similarities)]
    if labels is not None:
        labels = [int(v) for v in as_numpy(labels).reshape(-1)]
        names = [
            class_names[labels[i]] if class_names is not None else str(labels[i]) for i in picks
        ]
        titles = [f"{title}\n{name}" for title, name in zip(titles, names)]
    fig = show_images([images[i] for i in picks], titles, ncols=len(picks))
    if labels is not None:
        for ax, i in zip(fig.axes[1:], indices):
            if labels[i] != labels[query_index]:
                ax.title.set_color("red")
    return fig
