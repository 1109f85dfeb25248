"""Pretrained CNNs as feature extractors, top-K predictions and calibration.

A trained classifier is two parts: a feature extractor that turns an image into a vector, and a
final classifier (usually one ``nn.Linear``) that turns the vector into class scores. The vector
-- the *input* to that last layer -- is a compact description of the image that the network
learnt to make linearly separable, and it is useful far beyond the classes it was trained on:

- ``extract_features`` runs a model over images [N, C, H, W] and returns features [N, D]: the
  input to the final classifier, or the output of any named layer (global-average-pooled if it is
  a feature map), captured with a forward hook.
- Similar images have similar features: ``cosine_similarity_matrix`` and ``nearest_neighbours``
  search by the angle between feature vectors, ``plot_neighbours`` shows what was found.
- ``cluster_features`` groups the vectors without labels (k-means or DBSCAN) and
  ``cluster_scores`` measures how well the groups match the true classes.
- ``compare_classifiers`` cross-validates a random forest and an SVM on several feature sets
  ("raw pixels" vs "CNN features"): good features make simple classifiers strong.

And what a classifier's output means:

- ``topk_predictions`` turns logits [N, K] into the k most likely classes and their softmax
  probabilities; ``format_topk`` prints them as "1. cat 0.87" lines.
- A model is *calibrated* when its confidence matches its accuracy: of all the predictions made
  with 80 % confidence, 80 % should be right. ``expected_calibration_error`` (ECE) measures the
  gap and ``reliability_diagram`` draws it. Modern networks trained with cross-entropy tend to be
  over-confident (Guo et al., "On Calibration of Modern Neural Networks", 2017).
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.cluster import DBSCAN, KMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn

from .plot import show_images

__all__ = [
    "extract_features",
    "cosine_similarity_matrix",
    "nearest_neighbours",
    "plot_neighbours",
    "cluster_features",
    "cluster_scores",
    "compare_classifiers",
    "topk_predictions",
    "format_topk",
    "expected_calibration_error",
    "reliability_diagram",
]

#: Attribute names under which models keep their final classifier: torchvision's ResNet uses
#: ``fc``, VGG / EfficientNet / ConvNeXt and this course's models ``classifier``, timm ``head``,
#: torchvision's ViT ``heads``.
_HEAD_NAMES = ("fc", "classifier", "head", "heads")


def _numpy(x) -> np.ndarray:
    """A tensor (on any device) or array-like as a NumPy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# --------------------------------------------------------------------------------------------
# Feature extraction
# --------------------------------------------------------------------------------------------


def _classifier_head(model: nn.Module) -> nn.Module | None:
    """The model's final classifier (its ``fc``, ``classifier``, ... attribute), or ``None``."""
    for name in _HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    return None


def _named_layer(model: nn.Module, layer: str) -> nn.Module:
    """``model``'s sub-module called ``layer``, or a ``ValueError`` that suggests valid names."""
    modules = dict(model.named_modules())
    if layer in modules and layer != "":
        return modules[layer]
    names = [name for name in modules if name]
    close = difflib.get_close_matches(layer, names, n=3)
    hint = f"did you mean {close}? " if close else ""
    raise ValueError(
        f"{type(model).__name__} has no layer {layer!r}: {hint}valid names come from "
        f"model.named_modules(), e.g. {names[:8]} ({len(names)} in all)"
    )


def _pool_flatten(output: object, where: str) -> torch.Tensor:
    """Features [B, D] from a layer's output: feature maps [B, C, H, W] are averaged over space."""
    if not isinstance(output, torch.Tensor) or output.dim() < 2:
        raise ValueError(
            f"{where} must be a tensor [B, ...], got "
            f"{tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__}"
        )
    if output.dim() == 4:
        # Global average pooling: one number per channel, whatever the image size. Flattening the
        # map instead would give C * H * W numbers that depend on where things are in the image.
        output = output.mean(dim=(2, 3))
    return output.flatten(1)


