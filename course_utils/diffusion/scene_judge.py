"""Lesson 12: a judge for text-to-image that reads a scene's digits, colours and places.

A generated scene is right when it shows what its prompt asked for, and checking that by eye does
not scale to hundreds of samples. :class:`SceneJudge` is a small CNN trained on real captioned
scenes (:func:`~course_utils.data.captioned_scenes`) to say, for each of the five
:data:`~course_utils.data.SLOTS`, which digit is there (or that the slot is empty) and in which
colour. Before it judges a generated scene it is scored on real scenes of handwriting it never
saw (:func:`judge_accuracy`): a judge that misreads real scenes would make any verdict on
generated ones meaningless.

:func:`prompt_accuracy` then compares what the judge reads in each generated scene with what the
prompt asked for, slot by slot; its penultimate features (:meth:`SceneJudge.features`) serve for a
Fréchet distance between real and generated scenes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images
from ..data.captions import COLOURS, EMPTY, SLOTS, CaptionedScenes, parse_caption
from ..train import fit_one_cycle
from .training import seeded_loader

__all__ = ["SceneJudge", "train_scene_judge", "read_scenes", "judge_accuracy", "prompt_accuracy"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers, then a 2x2 max pool (halves the size)."""
    layers = []
    for c in (c_in, c_out):
        layers += [nn.Conv2d(c, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class SceneJudge(nn.Module):
    """``forward(images [N, 3, 32, 32] in [0, 1]) -> (digit_logits [N, 5, 11], colour_logits
    [N, 5, 4])``: for each slot, scores for the digits 0-9 and "empty", and for the colours.

    The convolutions keep a 4x4 map and the head sees all of it (no global pooling): whether a
    digit is on the left or at the top is exactly what a pooled feature would forget.
    """

    def __init__(self, width: int = 32, features: int = 256):
        super().__init__()
        self.body = nn.Sequential(
            _block(3, width), _block(width, 2 * width), _block(2 * width, 4 * width)
        )
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * width * 4 * 4, features), nn.ReLU(), nn.Dropout(0.2)
        )
        self.digit_head = nn.Linear(features, len(SLOTS) * (EMPTY + 1))
        self.colour_head = nn.Linear(features, len(SLOTS) * len(COLOURS))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The ``[N, 256]`` features the heads read (used for a Fréchet distance)."""
        return self.embed(self.body(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images)
        slots = len(SLOTS)
        return self.digit_head(h).view(-1, slots, EMPTY + 1), self.colour_head(h).view(
            -1, slots, len(COLOURS)
        )


def _loss(judge: SceneJudge, images, digits, colours) -> torch.Tensor:
    digit_logits, colour_logits = judge(images)
    # an empty slot has no colour (-1): cross-entropy skips it
    return F.cross_entropy(digit_logits.flatten(0, 1), digits.flatten()) + F.cross_entropy(
        colour_logits.flatten(0, 1), colours.flatten(), ignore_index=-1
    )


def train_scene_judge(
    judge: SceneJudge,
    scenes: CaptionedScenes,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
):
    """Train ``judge`` on ``scenes`` (images in [0, 1], their slot targets) with a cross-entropy
    per slot for the digit and the colour, AdamW and a one-cycle learning rate peaking at ``lr``.
    Returns the training ``History``."""
    targets = torch.stack([scenes.digits, scenes.colours], dim=1)  # [N, 2, 5]
    loader, _ = seeded_loader(scenes.images, targets, batch_size, seed, rescale=False)

    def step(judge, batch, device):
        x, y = (v.to(device) for v in batch)
        return _loss(judge, x, y[:, 0], y[:, 1])

    return fit_one_cycle(
        judge,
        loader,
        epochs=epochs,
        lr=lr,
        train_step=step,
        device=device,
        progress=progress,
    )


@torch.no_grad()
def read_scenes(
    judge: SceneJudge, images: torch.Tensor, batch_size: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``judge`` reads in ``images [N, 3, 32, 32]`` (in [0, 1]): ``digits [N, 5]`` (0-9 or
    :data:`~course_utils.data.EMPTY`) and ``colours [N, 5]`` (index into ``COLOURS``, -1 where
    it reads an empty slot)."""
    check_images(images, what="read_scenes", channels=3, size=32, value_range=(0, 1))
    judge.eval()
    device = next(judge.parameters()).device
    digits, colours = [], []
    for batch in images.split(batch_size):
        digit_logits, colour_logits = judge(batch.to(device))
        d = digit_logits.argmax(-1).cpu()
        digits.append(d)
        colours.append(torch.where(d == EMPTY, -1, colour_logits.argmax(-1).cpu()))
    return torch.cat(digits), torch.cat(colours)


def _scene_correct(read: tuple, digits: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """``[N]`` bool: every slot holds what was wanted (digit and colour; empty where nothing)."""
    read_digits, read_colours = read
    return ((read_digits == digits) & (read_colours == colours)).all(dim=1)


def judge_accuracy(judge: SceneJudge, scenes: CaptionedScenes) -> dict[str, float]:
    """How often ``judge`` reads real ``scenes`` exactly right (every slot), overall and for
    one- and two-digit scenes, and per object (a digit with its colour in its slot)."""
    read = read_scenes(judge, scenes.images)
    correct = _scene_correct(read, scenes.digits, scenes.colours)
    occupied = scenes.digits != EMPTY
    per_slot = (read[0] == scenes.digits) & (read[1] == scenes.colours)
    return {
        "scenes": correct.float().mean().item(),
        "one_digit": correct[~scenes.two].float().mean().item(),
        "two_digits": correct[scenes.two].float().mean().item(),
        "objects": per_slot[occupied].float().mean().item(),
    }


def prompt_accuracy(judge: SceneJudge, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """``[N]`` bool: generated ``images [N, 3, 32, 32]`` (in [0, 1]) show exactly what their
    ``prompts`` (captions of the grammar) ask for, slot by slot: the right digits in the right
    colours in the right places, and nothing else."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
    targets = [parse_caption(prompt) for prompt in prompts]
    digits = torch.tensor([d for d, _ in targets])
    colours = torch.tensor([c for _, c in targets])
    return _scene_correct(read_scenes(judge, images), digits, colours)
