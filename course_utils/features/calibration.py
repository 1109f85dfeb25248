"""Lesson 06: calibration -- does a classifier's confidence match its accuracy?

A model is *calibrated* when, of all the predictions made with 80 % confidence, 80 % are right.
``expected_calibration_error`` (ECE) measures the gap and ``reliability_diagram`` draws it.
Modern networks trained with cross-entropy tend to be over-confident (Guo et al., "On Calibration
of Modern Neural Networks", 2017).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from ..checks import check_finite, check_labels, check_lengths
from ._arrays import as_numpy

__all__ = ["expected_calibration_error", "reliability_diagram"]


def _confidences_and_hits(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence [N], correct [N] bool)`` from probs [N, K] + labels [N], or as given."""
    probs = as_numpy(probs).astype(np.float64)
    labels = as_numpy(labels).reshape(-1)
    if probs.ndim not in (1, 2) or len(probs) == 0:
        raise ValueError(
            f"expected probs [N, K] (or confidences [N]) with N > 0, got shape {probs.shape}"
        )
    check_lengths("expected_calibration_error", probs=probs, labels=labels)
    check_finite(torch.as_tensor(probs), what="expected_calibration_error (probs)")
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
    what = "expected_calibration_error"
    check_labels(torch.as_tensor(labels), what=what, num_classes=probs.shape[1])
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
