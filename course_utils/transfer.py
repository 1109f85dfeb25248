"""Transfer learning: reuse a network trained on one task for another (lesson 05).

A network trained on a large *source* task has learned features worth keeping: early layers detect
edges and textures that every visual task needs, later layers combine them into parts and objects
that are more specific to the source classes. Transfer learning keeps those features and retrains
what must change. Three strategies, from least to most trainable:

- **feature extraction**: freeze the whole backbone, train a new head. Fast, safe with few labels.
- **partial fine-tuning**: also train the last block(s), whose features are the most task-specific.
- **full fine-tuning**: train everything, with *discriminative learning rates* (small for the early,
  general layers, larger for the late ones and the head) so that the pretrained features are
  adjusted rather than destroyed; *gradual unfreezing* goes there step by step, from the head down.

Models are described by ``blocks``: lists of child-module names from input to output, e.g.
:func:`resnet_blocks` ``= [["conv1", "bn1"], ["layer1"], ..., ["fc"]]``; the last block is the head.

When the target *domain* differs (other images, same classes) and its labels are scarce, domain
adaptation also uses unlabelled target images: :func:`mmd_loss` pulls the feature distributions of
the two domains together; :class:`DANN` trains the features to fool a domain classifier through a
:func:`grad_reverse` layer. Schedules (:class:`GroupScheduler`) scale *each* parameter group's own
base rate, so they never flatten discriminative rates (``OneCycleLR`` with one ``max_lr`` does).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from .train import fit

__all__ = [
    "STRATEGIES",
    "resnet_blocks",
    "set_strategy",
    "trainable_parameters",
    "replace_head",
    "discriminative_groups",
    "GradualUnfreezing",
    "warmup_cosine",
    "one_cycle",
    "GroupScheduler",
    "AUGMENTATIONS",
    "augmentation",
    "mmd_loss",
    "grad_reverse",
    "DANN",
    "dann_lambda",
    "accuracy",
    "fine_tune",
    "adapt_domain",
]

#: The three fine-tuning strategies, from least to most trainable.
STRATEGIES = ("feature_extraction", "partial", "full")


# --------------------------------------------------------------------------------------------
# What trains: strategies, heads, learning rates per block
# --------------------------------------------------------------------------------------------


def resnet_blocks(model: nn.Module) -> list[list[str]]:
    """The blocks of a torchvision-style ResNet, input to output: the stem (``conv1``, ``bn1``),
    each ``layerN`` present, and the head ``fc``. Works for the course's ``resnet_small`` and
    ``resnet18/50`` as well as torchvision's."""
    names = dict(model.named_children())
    missing = [n for n in ("conv1", "bn1", "fc") if n not in names]
    if missing:
        raise ValueError(f"not a ResNet: no child module(s) {missing}")
    layers = [[n] for n in names if n.startswith("layer")]
    return [["conv1", "bn1"], *layers, ["fc"]]


def _block_parameters(model: nn.Module, block: Sequence[str]) -> list[nn.Parameter]:
    children = dict(model.named_children())
    unknown = [n for n in block if n not in children]
    if unknown:
        raise ValueError(f"unknown module name(s) {unknown}; the model has {list(children)}")
    return [p for n in block for p in children[n].parameters()]


