"""Semantic, instance and panoptic segmentation: metrics, losses, models and panoptic fusion.

Segmentation classifies every pixel. A model maps an image [B, C, H, W] to logits
[B, K, H, W], one score per class and pixel; ``logits.argmax(1)`` is the label map [B, H, W]
that is compared with the target label map [B, H, W] (int64). Datasets mark pixels that should
not count (object borders in PASCAL VOC, unlabelled regions in Cityscapes) with an
``ignore_index``, usually 255: every metric and loss here leaves those pixels out entirely.

- Metrics: ``confusion_matrix`` (rows = target, columns = prediction), ``pixel_accuracy`` and
  ``mean_iou``. Pixel accuracy is dominated by large classes (sky, road); mean IoU weighs every
  class equally and is the standard benchmark number.
- Losses, all taking logits [B, K, H, W] and targets [B, H, W]: ``DiceLoss`` (overlap of soft
  masks, insensitive to class imbalance), ``FocalLossSegmentation`` (cross-entropy that
  down-weights easy pixels), ``CombinedSegmentationLoss`` (cross-entropy + dice) and
  ``BoundaryLoss`` (agreement of soft class boundaries).
- Models, each [B, C, H, W] -> logits [B, K, H, W] for any H, W: the encoder-decoders
  ``MiniUNet`` and ``UNet`` (skip connections restore detail), ``FCN8s`` (fuses class scores of
  three strides), ``DeepLabV3Plus`` (``ASPP`` of ``AtrousConv`` s for multi-scale context plus a
  light decoder), on any backbone shaped like ``TinyBackbone``.
- Instances and panoptic: ``MaskHead`` predicts Mask R-CNN's per-RoI masks; ``panoptic_fusion``
  merges instance masks (things) with a semantic map (stuff) into one map of segment ids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision.ops import roi_align

from .data import DigitScenes
from .train import fit_one_cycle, predict

__all__ = [
    "confusion_matrix",
    "pixel_accuracy",
    "mean_iou",
    "DiceLoss",
    "FocalLossSegmentation",
    "CombinedSegmentationLoss",
    "BoundaryLoss",
    "DoubleConv",
    "UpBlock",
    "MiniUNet",
    "UNet",
    "AtrousConv",
    "ASPP",
    "TinyBackbone",
    "FCN8s",
    "DeepLabV3Plus",
    "MaskHead",
    "mask_targets",
    "mask_loss",
    "paste_masks",
    "InstanceSegmenter",
    "panoptic_fusion",
    "scene_masks",
    "train_segmenter",
    "segment",
    "evaluate_segmenter",
]


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _valid_mask(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Boolean mask shaped like ``target``: True where the pixel counts (not ``ignore_index``)."""
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def _as_labels(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Check ``pred`` against ``target`` and return predicted labels shaped like ``target``.

    ``pred`` is either labels [N, ...] with ``target``'s shape or logits [N, K, ...] with one more
    dimension (class scores in dimension 1), which are turned into labels by argmax.
    """
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class labels, got dtype {target.dtype}")
    if pred.dim() == target.dim() + 1 and pred.is_floating_point():
        if pred.shape[:1] + pred.shape[2:] != target.shape:
            raise ValueError(
                f"logits {tuple(pred.shape)} do not match target {tuple(target.shape)}: "
                "expected logits [N, K, ...] for a target [N, ...]"
            )
        return pred.argmax(dim=1)
    if pred.is_floating_point():
        raise ValueError(
            f"pred must be integer labels shaped like target {tuple(target.shape)} or float "
            f"logits with a class dimension, got {pred.dtype} {tuple(pred.shape)}"
        )
    if pred.shape != target.shape:
        raise ValueError(
            f"pred labels {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape"
        )
    return pred


def confusion_matrix(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Count pixels by (true class, predicted class).

    Args:
        pred: labels [N, ...] or logits [N, K, ...].
        target: labels [N, ...]; pixels equal to ``ignore_index`` are not counted.
        num_classes: K.

    Returns:
        [K, K] int64 matrix ``cm`` with ``cm[t, p]`` = number of pixels of class ``t`` predicted
        as ``p``. The diagonal holds the correct pixels.
    """
    pred = _as_labels(pred, target)
    valid = _valid_mask(target, ignore_index)
    t, p = target[valid].long(), pred[valid].long()
    for name, labels in (("target", t), ("pred", p)):
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} labels must lie in [0, {num_classes}) outside ignore_index={ignore_index}, "
                f"got values in [{labels.min().item()}, {labels.max().item()}]"
            )
    # Each (t, p) pair becomes one bin index t * K + p: a single bincount fills the whole matrix.
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def pixel_accuracy(
    pred: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None
) -> float:
    """Fraction of (non-ignored) pixels whose predicted label equals the target label.

    Args:
        pred: labels [N, ...] or logits [N, K, ...].
        target: labels [N, ...].

    Returns:
        A float in [0, 1]; ``nan`` when every pixel is ignored.
    """
    pred = _as_labels(pred, target)
    valid = _valid_mask(target, ignore_index)
    num_valid = int(valid.sum())
    if num_valid == 0:
        return float("nan")
    return int((pred[valid] == target[valid]).sum()) / num_valid


