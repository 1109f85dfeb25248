"""Lessons 07-11: how good are generated images? Measurements that need no download.

Generative models are judged on two things that pull against each other: *fidelity* (does each
sample look like a real image of the class it was asked for?) and *diversity* (do the samples
cover the variety of the real data, or repeat a few favourites?). Big models are scored with an
Inception network trained on ImageNet; the course's small images get a small "judge" instead, a
shipped classifier that has never seen a generated image: ``resnet_fashion`` (lesson 02,
Fashion-MNIST at 28x28) for the garments, ``resnet_small_digits`` (16x16) for the lessons still
on the digits (:func:`load_judge`).

- :func:`recognition_accuracy` -- fidelity: the fraction of class-conditional samples the judge
  classifies as the requested class (its accuracy on real test images is the ceiling).
- :func:`judge_distance` -- fidelity *and* diversity: the Fréchet distance between the judge's
  64-dimensional penultimate features of real held-out images and of samples (the FID recipe with
  a different feature network, so the numbers are only comparable within this course). A model
  that draws one perfect garment every time is recognised 100 % of the time but has a large
  distance, because its features have no spread. On few samples the distance is biased upwards:
  :func:`reference_images` and :func:`fid_floor` give the class-balanced real reference and the
  real-against-real distance at the same count, the floor every score stands next to.
- :func:`sample_scores` -- the first two at once, for samples straight from a sampler: what every
  sampling experiment of lessons 07-11 reports (lesson 12 has its own judge, ``diffusion.scene_judge``).
- :func:`memorisation` -- has the model learned the data, or memorised its training images?
  A sample that is much closer (in pixels) to some training image than real unseen images ever
  are is a near-copy (:func:`nearest_images` finds the closest one).

All functions take images in [0, 1] (diffusion samples live in [-1, 1]: pass ``to01(x)``), except
:func:`sample_scores`, which takes the samples in [-1, 1] and converts them itself.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg
from torch import nn

from .. import data, zoo
from ..checks import (
    check_finite,
    check_images,
    check_labels,
    check_signed_images,
    check_trained_input,
)
from ..features import extract_features
from ..train import evaluating

__all__ = [
    "to01",
    "load_judge",
    "recognition_accuracy",
    "frechet_distance",
    "judge_distance",
    "reference_images",
    "fid_floor",
    "sample_scores",
    "nearest_images",
    "memorisation",
]


def to01(x: torch.Tensor) -> torch.Tensor:
    """Samples in the models' space [-1, 1] -> images in [0, 1], clipped, on the CPU: what the
    functions below, ``plt.imshow`` and ``make_grid`` take. Diffusion and flow samples can
    overshoot [-1, 1] slightly; clipping is what saving them as an image would do anyway.

    Refuses images already in [0, 1] (a batch with no negative value) and uint8 pixels: converted
    again, their black would turn mid-grey without a word."""
    _check_samples(x, "to01")
    return ((x.detach() + 1) / 2).clamp(0, 1).cpu()


def _check_samples(x: torch.Tensor, what: str) -> None:
    """Samples in [-1, 1]: float, finite, and (a batch) with some negative value. Overshoot
    beyond [-1, 1] is fine, :func:`to01` clips it: only what lies inside is checked."""
    check_finite(x, what=what)  # a tensor (NumPy arrays and lists get the fix), no NaN
    if x.dim() not in (3, 4):  # e.g. a stack of batches: float and finite is all we can say
        return
    check_images(x, what=what, layout="*CHW")  # uint8, NaN, inf
    if x.dim() == 4:
        check_signed_images(x.detach().clamp(-1, 1), what=what)


def _check_unit_range(images: torch.Tensor, what: str) -> None:
    check_images(images, what=what, value_range=(0, 1))


def load_judge(
    device: torch.device | str | None = None, *, name: str = "resnet_small_digits"
) -> nn.Module:
    """The evaluation classifier, in eval mode: the shipped ``resnet_small_digits`` (16x16 digits)
    or ``resnet_fashion`` (28x28 Fashion-MNIST), both taking [0, 1] input. Any classifier with an
    ``fc`` head can be passed to the functions below instead."""
    judges = ("resnet_small_digits", "resnet_fashion")
    if name not in judges:
        raise ValueError(f"load_judge: the judges are {judges}, got {name!r}")
    return zoo.load(name, device=device).eval()


@torch.no_grad()
def recognition_accuracy(
    judge: nn.Module, images: torch.Tensor, labels: torch.Tensor, per_class: bool = False
) -> float | tuple[float, torch.Tensor]:
    """Fraction of ``images [N, C, H, W]`` (in [0, 1]) that ``judge`` classifies as ``labels [N]``.

    With ``per_class=True`` also returns the accuracy of each class, [num_classes] (NaN for a
    class with no image), which shows *which* digits a generator struggles with.
    """
    _check_unit_range(images, "recognition_accuracy")
    check_trained_input(judge, images, what="recognition_accuracy")
    check_labels(labels, what="recognition_accuracy", length=len(images))
    device = next(judge.parameters()).device
    with evaluating(judge):
        logits = torch.cat([judge(b.to(device)).cpu() for b in images.split(500)])
    # a label the judge has no class for would count as a miss without a word
    check_labels(labels, what="recognition_accuracy", num_classes=logits.shape[1])
    predicted = logits.argmax(1)
    correct = (predicted == labels.cpu()).float()
    if not per_class:
        return correct.mean().item()
    classes = int(labels.max()) + 1
    hits = torch.zeros(classes).index_add_(0, labels.cpu(), correct)
    counts = torch.bincount(labels.cpu(), minlength=classes).float()
    return correct.mean().item(), hits / counts


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``a [N, D]``, ``b [M, D]``:
    ``|μ_a - μ_b|² + tr(Σ_a + Σ_b - 2 (Σ_a Σ_b)^½)``.

    On the features of an Inception network this is the FID of image generation. Lower is better;
    0 means the same mean and covariance. It needs clearly more samples than dimensions to be
    reliable, and it is biased upwards for small N: compare distances computed on equal N only.
    Fewer samples than dimensions give a warning (the covariance is then singular), one sample
    an error (it has no covariance).
    """
    _check_features(a, b)
    a, b = a.double().cpu().numpy(), b.double().cpu().numpy()
    mu = a.mean(0) - b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    # sqrtm of a product of covariances is real in theory; rounding leaves tiny imaginary parts
    return float(mu @ mu + np.trace(cov_a + cov_b - 2 * root.real))