def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Run ``model`` over ``images`` [N, C, H, W] and return one feature vector per image, [N, D].

    Which features:

    - ``layer=None`` and the model has a final classifier (an ``fc``, ``classifier``, ``head`` or
      ``heads`` attribute): the *input* of the last ``nn.Linear`` in it -- the "penultimate
      layer" features the classifier reads its decision from. (A head without any Linear, e.g.
      ``model.fc = nn.Identity()``, gives its own input.)
    - ``layer=None`` and no such attribute: the model's own output, so a model that already is a
      feature extractor, e.g. ``nn.Sequential(*list(resnet.children())[:-1])``, works as is.
    - ``layer="layer3"``: the output of ``dict(model.named_modules())["layer3"]``, captured with a
      forward hook. A module that runs several times in one forward pass (torchvision's blocks
      reuse their ReLU) gives its last output.

    Feature maps [B, C, H, W] are global-average-pooled to [B, C]; anything else is flattened.

    The model runs in ``eval()`` mode (BatchNorm uses its running statistics, dropout is off) and
    under ``torch.no_grad()`` in batches of ``batch_size``; afterwards every module's train/eval
    mode is restored and the hook removed, even if the forward pass fails. ``device``: default the
    device of the model's parameters; otherwise the model is moved there (and stays, as with
    ``fit``). The features come back on the CPU.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected images as a tensor [N, C, H, W], got {shape}")
    if len(images) == 0:
        raise ValueError("got no images (N = 0)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    # Where the features come from: (module to hook, whether to take its input or its output).
    if layer is not None:
        target, take_input, where = _named_layer(model, layer), False, f"layer {layer!r}"
    elif (head := _classifier_head(model)) is not None:
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        target, take_input, where = (linears[-1] if linears else head), True, "the classifier input"
    else:
        target, take_input, where = None, False, "the model output"

    if device is not None:
        model.to(device)
    param = next(model.parameters(), None)
    dev = param.device if param is not None else torch.device("cpu")

    captured: dict[str, object] = {}
    handle = None
    if target is not None and take_input:
        handle = target.register_forward_pre_hook(lambda m, args: captured.update(out=args[0]))
    elif target is not None:
        handle = target.register_forward_hook(lambda m, args, out: captured.update(out=out))

    modes = {m: m.training for m in model.modules()}
    chunks = []
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                captured.clear()
                output = model(images[start : start + batch_size].to(dev))
                if target is None:
                    captured["out"] = output
                if "out" not in captured:
                    raise ValueError(f"{where} was not used in the forward pass of the model")
                chunks.append(_pool_flatten(captured["out"], where).cpu())
    finally:
        if handle is not None:
            handle.remove()
        for m, training in modes.items():
            m.training = training
    return torch.cat(chunks)


# --------------------------------------------------------------------------------------------
# Similarity search
# --------------------------------------------------------------------------------------------


def _as_features(x, name: str) -> torch.Tensor:
    """``x`` (tensor or array) as a floating-point tensor [N, D]."""
    x = torch.as_tensor(x)
    if x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D matrix [N, D], got shape {tuple(x.shape)}")
    return x if x.is_floating_point() else x.float()


def cosine_similarity_matrix(a, b=None) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` [N, D] with every row of ``b`` [M, D] (default a).

    Returns [N, M] with entries ``a_i . b_j / (|a_i| |b_j|)`` in [-1, 1]: 1 for vectors pointing the
    same way, whatever their length. Normalising the rows first turns the whole matrix into one
    matrix product. A zero row has similarity 0 with everything (as in scikit-learn).
    """
    a = _as_features(a, "a")
    b = a if b is None else _as_features(b, "b")
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
    features = _as_features(features, "features")
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
    indices = [int(i) for i in _numpy(indices).reshape(-1)]
    similarities = [float(s) for s in _numpy(similarities).reshape(-1)]
    if len(indices) != len(similarities):
        raise ValueError(f"got {len(indices)} indices but {len(similarities)} similarities")
    picks = [query_index, *indices]
    titles = ["query", *(f"{s:.2f}" for s in similarities)]
    if labels is not None:
        labels = [int(v) for v in _numpy(labels).reshape(-1)]
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


# --------------------------------------------------------------------------------------------
# Clustering and classifiers on features (scikit-learn)
# --------------------------------------------------------------------------------------------


def _check_labels(features: np.ndarray, labels, name: str) -> np.ndarray:
    """``features`` must be [N, D] and ``labels`` [N]; returns the labels as a NumPy array."""
    labels = _numpy(labels).reshape(-1)
    if features.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix [N, D], got shape {features.shape}")
    if len(labels) != len(features):
        raise ValueError(f"got {len(labels)} labels for {len(features)} rows of {name}")
    return labels


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
    features = _numpy(features)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D matrix [N, D], got shape {features.shape}")
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
    true_labels = _numpy(true_labels).reshape(-1)
    cluster_labels = _numpy(cluster_labels).reshape(-1)
    if len(true_labels) != len(cluster_labels):
        raise ValueError(f"got {len(true_labels)} true labels but {len(cluster_labels)} clusters")
    return {
        "ari": float(adjusted_rand_score(true_labels, cluster_labels)),
        "nmi": float(normalized_mutual_info_score(true_labels, cluster_labels)),
        "clusters": len(set(cluster_labels.tolist()) - {-1}),
    }


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
        features = _numpy(features)
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


# --------------------------------------------------------------------------------------------
# Top-K predictions
# --------------------------------------------------------------------------------------------


def topk_predictions(logits: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most likely classes of each sample: ``(probs [N, k], indices [N, k])``.

    ``logits`` [N, K] are turned into probabilities with a softmax over the K classes; each row of
    the result is sorted by probability, highest first, so ``indices[:, 0]`` is the prediction.
    ImageNet results are often quoted as top-5 accuracy: the true class is among ``indices[i]``.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"expected logits as a tensor [N, K], got {shape}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    num_classes = logits.shape[1]
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must be between 1 and the number of classes K={num_classes}, got {k}")
    probs, indices = logits.softmax(dim=1).topk(k, dim=1)
    return probs, indices


def format_topk(probs, indices, class_names: Sequence[str] | None = None) -> str:
    """One sample's top-k as text, one line per class: ``"1. cat    0.87"``.

    ``probs`` and ``indices`` [k]: one row of :func:`topk_predictions`' result, e.g.
    ``format_topk(probs[0], indices[0], class_names)``.
    """
    probs, indices = _numpy(probs), _numpy(indices)
    if probs.ndim != 1 or probs.shape != indices.shape:
        raise ValueError(
            f"expected probs [k] and indices [k] of one sample (e.g. probs[0], indices[0]), got "
            f"shapes {probs.shape} and {indices.shape}"
        )
    if class_names is not None and indices.size and indices.max() >= len(class_names):
        raise ValueError(f"class index {indices.max()} has no name ({len(class_names)} names)")
    names = [class_names[i] if class_names is not None else str(i) for i in indices.tolist()]
    width = max((len(name) for name in names), default=0)
    return "\n".join(
        f"{rank}. {name:<{width}}  {p:.2f}" for rank, (name, p) in enumerate(zip(names, probs), 1)
    )


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def _confidences_and_hits(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence [N], correct [N] bool)`` from probs [N, K] + labels [N], or as given."""
    probs = _numpy(probs).astype(np.float64)
    labels = _numpy(labels).reshape(-1)
    if probs.ndim not in (1, 2) or len(probs) == 0:
        raise ValueError(
            f"expected probs [N, K] (or confidences [N]) with N > 0, got shape {probs.shape}"
        )
    if len(labels) != len(probs):
        raise ValueError(f"got {len(labels)} labels for {len(probs)} predictions")
    if probs.min() < 0 or probs.max() > 1:
        raise ValueError(
            f"probabilities must lie in [0, 1], got values in [{probs.min():.3g}, "
            f"{probs.max():.3g}]: pass logits.softmax(dim=1), not the logits"
        )
    if probs.ndim == 1:  # confidences [N] with labels = whether each prediction was right
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("with confidences [N], labels must say if each prediction was right")
        return probs, labels.astype(bool)
    if not np.allclose(probs.sum(axis=1), 1, atol=1e-3):
        raise ValueError("each row of probs [N, K] must sum to 1: pass logits.softmax(dim=1)")
    num_classes = probs.shape[1]
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must be class ids in [0, {num_classes}), got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    return probs.max(axis=1), probs.argmax(axis=1) == labels


def _calibration_bins(probs, labels, n_bins: int):
    """Per equal-width confidence bin: ``(count [n_bins], accuracy [n_bins], confidence [n_bins])``.

    Bin b holds the confidences in ((b - 1) / n_bins, b / n_bins] (Guo et al.). Empty bins get an
    accuracy and confidence of ``nan``.
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    confidence, correct = _confidences_and_hits(probs, labels)
    edges = np.linspace(0, 1, n_bins + 1)
    # right=True: a confidence equal to an edge goes to the bin below it, so 1.0 lands in the
    # last bin. (torchmetrics closes its bins on the left and gives exactly 1.0 a bin of its own.)
    bins = np.digitize(confidence, edges[1:-1], right=True)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 = nan marks empty bins
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / count
    return count, accuracy, mean_confidence


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE: how far confidence is from accuracy, on average over the samples (0 = calibrated).

    ``probs`` [N, K] (softmax outputs) with ``labels`` [N] class ids; the confidence of a sample
    is its highest probability, and it is correct if that class is the label. (Or ``probs`` =
    confidences [N] and ``labels`` = whether each prediction was correct, [N] bool.)

    The confidences are sorted into ``n_bins`` equal-width bins B_b over [0, 1], and::

        ECE = sum over bins of |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|

    A model that is 90 % confident and right 90 % of the time has ECE 0 -- whether or not 90 %
    is a good accuracy. Same as torchmetrics' ``MulticlassCalibrationError(norm="l1")``, except
    for confidences exactly on a bin edge: torchmetrics puts them in the bin above (and 1.0 in a
    bin of its own), here they go to the bin below, as in Guo et al.
    """
    count, accuracy, confidence = _calibration_bins(probs, labels, n_bins)
    filled = count > 0
    weights = count[filled] / count.sum()
    return float(np.sum(weights * np.abs(accuracy[filled] - confidence[filled])))


def reliability_diagram(
    probs, labels, n_bins: int = 15, ax: Axes | None = None, show_counts: bool = True
) -> Axes:
    """Accuracy against confidence, one bar per confidence bin, with the ECE in the title.

    A calibrated model's bars reach the diagonal; bars below it mean over-confidence (the model
    is right less often than it claims), above it under-confidence. The hatched part of each bar
    is the gap to the bin's mean confidence. ``show_counts`` adds the share of samples per bin
    (grey steps, right axis): the ECE weighs each bin's gap by it, so a big gap in an almost
    empty bin matters little. Arguments as in :func:`expected_calibration_error`.
    """
    count, accuracy, confidence = _calibration_bins(probs, labels, n_bins)
    ece = expected_calibration_error(probs, labels, n_bins)
    edges = np.linspace(0, 1, n_bins + 1)
    filled = count > 0
    left, width = edges[:-1][filled], 1 / n_bins
    acc, conf = accuracy[filled], confidence[filled]

    ax = plt.subplots(figsize=(5, 5))[1] if ax is None else ax
    ax.bar(left, acc, width=width, align="edge", color="C0", edgecolor="black", label="accuracy")
    ax.bar(
        left,
        conf - acc,  # negative where the model is under-confident: drawn downwards
        bottom=acc,
        width=width,
        align="edge",
        facecolor="none",  # hatched outline: the bar behind stays visible
        edgecolor="C3",
        hatch="//",
        label="gap to mean confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence (highest probability)",
        ylabel="accuracy",
        title=f"reliability diagram, ECE = {ece:.3f}",
    )
    ax.legend(loc="upper left")
    if show_counts:
        shares = ax.twinx()
        shares.stairs(count / count.sum(), edges, color="grey", linewidth=1.5)
        shares.set(ylim=(0, 1), ylabel="share of samples per bin")
    return ax
