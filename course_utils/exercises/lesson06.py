"""Lesson 06: the checkers of the exercises of ``06_cnn_applications``.

Each checker calls the learner's answer on a few inputs and compares the result with the course's
own implementation in :mod:`course_utils.style` and :mod:`course_utils.features`; a wrong answer
fails with a hint about the most likely mistake.
"""

import math

import torch

from .. import data, zoo
from ..features import (
    cosine_similarity_matrix,
    extract_features,
    nearest_neighbours,
    topk_predictions,
)
from ..style import gram_matrix
from . import as_tensor, exercise

#: the two shipped backbones of exercise 06.4, and how many held-out digits it compares them on
BACKBONES = ("resnet_small_digits", "minivgg_digits")
NUM_DIGITS = 100


# --------------------------------------------------------------------------------------------
# 06.1 Gram matrix
# --------------------------------------------------------------------------------------------


@exercise("06.1 a Gram matrix")
def check_gram(my_gram) -> None:
    """``my_gram(features)``: ``[C, H, W] -> [C, C]`` and ``[B, C, H, W] -> [B, C, C]``, divided by
    ``C * H * W``."""
    g = torch.Generator().manual_seed(6)
    for shape in [(2, 5, 3, 4), (1, 8, 6, 6), (7, 5, 2)]:
        features = torch.rand(shape, generator=g)
        batched = features if features.dim() == 4 else features[None]
        expected = gram_matrix(batched)
        if features.dim() == 3:
            expected = expected[0]
        c, h, w = features.shape[-3:]
        out = as_tensor(my_gram(features.clone()), f"my_gram(features of shape {shape})")
        if features.dim() == 3 and out.shape == (1, c, c):
            raise AssertionError(
                f"features [C, H, W] = {list(shape)} should give [C, C] = [{c}, {c}], not "
                f"[1, {c}, {c}]: drop the batch dimension you added"
            )
        if out.shape[-2:] == (h * w, h * w) and out.shape[-1] != c:
            raise AssertionError(
                f"got a [{h * w}, {h * w}] matrix: that compares positions with positions "
                "(F^T F). The Gram matrix compares channels: F F^T with F = [C, H*W]"
            )
        assert out.shape == expected.shape, (
            f"features of shape {list(shape)} should give {list(expected.shape)}, got "
            f"{list(out.shape)}"
        )
        out = out.to(expected.dtype)
        if torch.allclose(out, expected * (c * h * w), rtol=1e-4):
            raise AssertionError(
                "not normalised: divide the sums by C * H * W (here "
                f"{c} * {h} * {w}), so that images and layers of different sizes are comparable"
            )
        if torch.allclose(out, expected * c, rtol=1e-4):
            raise AssertionError(f"divided by H * W only: divide by C * H * W (C = {c} here)")
        assert torch.allclose(out, expected, rtol=1e-4, atol=1e-6), (
            f"the values differ from the Gram matrix (largest gap "
            f"{(out - expected).abs().max():.3g}): G[i, j] = sum over positions of "
            "F[i, p] * F[j, p], divided by C * H * W"
        )


# --------------------------------------------------------------------------------------------
# 06.2 Nearest neighbours
# --------------------------------------------------------------------------------------------


def _neighbour_cases() -> list[tuple[torch.Tensor, int, int]]:
    g = torch.Generator().manual_seed(7)
    # rows of very different lengths: a dot product ranks long rows first, the cosine does not
    features = torch.randn(40, 6, generator=g) * torch.rand(40, 1, generator=g).mul(5).add(0.1)
    positive = torch.rand(30, 10, generator=g)  # all similarities positive, as after a ReLU
    return [(features, 0, 5), (features, 17, 3), (positive, 29, 6), (features, 5, 1)]


@exercise("06.2 nearest neighbours by cosine similarity")
def check_nearest(my_nearest) -> None:
    """``my_nearest(features [N, D], query, k) -> indices [k]`` (int): the ``k`` rows most similar
    to row ``query`` by cosine similarity, best first, without the query itself."""
    for features, query, k in _neighbour_cases():
        out = as_tensor(my_nearest(features.clone(), query, k), f"my_nearest(..., {query}, {k})")
        expected = nearest_neighbours(features, query, k=k)[0]
        out = out.flatten()
        assert len(out) == k, f"expected {k} indices, got {len(out)}"
        out = out.long()
        if query in out.tolist():
            raise AssertionError(
                f"the query ({query}) is among its own neighbours: its similarity with itself is "
                "1, the highest; leave it out (e.g. set that entry to -inf before topk)"
            )
        if torch.equal(out, expected):
            continue
        dot = features @ features[query]
        dot[query] = -torch.inf
        if torch.equal(out, dot.topk(k).indices):
            raise AssertionError(
                "these are the largest dot products: long feature vectors win whatever their "
                "direction. Normalise the rows (F.normalize(features, dim=1)) first"
            )
        cos = cosine_similarity_matrix(features[query][None], features)[0]
        cos[query] = torch.inf
        if set(out.tolist()) == set((-cos).topk(k).indices.tolist()):
            raise AssertionError("these are the least similar rows: take the largest similarities")
        if set(out.tolist()) == set(expected.tolist()):
            raise AssertionError("the right rows, in the wrong order: sort them best first")
        raise AssertionError(
            f"for query {query} and k={k} expected {expected.tolist()}, got {out.tolist()}"
        )


# --------------------------------------------------------------------------------------------
# 06.3 Top-k predictions
# --------------------------------------------------------------------------------------------