def _check_features(a: torch.Tensor, b: torch.Tensor) -> None:
    for name, x in (("a", a), ("b", b)):
        check_finite(x, what=f"frechet_distance ({name})")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"frechet_distance takes features [N, D] and [M, D] with the same D, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}: extract both with the same network"
        )
    n, dims = min(len(a), len(b)), a.shape[1]
    if n < 2:
        raise ValueError(
            f"frechet_distance needs at least 2 samples per set to estimate a covariance, got "
            f"{len(a)} and {len(b)}"
        )
    if n < dims:
        warnings.warn(
            f"frechet_distance on {n} samples of {dims} features: with fewer samples than "
            "dimensions the covariance is singular and the distance biased upwards; compare "
            "only distances computed on the same number of samples",
            stacklevel=3,
        )


def judge_distance(judge: nn.Module, real: torch.Tensor, generated: torch.Tensor) -> float:
    """:func:`frechet_distance` between the judge's penultimate features of ``real`` and of
    ``generated`` images (both [N, C, H, W] in [0, 1]): the course's FID."""
    _check_unit_range(real, "judge_distance (real)")
    _check_unit_range(generated, "judge_distance (generated)")
    check_trained_input(judge, real, what="judge_distance (real)")
    check_trained_input(judge, generated, what="judge_distance (generated)")
    return frechet_distance(extract_features(judge, real), extract_features(judge, generated))


#: Real images per class in the reference set of Fashion-MNIST scores (and generated images per
#: class when a shipped model is scored).
PER_CLASS = 50