def set_strategy(
    model: nn.Module, blocks: Sequence[Sequence[str]], strategy: str, trainable_blocks: int = 1
) -> nn.Module:
    """Freeze or unfreeze ``model`` in place for one of :data:`STRATEGIES` and return it.

    ``feature_extraction`` trains only the head (the last block); ``partial`` also the
    ``trainable_blocks`` blocks before it; ``full`` everything. Frozen means ``requires_grad=False``:
    no gradient is computed for those weights, which also saves memory and time. (Batch-norm
    statistics still update in ``train()`` mode; call ``.eval()`` on frozen blocks to keep them.)
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "feature_extraction":
        trainable = 1
    elif strategy == "partial":
        trainable = 1 + trainable_blocks
    else:
        trainable = len(blocks)
    for i, block in enumerate(blocks):
        for p in _block_parameters(model, block):
            p.requires_grad_(i >= len(blocks) - trainable)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """How many parameters would train (``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def replace_head(
    model: nn.Module,
    num_classes: int,
    hidden: int | None = None,
    dropout: float = 0.0,
    head: str = "fc",
) -> nn.Module:
    """Swap the classifier ``model.<head>`` (an ``nn.Linear``) for a new one with ``num_classes``
    outputs, in place, and return the model.

    ``hidden=None`` gives one linear layer; otherwise a small MLP ``Linear -> ReLU -> Dropout ->
    Linear``, which can adapt the features more but needs more labels. The new head starts from
    random weights and is trainable.
    """
    old = getattr(model, head, None)
    if not isinstance(old, nn.Linear):
        raise ValueError(f"model.{head} must be an nn.Linear to replace, got {type(old).__name__}")
    features = old.in_features
    if hidden is None:
        new = nn.Linear(features, num_classes)
    else:
        new = nn.Sequential(
            nn.Linear(features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
    setattr(model, head, new)
    return model


def discriminative_groups(
    model: nn.Module, blocks: Sequence[Sequence[str]], lr: float, decay: float = 0.3
) -> list[dict]:
    """Optimizer parameter groups with discriminative learning rates: the head gets ``lr``, the
    block before it ``lr * decay``, the one before ``lr * decay**2``, and so on down to the stem.

    Only trainable parameters are included (a frozen block gives no group). Each group also records
    its ``"block"`` index and its ``"base_lr"``, which :class:`GroupScheduler` scales.
    """
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    groups = []
    for i, block in enumerate(blocks):
        params = [p for p in _block_parameters(model, block) if p.requires_grad]
        if params:
            rate = lr * decay ** (len(blocks) - 1 - i)
            groups.append({"params": params, "lr": rate, "base_lr": rate, "block": i})
    return groups


class GradualUnfreezing:
    """ULMFiT's gradual unfreezing (Howard and Ruder, 2018): start with only the head trainable,
    then unfreeze one more block, from the top down, every ``every`` epochs.

    Unfreezing sets ``requires_grad`` *and* adds the block's parameters to the optimizer as a new
    group with its discriminative rate (``lr * decay**depth``): a parameter the optimizer does not
    know is never updated, however trainable it is. Call :meth:`step` at the start of each epoch.
    """

    def __init__(
        self,
        model: nn.Module,
        blocks: Sequence[Sequence[str]],
        optimizer: torch.optim.Optimizer,
        lr: float,
        decay: float = 0.3,
        every: int = 1,
    ):
        if every < 1:
            raise ValueError(f"every must be >= 1 epoch, got {every}")
        self.model, self.blocks, self.optimizer = model, list(blocks), optimizer
        self.lr, self.decay, self.every = lr, decay, every
        self.unfrozen = 1  # the head
        set_strategy(model, self.blocks, "feature_extraction")
        known = {id(p) for g in optimizer.param_groups for p in g["params"]}
        head = _block_parameters(model, self.blocks[-1])
        if not all(id(p) in known for p in head):
            raise ValueError("the optimizer must be built on the head's parameters")

    def step(self, epoch: int) -> bool:
        """Unfreeze the next block if ``epoch`` (0-based) calls for it; True if one was added."""
        wanted = min(len(self.blocks), 1 + epoch // self.every)
        added = False
        while self.unfrozen < wanted:
            index = len(self.blocks) - 1 - self.unfrozen
            params = _block_parameters(self.model, self.blocks[index])
            for p in params:
                p.requires_grad_(True)
            rate = self.lr * self.decay**self.unfrozen
            self.optimizer.add_param_group(
                {"params": params, "lr": rate, "base_lr": rate, "block": index}
            )
            self.unfrozen += 1
            added = True
        return added


# --------------------------------------------------------------------------------------------
# Learning-rate schedules that respect per-group rates
# --------------------------------------------------------------------------------------------


def warmup_cosine(step: int, total: int, warmup: int = 0) -> float:
    """Multiplier at ``step``: linear warm-up from ~0 to 1 over ``warmup`` steps, then a cosine
    decay to 0 at ``total``. Warm-up keeps the first, large and noisy updates of a fresh head from
    wrecking the pretrained features; the cosine anneals gently to a fine minimum."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def one_cycle(step: int, total: int, pct_start: float = 0.3, div: float = 25.0) -> float:
    """One-cycle multiplier (Smith, 2018): cosine from ``1/div`` up to 1 over the first
    ``pct_start`` of the steps, then cosine down to ~0. High rates mid-training explore, the long
    decay settles."""
    peak = max(1, round(pct_start * total))
    if step < peak:
        start = 1 / div
        return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / peak))
    progress = (step - peak) / max(1, total - peak)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class GroupScheduler:
    """Set every parameter group's rate to ``its own base_lr * factor(step)`` after each step.

    ``factor(step)`` is e.g. ``functools.partial(warmup_cosine, total=..., warmup=...)``. Groups
    keep their ratios (discriminative rates survive), and groups added later (gradual unfreezing)
    are scheduled too: a group without ``"base_lr"`` takes its current ``lr`` as base. torch's
    ``LambdaLR`` does the same for a fixed set of groups; ``OneCycleLR`` given a single ``max_lr``
    would set all groups to one rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[int], float]):
        self.optimizer, self.factor, self.step_count = optimizer, factor, 0
        self._apply()

    def _apply(self) -> None:
        scale = self.factor(self.step_count)
        for group in self.optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
            group["lr"] = group["base_lr"] * scale

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]


# --------------------------------------------------------------------------------------------
# Augmentation presets
# --------------------------------------------------------------------------------------------

#: Names accepted by :func:`augmentation`, from gentle to strong.
AUGMENTATIONS = ("minimal", "moderate", "aggressive", "autoaugment")


def augmentation(preset: str, size: int, flip: bool = True) -> v2.Compose:
    """A training transform for ``uint8`` image tensors ``[3, H, W]`` (or PIL images) that returns
    ``float32 [3, size, size]`` in [0, 1].

    - ``minimal``: resize and (optionally) flip: what every training set can afford;
    - ``moderate``: random crops of 60-100 % of the area, flip, mild colour jitter;
    - ``aggressive``: tighter crops, rotation, strong colour jitter, random greyscale and erasing;
    - ``autoaugment``: the policy AutoAugment searched on ImageNet (Cubuk et al., 2019).

    ``flip=False`` for images whose mirror image means something else (digits, text, road signs):
    which augmentations keep the label is a property of the domain, not of the preset.
    """
    if preset not in AUGMENTATIONS:
        raise ValueError(f"preset must be one of {AUGMENTATIONS}, got {preset!r}")
    flips = [v2.RandomHorizontalFlip()] if flip else []
    steps = {
        "minimal": [v2.Resize((size, size), antialias=True), *flips],
        "moderate": [
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
            *flips,
            v2.ColorJitter(0.2, 0.2, 0.2),
        ],
        "aggressive": [
            v2.RandomResizedCrop(size, scale=(0.3, 1.0), antialias=True),
            *flips,
            v2.RandomRotation(20),
            v2.ColorJitter(0.4, 0.4, 0.4, 0.1),
            v2.RandomGrayscale(0.2),
        ],
        "autoaugment": [
            v2.Resize((size, size), antialias=True),
            *flips,
            v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
        ],
    }[preset]
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.ToPureTensor()]
    if preset == "aggressive":  # erasing works on float tensors, so after the conversion
        tail.append(v2.RandomErasing(p=0.5, scale=(0.02, 0.15)))
    return v2.Compose([*steps, *tail])


