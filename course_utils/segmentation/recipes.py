"""The shipped segmenters (lesson 04): a U-Net on the digit scenes and the detector's mask head.

Both use the scenes of lesson 03's detector (``detection.recipes.DIGIT_SCENES``), so that the
lesson can fuse the outputs of all three models. ``python -m course_utils.zoo NAME`` retrains one.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..data import digit_scenes, scene_masks
from ..detection.detector import detect, train_detector
from ..detection.metrics import mean_average_precision
from ..detection.recipes import DIGIT_SCENES, SCENE_CONFIG, build_centernet_digits
from ..zoo import Entry, load
from .instance import InstanceSegmenter
from .segmenter import evaluate_segmenter, train_segmenter
from .unet import UNet

__all__ = ["train_segmenter_digits", "train_instance_digits"]


def train_segmenter_digits(
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
    """Train a semantic segmenter (11 classes: background + 10 digits) on ``train_scenes`` digit
    scenes and measure it on ``test_scenes`` held-out scenes.

    Returns ``{"metric": "miou", "value": ..., "foreground_iou": ..., "pixel_accuracy": ...}``.
    """
    train_segmenter(
        model,
        scene_masks(train_scenes, "train", **scenes),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    scores = evaluate_segmenter(model, scene_masks(test_scenes, "test", **scenes), num_classes=11)
    return {
        "metric": "miou",
        "value": scores["miou"],
        "foreground_iou": scores["foreground_iou"],
        "pixel_accuracy": scores["pixel_accuracy"],
    }


def train_instance_digits(
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
    """Give an :class:`~course_utils.segmentation.InstanceSegmenter` the shipped detector
    (``detector_digits``), train its mask head on ``train_scenes`` scenes and measure mask mAP
    (COCO's ``segm``) on ``test_scenes`` held-out scenes.

    Returns ``{"metric": "mask_map_50", "value": ..., "mask_map": ..., "box_map_50": ...}``.
    """
    model.detector.load_state_dict(load("detector_digits").state_dict())
    keys = ("boxes", "labels", "masks")
    train = digit_scenes(train_scenes, "train", keys=keys, **scenes)
    train_detector(
        model,
        train,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    preds, targets = detect(model, digit_scenes(test_scenes, "test", keys=keys, **scenes))
    masks = mean_average_precision(preds, targets, iou_type="segm")
    boxes = mean_average_precision(preds, targets, iou_type="bbox")
    return {
        "metric": "mask_map_50",
        "value": masks["map_50"],
        "mask_map": masks["map"],
        "box_map_50": boxes["map_50"],
    }


def _instance_digits() -> nn.Module:
    """The shipped detector's architecture with a mask head on its stride-4 features."""
    return InstanceSegmenter(build_centernet_digits())


#: The shipped models of this module; the manifest names the module, so ``zoo.load`` finds them.
CHECKPOINTS = (
    Entry(
        "unet_digit_scenes",
        functools.partial(UNet, in_channels=3, num_classes=11, base=16, depth=3, bilinear=True),
        train_segmenter_digits,
        {
            "scenes": DIGIT_SCENES,
            "train_scenes": 2000,
            "test_scenes": 200,
            "epochs": 20,
            "lr": 3e-3,
            "batch_size": 32,
        },
        notes={
            "loss": "CombinedSegmentationLoss (cross-entropy + dice)",
            "optimizer": "AdamW(weight_decay=1e-4), OneCycleLR(pct_start=0.2)",
        },
        description="U-Net semantic segmenter of 96x96 digit scenes, 11 classes (lesson 04)",
        config=SCENE_CONFIG | {"num_classes": 11, "labels": "0 background, digit + 1"},
    ),
    Entry(
        "instance_digit_scenes",
        _instance_digits,
        train_instance_digits,
        {
            "scenes": DIGIT_SCENES,
            "train_scenes": 1600,
            "test_scenes": 200,
            "epochs": 12,
            "lr": 3e-3,
            "batch_size": 32,
        },
        notes={"optimizer": "AdamW(weight_decay=1e-4), OneCycleLR(pct_start=0.15), grad_clip=10"},
        architecture="InstanceSegmenter(CenterNet(num_classes=10), hidden=64, num_convs=4, "
        "roi_size=14): detector_digits (frozen) + MaskHead on its stride-4 features",
        description="detector_digits + a Mask R-CNN mask head: digit instance masks (lesson 04)",
        needs=("detector_digits",),
        config=SCENE_CONFIG,
    ),
)