def reference_images(split: str = "test", per_class: int = PER_CLASS) -> tuple:
    """The first ``per_class`` images of each class of a Fashion-MNIST split, in class order:
    ``(images [10 * per_class, 1, 28, 28] in [0, 1], labels [10 * per_class])``."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(
            f"reference_images: per_class must be a whole number >= 1, got {per_class!r}"
        )
    images, labels = data.fashion_mnist(split)
    rows = [torch.nonzero(labels == c)[:per_class, 0] for c in range(10)]
    if min(len(r) for r in rows) < per_class:  # a silently unbalanced set would bias every score
        fewest = min(len(r) for r in rows)
        raise ValueError(
            f"reference_images: the {split!r} split has only {fewest} images of some class, "
            f"asked for per_class={per_class}"
        )
    keep = torch.cat(rows)
    return images[keep], labels[keep]


def fid_floor(judge: nn.Module, per_class: int = PER_CLASS) -> float:
    """The Fréchet distance between real training and real test images, ``per_class`` of each
    class: the value a perfect generator would score against :func:`reference_images`."""
    return judge_distance(
        judge, reference_images("test", per_class)[0], reference_images("train", per_class)[0]
    )


def sample_scores(
    judge: nn.Module, samples: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor
) -> dict[str, float]:
    """Score class-conditional samples as a sampler returns them: ``samples [N, C, H, W]`` in the
    models' range [-1, 1] (on any device), generated for the classes ``labels [N]``.

    Returns ``{"recognised": float, "fd": float}``: the :func:`recognition_accuracy` of the
    samples, and their :func:`judge_distance` to ``reference [M, C, H, W]``, real held-out images
    in [0, 1] (the test digits). The samples go through :func:`to01` first, so a sampler that
    overshoots [-1, 1], even wildly, is still scored -- on the images it would save.
    """
    _check_unit_range(reference, "sample_scores (reference)")
    # Samples from [-1, 1] always reach well below 0 (a digit's background is -1); a batch with
    # nothing below 0 has almost certainly been converted to [0, 1] already, and to01 would turn
    # its black background into mid-grey without a word.
    _check_samples(samples, "sample_scores")
    images = to01(samples)
    return {
        "recognised": recognition_accuracy(judge, images, labels),
        "fd": judge_distance(judge, reference, images),
    }


def nearest_images(
    queries: torch.Tensor, reference: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image of ``queries [N, ...]``, the closest image of ``reference [M, ...]`` (same
    image shape, same value range), by Euclidean distance between the raw pixels.

    Returns ``(indices [N] int64, distances [N] float32)``: ``reference[indices[i]]`` is the image
    nearest to ``queries[i]``, and ``distances[i]`` the L2 norm of their difference (not squared;
    0 for an exact copy). Not to be confused with :func:`course_utils.features.nearest_neighbours`,
    which ranks *feature vectors* by cosine similarity.
    """
    if queries.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"queries {tuple(queries.shape)} and reference {tuple(reference.shape)} differ in "
            "image shape"
        )
    distances = torch.cdist(queries.flatten(1).double(), reference.flatten(1).double())
    nearest, indices = distances.min(dim=1)
    return indices, nearest.float()


def memorisation(
    generated: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor, quantile: float = 0.01
) -> dict:
    """Compare how close samples come to the training set with how close *unseen real* digits do.

    Real held-out digits were never trained on, so their distances to the nearest training image
    show what "a new digit" looks like. Only ``quantile`` (1 %) of them come closer than the
    ``threshold`` distance; a generated image closer than that is flagged as a likely copy.

    Returns ``{"generated_median", "held_out_median", "threshold", "copied_fraction",
    "nearest" (indices of each sample's nearest training image, [N])}``. A copied fraction far
    above ``quantile`` means memorisation.
    """
    for images, name in ((generated, "generated"), (train, "train"), (held_out, "held_out")):
        _check_unit_range(images, f"memorisation ({name})")
    nearest, gen_dist = nearest_images(generated, train)
    _, real_dist = nearest_images(held_out, train)
    threshold = torch.quantile(real_dist, quantile).item()
    return {
        "generated_median": gen_dist.median().item(),
        "held_out_median": real_dist.median().item(),
        "threshold": threshold,
        "copied_fraction": (gen_dist < threshold).float().mean().item(),
        "nearest": nearest,
    }