# --------------------------------------------------------------------------------------------
# Domain adaptation: MMD and DANN
# --------------------------------------------------------------------------------------------


def mmd_loss(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] = (1, 2, 4, 8, 16)):
    """Squared maximum mean discrepancy between samples ``x [N, D]`` and ``y [M, D]``.

    ``MMD² = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)``: zero when the two samples have the
    same distribution (and exactly zero for identical samples, this biased estimate), larger the
    more they differ. ``k`` is a sum of Gaussian kernels ``exp(-|a - b|² / (2 s² m))`` over the
    ``bandwidths`` ``s``, scaled by the mean squared distance ``m`` so that the kernels suit any
    feature scale. Differentiable: minimising it pulls the two feature clouds together.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"expected samples [N, D] and [M, D] with the same D, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
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
        self.features = features
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.domain = nn.Sequential(
            nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor, scale: float = 1.0):
        f = self.features(x)
        return self.classifier(f), self.domain(grad_reverse(f, scale)).squeeze(1), f


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """DANN's schedule for the reversal scale: ``2 / (1 + exp(-gamma p)) - 1``, from 0 at the start
    (``p = 0``, when the domain classifier's gradients are still noise) to ~1 at the end."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


# --------------------------------------------------------------------------------------------
# Training loops for the lesson's experiments
# --------------------------------------------------------------------------------------------


class _Augmented(Dataset):
    """``(images, labels)`` tensors with ``transform`` applied to each image when it is read."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = self.images[i]
        return (self.transform(image) if self.transform else image), self.labels[i]


@torch.no_grad()
def accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 256
) -> float:
    """Top-1 accuracy of ``model`` (switched to ``eval()``) on ``images [N, C, H, W]``; models
    returning a tuple (like :class:`DANN`) are scored on their first output."""
    model.eval()
    dev = next(model.parameters()).device
    correct = 0
    for i in range(0, len(images), batch):
        out = model(images[i : i + batch].to(dev))
        out = out[0] if isinstance(out, tuple) else out
        correct += int((out.argmax(1).cpu() == labels[i : i + batch]).sum())
    return correct / len(images)


def fine_tune(
    model: nn.Module,
    blocks: Sequence[Sequence[str]],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    strategy: str,
    epochs: int,
    lr: float,
    decay: float = 0.3,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    warmup: float = 0.1,
    transform: Callable | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict:
    """Train ``model`` in place with one of :data:`STRATEGIES` or ``"gradual"`` (gradual
    unfreezing, one block per epoch), AdamW with discriminative rates (``decay`` per block down
    from the head; ``decay=1`` gives one rate, e.g. for training from scratch) and a warm-up +
    cosine schedule, then measure the accuracy on ``test`` after every epoch.

    ``train``/``test``: ``(images [N, C, H, W], labels [N])``; ``transform`` augments each training
    image. Shuffling is seeded: the same call gives the same result on the CPU. Returns
    ``{"accuracy": final, "test_accuracy": [per epoch], "train_loss": [per epoch],
    "trainable": parameters trainable at the end}``.
    """
    model.to(device)
    gradual = strategy == "gradual"
    set_strategy(model, blocks, "feature_extraction" if gradual else strategy)
    optimizer = torch.optim.AdamW(
        discriminative_groups(model, blocks, lr, decay), weight_decay=weight_decay
    )
    unfreezing = GradualUnfreezing(model, blocks, optimizer, lr, decay) if gradual else None
    loader = DataLoader(
        _Augmented(*train, transform),
        batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    total = epochs * len(loader)
    scheduler = GroupScheduler(
        optimizer, lambda step: warmup_cosine(step, total, round(warmup * total))
    )
    test_loader = DataLoader(TensorDataset(*test), batch_size=256)
    history = {"test_accuracy": [], "train_loss": []}
    for epoch in tqdm(range(epochs), desc=strategy, disable=not progress):
        if unfreezing:
            unfreezing.step(epoch)
        # one epoch of the course's training loop; the unfreezing happens between epochs
        epoch_history = fit(
            model,
            loader,
            test_loader,
            epochs=1,
            optimizer=optimizer,
            scheduler=scheduler,
            device=device,
            progress=False,
        )
        history["train_loss"] += epoch_history.train_loss
        history["test_accuracy"] += epoch_history.val_metric
    return history | {
        "accuracy": history["test_accuracy"][-1],
        "trainable": trainable_parameters(model),
    }


def adapt_domain(
    model: DANN,
    source: tuple[torch.Tensor, torch.Tensor],
    target: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    method: str,
    epochs: int,
    lr: float,
    weight: float = 1.0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict:
    """Train a :class:`DANN` on labelled ``source`` images and *unlabelled* ``target`` images.

    ``method``:

    - ``"none"``: source images and labels only, the baseline;
    - ``"adabn"``: the same loss, but every batch also carries target images, so batch norm
      normalises with statistics of both domains (and keeps them for test time): AdaBN (Li et
      al., 2016), a free partial adaptation;
    - ``"mmd"``: + ``weight`` * :func:`mmd_loss` between the batch's source and target features;
    - ``"dann"``: + ``weight`` * the domain classifier's loss through gradient reversal, scaled by
      :func:`dann_lambda`.

    The target labels are never used for training, only in ``test`` to measure the accuracy after
    every epoch. Returns ``{"accuracy", "test_accuracy", "train_loss"}`` like :func:`fine_tune`.
    """
    methods = ("none", "adabn", "mmd", "dann")
    if method not in methods:
        raise ValueError(f"method must be one of {methods}, got {method!r}")
    model.to(device)
    g = torch.Generator().manual_seed(0)
    source_loader = DataLoader(
        TensorDataset(*source), batch_size, shuffle=True, generator=g, drop_last=True
    )
    steps = len(source_loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = GroupScheduler(optimizer, lambda step: warmup_cosine(step, epochs * steps, steps))
    total, done = epochs * steps, itertools.count()

    def step(model: DANN, batch, device) -> torch.Tensor:
        """The loss of one batch: source classification (+ the alignment term)."""
        xs, ys = batch
        xt = target[torch.randint(len(target), (batch_size,), generator=g)]
        scale = dann_lambda(next(done) / total)
        x = xs if method == "none" else torch.cat([xs, xt])
        logits, domain, features = model(x.to(device), scale)
        loss = F.cross_entropy(logits[:batch_size], ys.to(device))
        if method == "mmd":
            loss = loss + weight * mmd_loss(features[:batch_size], features[batch_size:])
        elif method == "dann":
            is_target = torch.arange(2 * batch_size, device=device) >= batch_size
            loss = loss + weight * F.binary_cross_entropy_with_logits(domain, is_target.float())
        return loss

    history = {"test_accuracy": [], "train_loss": []}
    for _ in tqdm(range(epochs), desc=f"adaptation: {method}", disable=not progress):
        epoch_history = fit(
            model,
            source_loader,
            epochs=1,
            optimizer=optimizer,
            scheduler=scheduler,
            train_step=step,
            device=device,
            progress=False,
        )
        history["train_loss"] += epoch_history.train_loss
        history["test_accuracy"].append(accuracy(model, *test))
    return history | {"accuracy": history["test_accuracy"][-1]}
