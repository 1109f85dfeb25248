"""Lesson 05: domain adaptation with unlabelled target images -- AdaBN, MMD and DANN.

When the target *domain* differs (other images, same classes) and its labels are scarce, the
unlabelled target images still say something:

- :func:`adapt_batch_norm` (AdaBN, Li et al. 2016) re-estimates every batch-norm layer's running
  statistics on target images after training, so that each layer standardises target features
  with target statistics at test time. No weight changes, no loss.
- :func:`mmd_loss` pulls the feature distributions of the two domains together during training
  (target images then share the training batches: batch norm sees mixed-domain statistics, a
  side effect of the batching, not AdaBN).
- :class:`DANN` trains the features to fool a domain classifier through a :func:`grad_reverse`
  layer, with the reversal scale ramped up by :func:`dann_lambda`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_finite, check_images
from ..train import evaluating

__all__ = ["adapt_batch_norm", "mmd_loss", "grad_reverse", "DANN", "dann_lambda"]


@torch.no_grad()
def adapt_batch_norm(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """AdaBN: replace the running mean and variance of every batch-norm layer of ``model`` by
    those of ``images`` [N, C, H, W] (target-domain images, no labels), in place; returns ``model``.

    The learnt weights stay; only the statistics change. Each layer's running statistics are
    reset, the images are forwarded with the batch-norm layers in ``train()`` mode (everything
    else in ``eval()``, so dropout stays off) and ``momentum=None``, which makes PyTorch keep the
    plain average over all batches instead of an exponential one. Afterwards every module is back
    in the mode it was in, and the momenta are restored.
    """
    images = check_images(images, what="adapt_batch_norm")
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not norms:
        raise ValueError(
            "adapt_batch_norm: the model has no batch-norm layer with running statistics, so "
            "AdaBN has nothing to re-estimate"
        )
    param = next(model.parameters(), None)
    dev = param.device if param is not None else torch.device("cpu")
    momenta = [m.momentum for m in norms]
    with evaluating(model):
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
            m.train()  # normalise with batch statistics, and record them
        try:
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size].to(dev))
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
    return model


def mmd_loss(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] = (1, 2, 4, 8, 16)):
    """Squared maximum mean discrepancy between samples ``x [N, D]`` and ``y [M, D]``.

    ``MMD² = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)``: zero when the two samples have the
    same distribution (and exactly zero for identical samples, this biased estimate), larger the
    more they differ. ``k`` is a sum of Gaussian kernels ``exp(-|a - b|² / (2 s² m))`` over the
    ``bandwidths`` ``s``, scaled by the mean squared distance ``m`` so that the kernels suit any
    feature scale. Differentiable: minimising it pulls the two feature clouds together.
    """
    check_finite(x, what="mmd_loss (x)")  # a tensor (NumPy arrays and lists get the fix), no NaN
    check_finite(y, what="mmd_loss (y)")
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) == 0:
        raise ValueError(
            f"mmd_loss: expected non-empty tensors [N, D] and [M, D] with the same D, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    both = torch.cat([x, y])
    distances = torch.cdist(both, both).pow(2)
    scale = distances.detach().mean().clamp(min=1e-12)
    kernel = sum(torch.exp(-distances / (2 * s**2 * scale)) for s in bandwidths)
    n = len(x)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None  # no gradient for the scale itself


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity on the way forward; multiplies the gradient by ``-scale`` on the way back.

    Placed between features and a domain classifier, it makes one backward pass train the
    classifier to *tell* the domains apart and the features to make that *impossible*.
    """
    return _GradientReversal.apply(x, scale)


class DANN(nn.Module):
    """Domain-adversarial network (Ganin et al., 2016): ``features`` -> class head, and
    ``features`` -> gradient reversal -> domain head (source 0 vs target 1).

    ``features``: any module ``[B, ...] -> [B, feature_dim]`` (e.g. a ResNet with ``fc =
    nn.Identity()``). ``forward(x, scale)`` returns ``(class_logits [B, num_classes],
    domain_logits [B], features [B, feature_dim])``.
    """

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int, hidden: int = 64):
        super().__init__()
        if min(feature_dim, num_classes, hidden) < 1:
            raise ValueError(
                f"DANN: feature_dim, num_classes and hidden must be positive, got {feature_dim}, "
                f"{num_classes} and {hidden}"
            )
        self.features = features
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.domain = nn.Sequential(
            nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor, scale: float = 1.0):
        f = self.features(x)
        if f.dim() != 2 or f.shape[1] != self.classifier.in_features:
            raise ValueError(
                f"DANN: the features module gave {tuple(f.shape)}, expected [B, "
                f"{self.classifier.in_features}] (feature_dim); end it with a pooling + flatten, "
                f"e.g. a ResNet with fc = nn.Identity()"
            )
        return self.classifier(f), self.domain(grad_reverse(f, scale)).squeeze(1), f


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """DANN's schedule for the reversal scale: ``2 / (1 + exp(-gamma p)) - 1``, from 0 at the start
    (``p = 0``, when the domain classifier's gradients are still noise) to ~1 at the end."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0