def mean_iou(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = None,
) -> dict:
    """Intersection over union per class, and its mean over the classes that occur.

    For class ``c``, IoU = |pred == c and target == c| / |pred == c or target == c|. A class that
    is neither predicted nor present has an empty union: its IoU is undefined (``nan``) and it is
    left out of the mean, so it neither rewards nor punishes the model.

    Args:
        pred: labels [N, ...] or logits [N, K, ...].
        target: labels [N, ...]; pixels equal to ``ignore_index`` are not counted.
        num_classes: K.

    Returns:
        ``{"miou": float, "per_class": [K] float64 tensor}``; ``miou`` is ``nan`` if no class
        occurs at all. (torchmetrics' ``MulticlassJaccardIndex(average=None)`` reports 0 instead of
        ``nan`` for such classes; its ``average="macro"`` skips them, as here.)
    """
    cm = confusion_matrix(pred, target, num_classes, ignore_index).double()
    intersection = cm.diag()
    union = cm.sum(0) + cm.sum(1) - intersection
    per_class = intersection / union  # 0 / 0 = nan marks the classes that do not occur
    present = union > 0
    miou = per_class[present].mean().item() if present.any() else float("nan")
    return {"miou": miou, "per_class": per_class}


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def _check_logits_target(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None):
    """Validate logits [B, K, H, W] against target [B, H, W]; return the valid-pixel mask [B, H, W]."""
    if logits.dim() != 4 or not logits.is_floating_point():
        raise ValueError(
            f"expected float logits [B, K, H, W], got {logits.dtype} {tuple(logits.shape)}"
        )
    if target.shape != logits.shape[:1] + logits.shape[2:] or target.is_floating_point():
        raise ValueError(
            f"expected integer target [B, H, W] = {tuple(logits.shape[:1] + logits.shape[2:])}, "
            f"got {target.dtype} {tuple(target.shape)}"
        )
    valid = _valid_mask(target, ignore_index)
    labels = target[valid]
    num_classes = logits.shape[1]
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"target labels must lie in [0, {num_classes}) outside ignore_index={ignore_index}, "
            f"got values in [{labels.min().item()}, {labels.max().item()}]"
        )
    return valid


def _valid_one_hot(target: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot target [B, K, H, W] (float) that is all zeros at ignored pixels.

    Ignored pixels (e.g. 255) are first replaced by class 0 so ``F.one_hot`` never sees an
    out-of-range label, then zeroed by the mask.
    """
    safe = torch.where(valid, target, torch.zeros_like(target))
    one_hot = F.one_hot(safe.long(), num_classes).permute(0, 3, 1, 2).float()
    return one_hot * valid.unsqueeze(1)


def _soft_dice_loss(pred: torch.Tensor, true: torch.Tensor, smooth: float) -> torch.Tensor:
    """``1 - mean_c dice_c`` of soft masks pred, true [B, K, H, W], summed over batch and pixels.

    ``dice_c = (2 * sum(pred * true) + smooth) / (sum(pred) + sum(true) + smooth)``.
    """
    dims = (0, 2, 3)
    intersection = (pred * true).sum(dims)
    cardinality = pred.sum(dims) + true.sum(dims)
    dice = (2 * intersection + smooth) / (cardinality + smooth)
    return 1 - dice.mean()


class DiceLoss(nn.Module):
    """Soft dice loss, ``1 - mean_c dice_c``, on softmax probabilities.

    For class ``c``, with probabilities ``p`` and one-hot target ``g`` summed over valid pixels
    of the whole batch, ``dice_c = (2 * sum(p * g) + smooth) / (sum(p) + sum(g) + smooth)``.
    ``smooth`` keeps absent classes at dice 1 (0 / 0 would be undefined) and smooths the
    gradient. Ignored pixels enter neither the numerator nor the denominator.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int | None = None):
        super().__init__()
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits [B, K, H, W], target [B, H, W] -> scalar loss in [0, 1]."""
        valid = _check_logits_target(logits, target, self.ignore_index)
        probs = logits.softmax(dim=1) * valid.unsqueeze(1)
        one_hot = _valid_one_hot(target, valid, logits.shape[1])
        return _soft_dice_loss(probs, one_hot, self.smooth)


class FocalLossSegmentation(nn.Module):
    """Focal loss for segmentation: cross-entropy scaled by ``alpha_t * (1 - p_t) ** gamma``.

    ``p_t`` is the probability the model gives the true class. Well-classified pixels
    (``p_t`` near 1) contribute almost nothing, so training concentrates on hard pixels.
    ``alpha`` ([K], optional) weights each class. The loss is averaged over valid pixels; with
    ``gamma=0`` and no ``alpha`` it is exactly ``F.cross_entropy(..., ignore_index=...)``.
    """

    def __init__(
        self,
        alpha: torch.Tensor | None = None,
        gamma: float = 2.0,
        ignore_index: int | None = None,
    ):
        super().__init__()
        if alpha is not None:
            alpha = torch.as_tensor(alpha, dtype=torch.float32)
            if alpha.dim() != 1:
                raise ValueError(
                    f"alpha must be a per-class tensor [K], got shape {tuple(alpha.shape)}"
                )
        self.register_buffer("alpha", alpha)
        self.gamma = gamma
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits [B, K, H, W], target [B, H, W] -> scalar loss."""
        valid = _check_logits_target(logits, target, self.ignore_index)
        labels = target[valid].long()
        # Valid pixels only, as [P, K] logits: ignored labels never index anything.
        log_probs = logits.permute(0, 2, 3, 1)[valid].log_softmax(dim=1)
        log_pt = log_probs.gather(1, labels[:, None]).squeeze(1)
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.alpha is not None:
            if self.alpha.numel() != logits.shape[1]:
                raise ValueError(
                    f"alpha has {self.alpha.numel()} entries for {logits.shape[1]} classes"
                )
            loss = self.alpha[labels] * loss
        return loss.mean() if loss.numel() else logits.sum() * 0.0


