"""Lesson 05: self-supervised pretraining -- features learnt from images without labels, scored by
a linear probe.

SimCLR (Chen et al., 2020) in three parts:

- ``random_views``: two random augmentations ("views") of every image. Each image gets its own
  random rotation, scale, shift and contrast, so the two views share the digit's *shape* and
  little else.
- ``SimCLR``: the encoder (any network [B, C, H, W] -> features [B, D]) followed by a small MLP,
  the *projection head*; the loss is computed on the projections, the head is thrown away
  afterwards and the encoder's features are the result.
- ``nt_xent``: the NT-Xent loss (normalised temperature-scaled cross-entropy). In a batch of B
  images there are 2B views; for each one, its partner view is the right answer of a
  (2B - 1)-way classification by cosine similarity. Nothing in it knows a label.

``pretrain_simclr`` trains a ``SimCLR`` model with the course's ``fit``. ``linear_probe`` is how
self-supervised features are scored: freeze them, fit a multinomial logistic regression on the
labelled training features, report its test accuracy. A linear classifier can only use what the
features already make linearly separable, so it measures the features, not the classifier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .checks import check_images, check_labels, check_lengths
from .train import History, fit

__all__ = ["random_views", "nt_xent", "SimCLR", "pretrain_simclr", "linear_probe"]


def random_views(
    images: torch.Tensor,
    *,
    degrees: float = 15.0,
    scale: tuple[float, float] = (0.75, 1.1),
    shift: float = 0.15,
    contrast: tuple[float, float] = (0.5, 1.0),
    noise: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random augmentation of every image, each image drawn on its own.

    images: [B, C, H, W] float in [0, 1] -> [B, C, H, W] float in [0, 1], on the same device.

    Per image: a rotation of up to ``degrees`` either way, a zoom by a factor in ``scale``, a
    shift of up to ``shift`` of the image side (one ``affine_grid`` + ``grid_sample`` for the
    whole batch: torchvision's v2 transforms would give every image of a batch the *same* draw),
    then the intensities multiplied by a factor in ``contrast`` and Gaussian noise of standard
    deviation ``noise``. No flips: a mirrored 2 is not a digit. The draws come from
    ``generator`` (a CPU generator; default torch's global one, see ``seed_everything``).
    """
    check_images(images, what="random_views", value_range=(0, 1))
    if not 0 < scale[0] <= scale[1] or not 0 <= contrast[0] <= contrast[1]:
        raise ValueError(f"scale and contrast must be (low, high) ranges, got {scale}, {contrast}")

    def uniform(low: float, high: float) -> torch.Tensor:  # [B] on the CPU, then moved
        draw = torch.rand(len(images), generator=generator)
        return (low + (high - low) * draw).to(images.device)

    angle = uniform(-degrees, degrees) * math.pi / 180
    zoom = uniform(*scale)
    dx, dy = uniform(-shift, shift) * 2, uniform(-shift, shift) * 2  # grid coordinates span 2
    # affine_grid maps *output* coordinates to input ones: zooming in by s samples a 1/s window
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, dx], 1), torch.stack([sin, cos, dy], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # zeros outside: the digits' background is black, so a shifted digit stays on black
    views = F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)
    views = views * uniform(*contrast)[:, None, None, None]
    noise_draw = torch.randn(images.shape, generator=generator).to(images.device)
    return (views + noise * noise_draw).clamp(0, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """The NT-Xent loss of SimCLR for two views of the same B images.

    z1, z2: [B, D], row i of both from image i -> scalar (mean over the 2B views).

    The 2B projections are L2-normalised and compared by cosine similarity divided by
    ``temperature``. View k's positive is its partner (row i of the other view); its negatives are
    the other 2B - 2 views (itself excluded). The loss of view k is the cross-entropy of that
    (2B - 1)-way choice: ``-log(exp(s_kp) / sum_{j != k} exp(s_kj))``. A low temperature sharpens
    the softmax, so the hardest negatives dominate the gradient.
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"expected two [B, D] batches of the same shape, got {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}"
        )
    if len(z1) < 2:
        raise ValueError("NT-Xent needs at least 2 images per batch: the others are the negatives")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2B, D]
    similarity = z @ z.T / temperature  # [2B, 2B]
    # a view is not its own negative: -inf on the diagonal removes it from the softmax
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    b = len(z1)
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)  # k -> k +- B
    return F.cross_entropy(similarity, partner)


class SimCLR(nn.Module):
    """An encoder with SimCLR's projection head on top.

    x: [B, C, H, W] -> projections [B, projection_dim]; ``encoder(x)`` must give [B, feature_dim].

    The head is Linear -> ReLU -> Linear. Chen et al. found that the features *before* such a head
    transfer better than the projections after it: the loss makes the projections invariant to
    the augmentations, and the head absorbs that, so the encoder keeps more of the image.
    """

    def __init__(self, encoder: nn.Module, feature_dim: int, projection_dim: int = 64):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(
            nn.Linear(feature_dim, feature_dim),
            nn.ReLU(inplace=True),
            nn.Linear(feature_dim, projection_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def pretrain_simclr(
    model: SimCLR,
    images: torch.Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 256,
    temperature: float = 0.5,
    device: torch.device | str | None = None,
    max_steps_per_epoch: int | None = None,
    progress: bool = False,
) -> History:
    """Train ``model`` in place on ``images`` [N, C, H, W] (no labels) with NT-Xent.

    Every step draws two fresh ``random_views`` of a batch and minimises ``nt_xent`` of their
    projections, with AdamW (``fit``'s default). Larger batches give more negatives per view,
    which SimCLR needs; the last, incomplete batch is dropped so that every batch has them.
    Batches are shuffled by a generator seeded with 0 and the views drawn from torch's global
    generator: call ``seed_everything`` first for a run that repeats. Returns the
    :class:`~course_utils.train.History` (training loss per epoch).
    """
    if not isinstance(model, SimCLR):
        raise TypeError(f"expected a SimCLR model (encoder + head), got {type(model).__name__}")
    check_images(images, what="pretrain_simclr", value_range=(0, 1))
    if len(images) < 2:
        raise ValueError("pretrain_simclr needs at least 2 images: the others are the negatives")
    shuffle = torch.Generator().manual_seed(0)
    batch_size = min(batch_size, len(images))
    loader = DataLoader(
        TensorDataset(images), batch_size, shuffle=True, drop_last=True, generator=shuffle
    )

    def contrastive_step(model, batch, dev):
        x = batch[0].to(dev)
        return nt_xent(model(random_views(x)), model(random_views(x)), temperature)

    return fit(
        model,
        loader,
        epochs=epochs,
        optimizer=torch.optim.AdamW(model.parameters(), lr=lr),
        device=device,
        max_steps_per_epoch=max_steps_per_epoch,
        train_step=contrastive_step,
        metric=None,
        progress=progress,
    )


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    C: float = 1.0,
    max_iter: int = 500,
) -> dict:
    """Fit a multinomial logistic regression on frozen features and score it.

    train_features [N, D], train_labels [N] int64 in 0..K-1, test_features [M, D], test_labels [M]
    -> ``{"accuracy", "train_accuracy", "probabilities" [M, K]}``.

    The features are standardised with the training mean and standard deviation (features of
    different encoders come in very different scales), then one ``nn.Linear(D, K)`` is fitted by
    full-batch L-BFGS to the objective of scikit-learn's ``LogisticRegression(C=C)``: mean
    cross-entropy + ``||W||^2 / (2 C N)`` (the bias is not penalised). The objective is convex,
    so the optimum is unique and the result matches scikit-learn's; ``C`` is the inverse strength
    of the penalty.
    """
    for name, feats, labels in (
        ("train", train_features, train_labels),
        ("test", test_features, test_labels),
    ):
        if not isinstance(feats, torch.Tensor) or feats.dim() != 2:
            got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise ValueError(f"linear_probe takes {name} features [N, D], got {got}")
        check_labels(labels, what=f"linear_probe ({name})", length=len(feats))
        check_lengths(f"linear_probe ({name})", features=feats, labels=labels)
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train and test features differ in size: {train_features.shape[1]} and "
            f"{test_features.shape[1]}; extract both with the same encoder"
        )
    if C <= 0:
        raise ValueError(f"C must be positive, got {C}")
    x_train, x_test = train_features.double().cpu(), test_features.double().cpu()
    y_train, y_test = train_labels.long().cpu(), test_labels.long().cpu()
    mean, std = x_train.mean(0), x_train.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant feature stays 0, not nan
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    classes = int(max(y_train.max(), y_test.max())) + 1
    probe = nn.Linear(x_train.shape[1], classes).double()
    nn.init.zeros_(probe.weight), nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(
        probe.parameters(), max_iter=max_iter, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def objective():
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(x_train), y_train)
        loss = loss + probe.weight.pow(2).sum() / (2 * C * len(x_train))
        loss.backward()
        return loss

    optimizer.step(objective)
    with torch.no_grad():
        probabilities = probe(x_test).softmax(1)
        train_accuracy = (probe(x_train).argmax(1) == y_train).double().mean().item()
    return {
        "accuracy": (probabilities.argmax(1) == y_test).double().mean().item(),
        "train_accuracy": train_accuracy,
        "probabilities": probabilities.float(),
    }
