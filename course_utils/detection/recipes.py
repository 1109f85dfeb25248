"""The shipped detector (lesson 03): a CenterNet trained on the digit scenes, and its recipe.

Lesson 03 calls :func:`train_detector_digits` with ``progress=True`` to retrain the shipped
detector in front of the learner; lesson 04 reuses :data:`DIGIT_SCENES` so that its segmenters
see the same scenes. ``python -m course_utils.zoo detector_digits`` retrains it.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..data import digit_scenes
from ..zoo import Entry
from .centernet import CenterNet
from .detector import evaluate_detector, train_detector
from .faster_rcnn import FasterRCNN
from .retinanet import RetinaNet

__all__ = [
    "DIGIT_SCENES",
    "SCENE_CONFIG",
    "build_centernet_digits",
    "train_detector_digits",
]

#: The scenes of the shipped detector and segmenters: ``DigitScenes(**DIGIT_SCENES)``.
DIGIT_SCENES = {"image_size": 96, "digit_size": [16, 32], "max_digits": 4, "seed": 0}


def train_detector_digits(
    model: nn.Module,
    *,
    scenes: dict,
    train_scenes: int,
    test_scenes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train a detector on ``train_scenes`` digit scenes (``DigitScenes(**scenes)``) and measure
    its COCO mAP on ``test_scenes`` held-out scenes, whose handwriting it has never seen.

    Returns ``{"metric": "map_50", "value": ..., "map": ...}`` (``map``: the 0.5:0.95 average).
    """
    train = digit_scenes(train_scenes, "train", **scenes)
    train_detector(
        model,
        train,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    scores = evaluate_detector(model, digit_scenes(test_scenes, "test", **scenes))
    return {"metric": "map_50", "value": scores["map_50"], "map": scores["map"]}


#: The shipped detector's architecture: a CenterNet for the 10 digits (labels 1-10), which lesson
#: 04's instance segmenter builds on.
build_centernet_digits = functools.partial(CenterNet, num_classes=10)

_RECIPE = {
    "scenes": DIGIT_SCENES,
    "train_scenes": 1600,
    "test_scenes": 200,
    "epochs": 20,
    "lr": 3e-3,
    "batch_size": 32,
}
#: What the detector's inputs and outputs mean; the segmenters of lesson 04 share it.
SCENE_CONFIG = {
    "in_channels": 3,
    "scene_size": DIGIT_SCENES["image_size"],  # trained on 96x96 scenes; any size works
    "input_range": [0, 1],
    "num_classes": 10,
    "labels": "digit + 1 (0 is the background)",
}


def _detector(name: str, build: functools.partial, architecture: str, family: str) -> Entry:
    """A detector of lesson 03's comparison: the same scenes, recipe and backbone for each."""
    return Entry(
        name,
        build,
        train_detector_digits,
        _RECIPE,
        notes={"optimizer": "AdamW(weight_decay=1e-4), OneCycleLR(pct_start=0.15), grad_clip=10"},
        architecture=architecture,
        description=f"{family} detector of the 10 digits in 96x96 digit scenes (lesson 03)",
        config=SCENE_CONFIG,
    )


#: The shipped models of this module; the manifest names the module, so ``zoo.load`` finds them.
CHECKPOINTS = (
    _detector(
        "detector_digits",
        build_centernet_digits,
        ": PyramidBackbone + CenterNetHead, stride 4",
        "CenterNet",
    ),
    _detector(
        "retinanet_digits",
        functools.partial(RetinaNet, num_classes=10),
        ": PyramidBackbone (P2, P3) + RetinaNetHead (2-conv towers), 6 anchors per position, "
        "sigmoid focal loss + L1 box loss",
        "one-stage, anchor-based",
    ),
    _detector(
        "faster_rcnn_digits",
        functools.partial(FasterRCNN, num_classes=10),
        ": PyramidBackbone (P2, P3) + RPN (256 sampled anchors) + RoI Align 7x7 + box head "
        "(64 sampled RoIs)",
        "two-stage",
    ),
)