class CombinedSegmentationLoss(nn.Module):
    """``ce_weight * cross_entropy + dice_weight * dice``: per-pixel accuracy plus region overlap.

    Both terms skip pixels equal to ``ignore_index``.
    """

    def __init__(
        self, ce_weight: float = 1.0, dice_weight: float = 1.0, ignore_index: int | None = None
    ):
        super().__init__()
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        self.dice = DiceLoss(ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits [B, K, H, W], target [B, H, W] -> scalar loss."""
        valid = _check_logits_target(logits, target, self.ignore_index)
        if valid.any():
            ignore = self.ignore_index if self.ignore_index is not None else -100
            ce = F.cross_entropy(logits, target.long(), ignore_index=ignore)
        else:  # cross_entropy would return nan for an all-ignored batch
            ce = logits.sum() * 0.0
        return self.ce_weight * ce + self.dice_weight * self.dice(logits, target)


def _soft_boundary(masks: torch.Tensor) -> torch.Tensor:
    """Morphological gradient of soft masks [B, K, H, W]: 3x3 dilation minus 3x3 erosion.

    It is about 1 on a class's border and about 0 inside and outside it. Max pooling passes
    gradients, so on probabilities this boundary map is differentiable.
    """
    dilation = F.max_pool2d(masks, 3, stride=1, padding=1)
    erosion = -F.max_pool2d(-masks, 3, stride=1, padding=1)
    return dilation - erosion


class BoundaryLoss(nn.Module):
    """Soft boundary loss: 1 - dice between the predicted and the true class boundaries.

    Boundaries come from ``_soft_boundary`` applied to the softmax probabilities and to the one-hot
    target. Comparing them as soft masks keeps the gradient that ``argmax`` would destroy.
    Only pixels whose whole 3x3 neighbourhood is valid are compared, so logits at ignored
    pixels cannot leak into the loss through the pooling window.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int | None = None):
        super().__init__()
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits [B, K, H, W], target [B, H, W] -> scalar loss in [0, 1]."""
        valid = _check_logits_target(logits, target, self.ignore_index)
        # Erode the valid mask: a pixel counts only if no ignored pixel lies in its 3x3 window.
        # Outside the image counts as valid (padding with -inf leaves the window's min unchanged).
        inner = -F.max_pool2d(-valid[:, None].float(), 3, stride=1, padding=1)
        pred = _soft_boundary(logits.softmax(dim=1)) * inner
        true = _soft_boundary(_valid_one_hot(target, valid, logits.shape[1])) * inner
        return _soft_dice_loss(pred, true, self.smooth)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def _check_image(x: torch.Tensor, in_channels: int, name: str) -> None:
    """Raise a ValueError unless ``x`` is an image batch [B, in_channels, H, W]."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects images [B, {in_channels}, H, W], got {tuple(x.shape)}")


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU: [B, C_in, H, W] -> [B, C_out, H, W]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """One decoder step of a U-Net: upsample x2, concatenate the encoder's skip, DoubleConv.

    ``bilinear=True`` upsamples by bilinear interpolation and halves the channels with a 1x1
    convolution (no learned upsampling, no checkerboard artefacts); ``bilinear=False`` uses a
    learned 2x2 transposed convolution. Either way the result is resized to the skip's size, so
    odd input sizes (where pooling floored the size) work.

    Shapes: x [B, C_in, h, w], skip [B, C_in // 2, H, W] -> [B, C_out, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True):
        super().__init__()
        self.bilinear = bilinear
        if bilinear:
            self.reduce = nn.Conv2d(in_channels, in_channels // 2, 1)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        size = skip.shape[-2:]
        if self.bilinear:
            x = self.reduce(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        else:
            x = self.up(x)
            # 2 * floor(H / 2) falls one short of an odd H: pad the missing row / column.
            x = F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))
        return self.conv(torch.cat([skip, x], dim=1))


class MiniUNet(nn.Module):
    """A two-level U-Net, small enough to train on a CPU in minutes.

    Encoder: DoubleConv (``base``) -> pool -> DoubleConv (2 * ``base``) -> pool -> bottleneck
    (4 * ``base``). Decoder: two ``UpBlock`` s, each concatenating the encoder features of the same
    resolution (the skip connections that restore detail lost by pooling), then a 1x1
    convolution to ``num_classes`` logits.

    Shapes: [B, in_channels, H, W] -> [B, num_classes, H, W], any H, W >= 4.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base: int = 16):
        super().__init__()
        self.in_channels = in_channels
        self.enc1 = DoubleConv(in_channels, base)
        self.enc2 = DoubleConv(base, 2 * base)
        self.bottleneck = DoubleConv(2 * base, 4 * base)
        self.up2 = UpBlock(4 * base, 2 * base, bilinear=False)
        self.up1 = UpBlock(2 * base, base, bilinear=False)
        self.head = nn.Conv2d(base, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, self.in_channels, "MiniUNet")
        if min(x.shape[-2:]) < 4:
            raise ValueError(
                f"MiniUNet pools twice: H and W must be at least 4, got {tuple(x.shape[-2:])}"
            )
        s1 = self.enc1(x)  # [B, base, H, W]
        s2 = self.enc2(F.max_pool2d(s1, 2))  # [B, 2 base, H/2, W/2]
        x = self.bottleneck(F.max_pool2d(s2, 2))  # [B, 4 base, H/4, W/4]
        x = self.up2(x, s2)
        x = self.up1(x, s1)
        return self.head(x)


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) with ``depth`` pooling steps.

    Level ``i`` of the encoder has ``base * 2**i`` channels; the bottleneck, after ``depth``
    poolings, has ``base * 2**depth``. The decoder mirrors the encoder with ``UpBlock`` s
    (``bilinear`` chooses interpolation or transposed convolutions).

    Shapes: [B, in_channels, H, W] -> [B, num_classes, H, W], any H, W >= 2**depth.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        base: int = 32,
        depth: int = 4,
        bilinear: bool = True,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.in_channels = in_channels
        self.depth = depth
        widths = [base * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList([DoubleConv(in_channels, widths[0])])
        self.encoder.extend(DoubleConv(widths[i], widths[i + 1]) for i in range(depth))
        self.decoder = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], bilinear) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(base, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, self.in_channels, "UNet")
        if min(x.shape[-2:]) < 2**self.depth:
            raise ValueError(
                f"UNet of depth {self.depth} pools {self.depth} times: H and W must be at least "
                f"{2**self.depth}, got {tuple(x.shape[-2:])}"
            )
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()  # the bottleneck
        for block in self.decoder:
            x = block(x, skips.pop())
        return self.head(x)


