"""Lesson 05: what trains -- the three fine-tuning strategies, a new head, discriminative learning
rates and gradual unfreezing.

Models are described by ``blocks``: lists of child-module names from input to output, e.g.
:func:`resnet_blocks` ``= [["conv1", "bn1"], ["layer1"], ..., ["fc"]]``; the last block is the head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_num_classes

__all__ = [
    "STRATEGIES",
    "resnet_blocks",
    "set_strategy",
    "replace_head",
    "discriminative_groups",
    "GradualUnfreezing",
]

#: The three fine-tuning strategies, from least to most trainable.
STRATEGIES = ("feature_extraction", "partial", "full")


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
    Count what trains with ``models.count_parameters(model, trainable_only=True)``.
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
    check_num_classes(num_classes, what="replace_head")
    if hidden is not None and hidden < 1:
        raise ValueError(f"replace_head: hidden must be None or a positive width, got {hidden}")
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
    setattr(model, head, new.to(old.weight.device))
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