@exercise("06.3 top-k predictions with probabilities")
def check_topk(my_topk) -> None:
    """``my_topk(logits [N, K], k) -> (probs [N, k], indices [N, k])``, softmax probabilities,
    each row sorted highest first."""
    g = torch.Generator().manual_seed(8)
    for n, num_classes, k in [(4, 10, 3), (1, 5, 5), (6, 7, 1)]:
        logits = torch.randn(n, num_classes, generator=g) * 3
        out = my_topk(logits.clone(), k)
        assert isinstance(out, tuple) and len(out) == 2, "return a tuple (probs, indices)"
        probs = as_tensor(out[0], "probs")
        indices = as_tensor(out[1], "indices")
        expected_probs, expected_indices = topk_predictions(logits, k)
        assert probs.shape == (n, k) and indices.shape == (n, k), (
            f"logits [{n}, {num_classes}] with k={k} should give probs and indices [{n}, {k}], "
            f"got {list(probs.shape)} and {list(indices.shape)}"
        )
        if torch.allclose(probs.float(), logits.topk(k, dim=1).values, atol=1e-5):
            raise AssertionError(
                "these are logits, not probabilities: apply softmax over the classes (dim=1)"
            )
        if n > 1 and torch.allclose(
            probs.float(), logits.softmax(dim=0).gather(1, indices.long()), atol=1e-5
        ):
            raise AssertionError(
                "softmax over the wrong dimension: dim=0 mixes the samples; each sample's "
                "probabilities (dim=1, over the classes) must sum to 1"
            )
        if torch.equal(indices.long(), expected_indices):
            assert torch.allclose(probs.float(), expected_probs, atol=1e-5), (
                "right classes, wrong probabilities: softmax(logits) over dim=1, then pick them"
            )
            continue
        if all(
            set(row.tolist()) == set(ref.tolist()) for row, ref in zip(indices, expected_indices)
        ):
            raise AssertionError(
                "the right classes in the wrong order: sort each row highest probability first "
                "(torch.topk does it for you)"
            )
        raise AssertionError(
            f"wrong classes: expected {expected_indices.tolist()}, got {indices.tolist()}"
        )


# --------------------------------------------------------------------------------------------
# 06.4 How alike are two backbones?
# --------------------------------------------------------------------------------------------


def backbone_features(num_digits: int = NUM_DIGITS) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features of the first ``num_digits`` held-out digits (16 px) from the two
    shipped backbones of :data:`BACKBONES`: ``(features_a [n, 64], features_b [n, 128])``."""
    _, x_test, _, _ = data.digits_split(16)
    with zoo.cpu_threads():
        return tuple(
            extract_features(zoo.load(name, device="cpu"), x_test[:num_digits], device="cpu")
            for name in BACKBONES
        )


def _off_diagonal_correlation(sim_a: torch.Tensor, sim_b: torch.Tensor, keep) -> float:
    values = torch.stack([sim_a[keep], sim_b[keep]]).double()
    return float(torch.corrcoef(values)[0, 1])


def reference_similarity_correlation(features_a, features_b) -> float:
    """Pearson correlation of the off-diagonal entries of the two cosine-similarity matrices."""
    sim_a, sim_b = cosine_similarity_matrix(features_a), cosine_similarity_matrix(features_b)
    off_diagonal = ~torch.eye(len(sim_a), dtype=torch.bool)
    return _off_diagonal_correlation(sim_a, sim_b, off_diagonal)


def _correlation_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(9)
    base = torch.randn(25, 8, generator=g)
    related = base @ torch.randn(8, 12, generator=g) + 2 * torch.randn(25, 12, generator=g)
    # rows of different lengths: the cosine ignores them, a plain dot product does not
    scaled = related * torch.rand(25, 1, generator=g).mul(4).add(0.2)
    return [(base, related), (base.relu(), scaled.relu()), backbone_features()]


@exercise("06.4 how alike are two backbones?")
def check_similarity_correlation(my_similarity_correlation) -> None:
    """``my_similarity_correlation(features_a [N, Da], features_b [N, Db]) -> float``: Pearson
    correlation between the off-diagonal entries of the two [N, N] cosine-similarity matrices."""
    for features_a, features_b in _correlation_cases():
        out = my_similarity_correlation(features_a.clone(), features_b.clone())
        try:
            value = float(out)
        except (TypeError, ValueError):
            raise AssertionError(f"return one number (a float), got {type(out).__name__}") from None
        assert not math.isnan(value), "got nan: is one of the inputs constant?"
        expected = reference_similarity_correlation(features_a, features_b)
        if math.isclose(value, expected, abs_tol=1e-4):
            continue
        n = len(features_a)
        sim_a = cosine_similarity_matrix(features_a)
        sim_b = cosine_similarity_matrix(features_b)
        everything = torch.ones(n, n, dtype=torch.bool)
        if math.isclose(value, _off_diagonal_correlation(sim_a, sim_b, everything), abs_tol=1e-4):
            raise AssertionError(
                f"the diagonal is included: every image has similarity 1 with itself in both "
                f"matrices, {n} identical points that inflate the correlation. Keep only the "
                "entries i != j (e.g. with a mask ~torch.eye(N, dtype=torch.bool))"
            )
        off = ~torch.eye(n, dtype=torch.bool)
        dot_a, dot_b = features_a @ features_a.T, features_b @ features_b.T
        if math.isclose(value, _off_diagonal_correlation(dot_a, dot_b, off), abs_tol=1e-4):
            raise AssertionError(
                "these are dot products, not cosine similarities: normalise the rows first"
            )
        raise AssertionError(
            f"expected a correlation of {expected:.4f}, got {value:.4f}: build both [N, N] "
            "cosine-similarity matrices, take their off-diagonal entries, and correlate the two "
            "lists (Pearson, e.g. torch.corrcoef or numpy.corrcoef)"
        )