class AtrousConv(nn.Sequential):
    """3x3 convolution with holes (dilation ``rate``) + batch norm + ReLU.

    Spacing the kernel's taps ``rate`` pixels apart widens its view to (2 * rate + 1)^2 pixels at
    the cost of a 3x3 kernel, without reducing the resolution. Padding ``rate`` keeps H and W.

    Shapes: [B, C_in, H, W] -> [B, C_out, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, rate: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling (DeepLab v3): context at several scales, side by side.

    Parallel branches -- a 1x1 convolution, one ``AtrousConv`` per rate in ``rates`` and an
    image-pooling branch (global average, 1x1 convolution, broadcast back to H x W) for
    whole-image context -- are concatenated and projected to ``out_channels`` by a 1x1
    convolution. The pooling branch has no batch norm: it sees one value per channel and image,
    which batch norm cannot normalise in training with a batch of one.

    Shapes: [B, in_channels, H, W] -> [B, out_channels, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int = 256, rates=(6, 12, 18)):
        super().__init__()
        self.in_channels = in_channels
        pointwise = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.branches = nn.ModuleList([pointwise])
        self.branches.extend(AtrousConv(in_channels, out_channels, rate) for rate in rates)
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            nn.Conv2d((len(rates) + 2) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, self.in_channels, "ASPP")
        features = [branch(x) for branch in self.branches]
        features.append(self.image_pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(features, dim=1))


class TinyBackbone(nn.Module):
    """A small CNN encoder returning features at strides 4, 8, 16 and 32, for the models below.

    A stride-2 stem is followed by four stages of ``AtrousConv`` s, each halving the resolution,
    with ``widths`` channels. ``dilate_last=True`` keeps the last stage at stride 16 and dilates it
    instead (DeepLab's "output stride 16": more resolution, the same receptive field growth).

    Any backbone with the same interface can replace it: ``forward`` returns a list of feature
    maps from fine to coarse, and ``channels`` lists their channel counts. (A torchvision ResNet
    wrapped in ``torchvision.models._utils.IntermediateLayerGetter`` fits with a small adapter.)

    Shapes: [B, in_channels, H, W] -> [B, widths[i], H / 4 / 2**i, W / 4 / 2**i] for i = 0..3
    (sizes rounded up; the last one is H / 16 with ``dilate_last``).
    """

    def __init__(self, in_channels: int = 3, widths=(16, 32, 64, 128), dilate_last: bool = False):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths must give 4 stage widths, got {widths}")
        self.in_channels = in_channels
        self.channels = tuple(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        for i, width in enumerate(widths):
            stride = 1 if (dilate_last and i == 3) else 2
            rate = 2 if (dilate_last and i == 3) else 1
            downsample = nn.Conv2d(widths[max(i - 1, 0)], width, 3, stride=stride, padding=1)
            stages.append(nn.Sequential(downsample, AtrousConv(width, width, rate)))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_image(x, self.in_channels, "TinyBackbone")
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class FCN8s(nn.Module):
    """Fully Convolutional Network, 8s variant (Long et al., 2015).

    The coarsest features (stride 32) are scored per class with a 1x1 convolution, upsampled x2
    and added to the scores of the stride-16 features, upsampled x2 again and added to the scores
    of the stride-8 features, then upsampled x8 to the input size. Each addition brings back
    detail that the deeper layers lost. (The original learns its upsampling with transposed
    convolutions initialised to bilinear interpolation; plain bilinear interpolation is used here.)

    ``backbone`` returns features whose last three are at strides 8, 16 and 32 and lists their
    channels in ``backbone.channels``; by default a ``TinyBackbone``.

    Shapes: [B, C, H, W] -> [B, num_classes, H, W], any H, W.
    """

    def __init__(self, num_classes: int, backbone: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else TinyBackbone()
        self.score = nn.ModuleList(
            nn.Conv2d(c, num_classes, 1) for c in self.backbone.channels[-3:]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c8, c16, c32 = self.backbone(x)[-3:]
        scores = self.score[2](c32)
        for conv, features in ((self.score[1], c16), (self.score[0], c8)):
            up = F.interpolate(
                scores, size=features.shape[-2:], mode="bilinear", align_corners=False
            )
            scores = up + conv(features)
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)


class DeepLabV3Plus(nn.Module):
    """DeepLab v3+ (Chen et al., 2018): ASPP for context, a light decoder for sharp edges.

    The backbone's coarsest ("high-level") features go through ``ASPP``, are upsampled to the
    resolution of its finest ("low-level", stride 4) features -- reduced to 48 channels by a 1x1
    convolution so they do not drown the ASPP output -- concatenated with them, refined by two
    3x3 convolutions, scored and upsampled to the input size.

    ``backbone`` returns a list of features from fine to coarse (first = low-level, last =
    high-level) and lists their channels in ``backbone.channels``; by default a
    ``TinyBackbone(dilate_last=True)`` (output stride 16).

    Shapes: [B, C, H, W] -> [B, num_classes, H, W], any H, W.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: nn.Module | None = None,
        aspp_channels: int = 64,
        rates=(6, 12, 18),
    ):
        super().__init__()
        self.backbone = backbone if backbone is not None else TinyBackbone(dilate_last=True)
        low_channels, high_channels = self.backbone.channels[0], self.backbone.channels[-1]
        self.aspp = ASPP(high_channels, aspp_channels, rates)
        self.reduce_low = nn.Sequential(
            nn.Conv2d(low_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True)
        )
        self.refine = nn.Sequential(
            AtrousConv(aspp_channels + 48, aspp_channels),
            AtrousConv(aspp_channels, aspp_channels),
        )
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        low, high = self.reduce_low(features[0]), self.aspp(features[-1])
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.refine(torch.cat([low, high], dim=1)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class MaskHead(nn.Module):
    """Mask R-CNN's mask head: a small FCN applied to every region of interest.

    ``num_convs`` 3x3 convolutions on the RoI-aligned features (typically 14 x 14), a 2x2
    transposed convolution doubling the size, and a 1x1 convolution giving one mask logit map per
    class. At inference only the map of the detected class is kept (sigmoid, threshold 0.5) and
    pasted into the box; training uses binary cross-entropy on that map only, so classes do not
    compete for pixels.

    Shapes: [R, in_channels, S, S] -> [R, num_classes, 2 S, 2 S] (14 -> 28).
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 256, num_convs: int = 4):
        super().__init__()
        self.in_channels = in_channels
        layers = []
        for i in range(num_convs):
            layers += [
                nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, padding=1),
                nn.ReLU(inplace=True),
            ]
        self.convs = nn.Sequential(*layers)
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(hidden, hidden, 2, stride=2), nn.ReLU(inplace=True)
        )
        self.predictor = nn.Conv2d(hidden, num_classes, 1)

    def forward(self, rois: torch.Tensor) -> torch.Tensor:
        _check_image(rois, self.in_channels, "MaskHead")
        return self.predictor(self.upsample(self.convs(rois)))


def mask_targets(masks: torch.Tensor, boxes: torch.Tensor, size: int = 28) -> torch.Tensor:
    """What the mask head should predict in each box: the instance masks [K, H, W] cut out by
    their boxes [K, 4] (xyxy, pixel edges) and resampled to [K, size, size], 1.0 inside the object.

    RoIAlign does the cutting with bilinear sampling (``aligned=True``: box coordinates are pixel
    edges, as in :class:`~course_utils.data.DigitScenes`); the result is thresholded at 0.5.
    """
    if masks.dim() != 3 or boxes.shape != (len(masks), 4):
        raise ValueError(
            f"expected masks [K, H, W] and boxes [K, 4], got {tuple(masks.shape)} and "
            f"{tuple(boxes.shape)}"
        )
    rois = torch.cat([torch.arange(len(boxes), dtype=boxes.dtype)[:, None], boxes], dim=1)
    cut = roi_align(masks[:, None].float(), rois, size, sampling_ratio=2, aligned=True)
    return (cut[:, 0] >= 0.5).float()


def mask_loss(
    mask_logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Mask R-CNN's mask loss: binary cross-entropy on the map of each RoI's own class only.

    Args:
        mask_logits: [R, K, S, S] (:class:`MaskHead` output).
        labels: [R] classes in 1..K (0 is the background and has no map).
        targets: [R, S, S] in {0, 1} (:func:`mask_targets`).
    """
    if len(mask_logits) == 0:
        return mask_logits.sum() * 0.0  # no object in the batch: a zero that keeps the graph
    own = mask_logits[torch.arange(len(labels)), labels.long() - 1]  # [R, S, S]
    return F.binary_cross_entropy_with_logits(own, targets)


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size) -> torch.Tensor:
    """Put each box's mask back into the image: [N, S, S] in [0, 1] and boxes [N, 4] -> [N, H, W].

    Every image pixel inside box ``n`` reads mask ``n`` (bilinear) at its own position relative to
    the box; pixels outside read zeros. One ``grid_sample`` does all masks at once. (torchvision's
    ``paste_masks_in_image`` resizes each mask to the rounded box instead: the same picture up to
    sub-pixel rounding at the edges.)
    """
    height, width = image_size
    if masks.dim() != 3 or boxes.shape != (len(masks), 4):
        raise ValueError(
            f"expected masks [N, S, S] and boxes [N, 4], got {tuple(masks.shape)} and "
            f"{tuple(boxes.shape)}"
        )
    if len(masks) == 0:
        return masks.new_zeros(0, height, width)
    x = torch.arange(width, device=masks.device) + 0.5  # pixel centres
    y = torch.arange(height, device=masks.device) + 0.5
    x1, y1, x2, y2 = (boxes[:, i, None].float() for i in range(4))  # [N, 1] each
    # box edges -> -1 and +1, grid_sample's coordinates for the mask's outer edges
    gx = (2 * (x - x1) / (x2 - x1).clamp(min=1e-6) - 1)[:, None, :].expand(-1, height, -1)
    gy = (2 * (y - y1) / (y2 - y1).clamp(min=1e-6) - 1)[:, :, None].expand(-1, -1, width)
    grid = torch.stack((gx, gy), dim=-1)  # [N, H, W, 2]
    pasted = F.grid_sample(masks[:, None].float(), grid, align_corners=False, padding_mode="zeros")
    return pasted[:, 0]


