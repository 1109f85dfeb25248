"""Lesson 04: Instance segmentation, Mask R-CNN's way: a detector finds the boxes, a mask head draws
the object inside each one.

Semantic segmentation says *which class* every pixel is; instance segmentation also says *which
object*: two touching digits of the same class are two masks. ``MaskHead`` predicts a small
mask per region of interest, ``mask_targets`` and ``mask_loss`` train it, ``_paste_masks`` puts
the masks back into the image, and ``InstanceSegmenter`` wires it all onto the course's
detector.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from ..checks import check_finite, check_images, check_labels, check_lengths, check_num_classes

__all__ = ["MaskHead", "mask_targets", "mask_loss", "InstanceSegmenter"]


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
        check_num_classes(num_classes, what=type(self).__name__)
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
        check_images(rois, what="MaskHead", channels=self.in_channels)
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
    check_lengths("mask_loss", mask_logits=mask_logits, labels=labels, targets=targets)
    check_finite(mask_logits, what="mask_loss")  # one NaN logit would make the whole loss NaN
    check_labels(labels, what="mask_loss", num_classes=mask_logits.shape[1], first=1)
    own = mask_logits[torch.arange(len(labels)), labels.long() - 1]  # [R, S, S]
    return F.binary_cross_entropy_with_logits(own, targets)


def _paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size) -> torch.Tensor:
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
        scale = 1 / self.detector.stride  # image pixels -> feature cells
        boxes = [b.float() for b in boxes]
        rois = roi_align(features, boxes, self.roi_size, scale, sampling_ratio=2, aligned=True)
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
                d["masks"] = _paste_masks(p, d["boxes"], images.shape[-2:])[:, None]
        return detections