class InstanceSegmenter(nn.Module):
    """Instance segmentation = detection + a mask per box (Mask R-CNN's idea, on the course's
    :class:`~course_utils.detection.CenterNet`).

    The detector finds the boxes; :func:`~torchvision.ops.roi_align` cuts its stride-4 feature map
    to a ``roi_size x roi_size`` grid inside each box; :class:`MaskHead` turns every grid into
    ``num_classes`` mask logits at twice that size, of which the detected class's is kept. The
    detector is frozen (its weights do not train and its batch norms stay in ``eval()`` mode): only
    the mask head learns, on the ground-truth boxes.

    * ``model(images, targets)`` in ``train()`` mode -> ``{"mask": loss}`` (targets need
      ``"boxes"``, ``"labels"`` and ``"masks"`` as given by ``DigitScenes``);
    * ``model(images)`` in ``eval()`` mode -> the detector's dicts plus ``"masks"``
      [N, 1, H, W] probabilities, torchvision's Mask R-CNN format.
    """

    def __init__(
        self, detector: nn.Module, hidden: int = 64, num_convs: int = 4, roi_size: int = 14
    ):
        super().__init__()
        self.detector = detector.requires_grad_(False)
        self.mask_head = MaskHead(
            detector.backbone.out_channels, detector.num_classes, hidden, num_convs
        )
        self.roi_size = roi_size

    def train(self, mode: bool = True) -> InstanceSegmenter:
        super().train(mode)
        self.detector.eval()  # frozen: batch statistics of mask-training batches must not leak in
        return self

    def _mask_logits(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """RoIAlign in every box of every image, then the mask head: [R, K, 2 S, 2 S]."""
        rois = roi_align(
            features, [b.float() for b in boxes], self.roi_size,
            spatial_scale=1 / self.detector.stride, sampling_ratio=2, aligned=True,
        )  # fmt: skip
        return self.mask_head(rois)

    def forward(self, images, targets: list[dict] | None = None):
        images = torch.stack(list(images)) if isinstance(images, (list, tuple)) else images
        with torch.no_grad():
            features = self.detector.backbone(images)[0]
        if self.training:
            if targets is None or len(targets) != len(images):
                raise ValueError("in train() mode the model needs one target per image")
            logits = self._mask_logits(features, [t["boxes"] for t in targets])
            size = logits.shape[-1]
            labels = torch.cat([t["labels"] for t in targets])
            goal = torch.cat([mask_targets(t["masks"], t["boxes"], size) for t in targets])
            return {"mask": mask_loss(logits, labels, goal)}
        with torch.no_grad():
            detections = self.detector.decode(self.detector.head(features), images.shape[-2:])
            logits = self._mask_logits(features, [d["boxes"] for d in detections])
            probs = logits[
                torch.arange(len(logits)), torch.cat([d["labels"] for d in detections]) - 1
            ].sigmoid()
            for d, p in zip(detections, probs.split([len(d["boxes"]) for d in detections])):
                d["masks"] = paste_masks(p, d["boxes"], images.shape[-2:])[:, None]
        return detections


# --------------------------------------------------------------------------------------------
# Panoptic segmentation
# --------------------------------------------------------------------------------------------


def panoptic_fusion(
    semantic: torch.Tensor,
    instance_masks: torch.Tensor,
    instance_scores: torch.Tensor,
    instance_labels: torch.Tensor,
    thing_classes,
    score_threshold: float = 0.5,
    overlap_threshold: float = 0.5,
    label_divisor: int = 1000,
    void_id: int = -1,
) -> torch.Tensor:
    """Merge a semantic map and instance masks into one panoptic map (Panoptic FPN's heuristic).

    *Things* (countable objects: people, cars) come from the instance masks, *stuff* (amorphous
    regions: sky, road) from the semantic map. Every pixel gets one segment id:

    - ``class * label_divisor + k`` for the ``k``-th kept instance of a thing class (k = 1, 2, ...);
    - ``class * label_divisor`` for a stuff pixel (instance number 0);
    - ``void_id`` for a pixel that the semantic map calls a thing but no kept instance covers.

    Decode with ``class = id // label_divisor`` and ``instance = id % label_divisor`` (the
    convention of Cityscapes and Panoptic-DeepLab; COCO's PNG files store arbitrary segment ids
    plus a ``segments_info`` table instead). Stuff and thing ids never collide: they differ in
    ``id % label_divisor`` (0 against >= 1). Writing raw class ids for stuff and instance numbers
    for things would collide as soon as a class id equals an instance number.

    Instances are pasted in decreasing score order; one scoring below ``score_threshold`` is
    dropped, and so is one whose pixels not yet taken by better instances are fewer than
    ``overlap_threshold`` times its mask area (mostly hidden by them).

    Args:
        semantic: [H, W] class labels (argmax of a semantic head).
        instance_masks: [N, H, W] boolean masks.
        instance_scores: [N] confidences.
        instance_labels: [N] classes, each in ``thing_classes``.
        thing_classes: the class ids that are things; all other classes are stuff.

    Returns:
        [H, W] int64 panoptic map.
    """
    if semantic.dim() != 2 or semantic.is_floating_point():
        raise ValueError(
            f"semantic must be integer labels [H, W], got {semantic.dtype} {tuple(semantic.shape)}"
        )
    n = len(instance_masks)
    if instance_masks.shape[1:] != semantic.shape or instance_masks.dim() != 3:
        raise ValueError(
            f"instance_masks must be [N, H, W] with [H, W] = {tuple(semantic.shape)}, "
            f"got {tuple(instance_masks.shape)}"
        )
    if instance_scores.shape != (n,) or instance_labels.shape != (n,):
        raise ValueError(
            f"expected {n} instance_scores and instance_labels, got shapes "
            f"{tuple(instance_scores.shape)} and {tuple(instance_labels.shape)}"
        )
    things = torch.as_tensor(list(thing_classes), dtype=torch.long, device=semantic.device)
    if not torch.isin(instance_labels.long(), things).all():
        raise ValueError(
            f"instance_labels {instance_labels.tolist()} must all be thing classes {things.tolist()}"
        )
    if semantic.numel() and (semantic.min() < 0 or semantic.max() >= label_divisor):
        raise ValueError(f"semantic labels must lie in [0, label_divisor={label_divisor})")

    panoptic = torch.full_like(semantic, void_id, dtype=torch.long)
    taken = torch.zeros_like(semantic, dtype=torch.bool)
    count = {}  # kept instances so far, per class
    for i in instance_scores.argsort(descending=True).tolist():
        if instance_scores[i] < score_threshold:
            break
        mask = instance_masks[i].bool()
        free = mask & ~taken
        area = int(mask.sum())
        if area == 0 or int(free.sum()) < overlap_threshold * area:
            continue
        label = int(instance_labels[i])
        count[label] = count.get(label, 0) + 1
        if count[label] >= label_divisor:
            raise ValueError(
                f"more than {label_divisor - 1} instances of class {label}: raise label_divisor"
            )
        panoptic[free] = label * label_divisor + count[label]
        taken |= free
    stuff = ~taken & ~torch.isin(semantic, things)
    panoptic[stuff] = semantic[stuff].long() * label_divisor
    return panoptic


# --------------------------------------------------------------------------------------------
# Training and evaluating a semantic segmenter on the digit scenes
# --------------------------------------------------------------------------------------------


def scene_masks(num_scenes: int, split: str = "train", **scene_kwargs) -> list[tuple]:
    """``num_scenes`` :class:`~course_utils.data.DigitScenes` as ``(image [3, S, S] float,
    semantic mask [S, S] int64)`` pairs (0 = background, digit d = d + 1), generated once.

    Drawing a scene costs about as much as a training step on it: keeping them in memory makes
    every epoch after the first cheaper.
    """
    scenes = DigitScenes(num_scenes, split=split, **scene_kwargs)
    return [
        (image, target["semantic_mask"]) for image, target in (scenes[i] for i in range(num_scenes))
    ]


def train_segmenter(
    model: nn.Module,
    pairs,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    loss_fn: nn.Module | None = None,
    max_steps_per_epoch: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
):
    """Train ``model`` in place on ``(image, mask)`` pairs with AdamW, a one-cycle learning rate
    (warm-up over the first 20 % of steps) and ``loss_fn`` (default: cross-entropy + dice).

    Batches are shuffled by a generator seeded with 0: on the CPU the same call gives the same
    weights. Returns the :class:`~course_utils.train.History` (training loss per epoch).
    """
    shuffle = torch.Generator().manual_seed(0)
    loader = DataLoader(pairs, batch_size, shuffle=True, drop_last=True, generator=shuffle)
    return fit_one_cycle(
        model,
        loader,
        epochs=epochs,
        lr=lr,
        pct_start=0.2,
        weight_decay=weight_decay,
        loss_fn=loss_fn if loss_fn is not None else CombinedSegmentationLoss(),
        device=device,
        max_steps_per_epoch=max_steps_per_epoch,
        progress=progress,
    )


def segment(model: nn.Module, images: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
    """Label maps [N, H, W] (int64, on the CPU) of ``model`` (switched to ``eval()``) on images
    [N, C, H, W], ``batch_size`` at a time, on the device the model is on."""
    device = next(model.parameters()).device
    return predict(model, images, device=device, batch_size=batch_size).argmax(1)


def evaluate_segmenter(model: nn.Module, pairs, num_classes: int) -> dict:
    """Scores of ``model`` on ``(image, mask)`` pairs with ``num_classes`` classes, counted over
    all their pixels together (the dataset-level IoU benchmarks report, not a mean of per-image
    IoUs).

    Returns ``{"miou", "per_class", "pixel_accuracy", "foreground_iou"}``: ``miou`` and
    ``per_class`` as in :func:`mean_iou`; ``foreground_iou`` is the IoU of "any object" (label > 0)
    against background, which asks only *where* the objects are, not *which* they are.
    """
    images = torch.stack([image for image, _ in pairs])
    target = torch.stack([mask for _, mask in pairs])
    pred = segment(model, images)
    scores = mean_iou(pred, target, num_classes)
    foreground = mean_iou((pred > 0).long(), (target > 0).long(), 2)["per_class"][1].item()
    return scores | {"pixel_accuracy": pixel_accuracy(pred, target), "foreground_iou": foreground}
