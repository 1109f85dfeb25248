"""Lesson 03: CenterNet (Zhou et al., 2019, "Objects as Points"): a detector without anchors and
without NMS.

Every object is the peak of a heatmap at its centre. For an output map at stride ``R`` (here 4)
the head predicts, at every cell:

* ``heatmap [C]``: how likely the cell holds the centre of an object of each class;
* ``size [2]``: the object's width and height, in cells (pixels / R);
* ``offset [2]``: where the centre sits inside the cell, in [0, 1) (the map is 4x coarser than the
  image: without it, boxes would be off by up to 3 pixels).

Training draws a small Gaussian around each centre in the target heatmap and uses a focal loss
that forgives near-misses; decoding keeps cells that are the maximum of their 3x3 neighbourhood
(a max-pool does the work of NMS), takes the top ``k`` and reads the size and offset there.
Everything is vectorised over objects and cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_labels, check_num_classes
from .backbone import PyramidBackbone
from .batch import check_targets, image_batch
from .boxes import check_boxes, clip_boxes

__all__ = [
    "CenterNetHead",
    "CenterNet",
    "centernet_heatmap",
]


class CenterNetHead(nn.Module):
    """``features [B, C_in, H, W]`` -> ``{"heatmap": [B, K, H, W] logits, "size": [B, 2, H, W],
    "offset": [B, 2, H, W]}``, one small conv branch per output."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 64):
        super().__init__()
        check_num_classes(num_classes, what=type(self).__name__)

        def branch(out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(channels, out, 1),
            )  # fmt: skip

        self.heatmap = branch(num_classes)
        self.box = branch(4)  # size (2) and offset (2) share one branch
        self.num_classes = num_classes
        # Start by saying "no object anywhere" (p = 0.01): otherwise the 99.9 % of background
        # cells produce a huge loss at step one and the first updates only learn "background".
        nn.init.constant_(self.heatmap[-1].bias, -4.6)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        box = self.box(features)
        return {"heatmap": self.heatmap(features), "size": box[:, :2], "offset": box[:, 2:]}


def _centres(boxes: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Box centres in cells ``[K, 2]`` (x, y) and the integer cell that holds each one."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / (2 * stride)
    return centre, centre.floor().long()


def centernet_heatmap(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    output_size: tuple[int, int],
    stride: int,
    alpha: float = 0.54,
) -> torch.Tensor:
    """Target heatmap ``[num_classes, H, W]`` for one image: a Gaussian bump per object.

    ``boxes [K, 4]`` xyxy in pixels, ``labels [K]`` in 1..num_classes (0 is the background, which
    has no channel). Object ``k`` puts ``exp(-dx² / 2σx² - dy² / 2σy²)`` around its centre cell,
    exactly 1 there, with ``σ = alpha * size / 6`` (in cells: a bump proportional to the box, as
    in TTFNet); where bumps of one class overlap, the maximum wins. Built as ``[K, H, W]`` by
    broadcasting, then reduced per class with ``scatter_reduce``: no loop over objects.
    """
    check_boxes(boxes)
    height, width = output_size
    heat = torch.zeros(num_classes, height, width, device=boxes.device)
    if len(boxes) == 0:
        return heat
    check_labels(labels, what="centernet_heatmap", num_classes=num_classes, first=1)
    _, cell = _centres(boxes, stride)
    sigma = (alpha / 6) * (boxes[:, 2:] - boxes[:, :2]).clamp(min=1) / stride  # [K, 2]
    ys = torch.arange(height, device=boxes.device).view(1, -1, 1)
    xs = torch.arange(width, device=boxes.device).view(1, 1, -1)
    dx = (xs - cell[:, 0, None, None]) ** 2 / (2 * sigma[:, 0, None, None] ** 2)
    dy = (ys - cell[:, 1, None, None]) ** 2 / (2 * sigma[:, 1, None, None] ** 2)
    bumps = torch.exp(-(dx + dy))  # [K, H, W]
    channel = (labels - 1)[:, None, None].expand_as(bumps)  # bump k goes to its class's channel
    return heat.scatter_reduce(0, channel, bumps, "amax")


def _gather_at(maps: torch.Tensor, b: torch.Tensor, y: torch.Tensor, x: torch.Tensor):
    """``maps [B, C, H, W]`` read at cells ``(b, y, x)`` (each ``[N]``) -> ``[N, C]``."""
    return maps.permute(0, 2, 3, 1)[b, y, x]


def _centernet_loss(
    outputs: dict[str, torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    stride: int,
    size_weight: float = 0.1,
    offset_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """CenterNet's three losses for a batch, each a scalar: ``{"heatmap", "size", "offset"}``.

    * heatmap: the penalty-reduced focal loss. At a centre (target 1) it is ``-(1 - p)² log p``;
      elsewhere ``-(1 - Y)⁴ p² log(1 - p)``: a cell right next to a centre (Y close to 1) is hardly
      punished for a high score, and easy background (p close to 0) hardly counts at all.
      Normalised by the number of objects.
    * size and offset: L1 at the centre cells only (nowhere else do they mean anything), in cells.
    """
    heat_logits = outputs["heatmap"]
    batch, num_classes, height, width = heat_logits.shape
    target_heat = torch.stack(
        [
            centernet_heatmap(t["boxes"], t["labels"], num_classes, (height, width), stride)
            for t in targets
        ]
    )
    # log p and log(1 - p) straight from the logits: exact where sigmoid would round to 0 or 1
    log_p, log_not_p = F.logsigmoid(heat_logits), F.logsigmoid(-heat_logits)
    p = log_p.exp()
    centre = target_heat == 1
    pos = -((1 - p) ** 2 * log_p)[centre].sum()
    neg = -((1 - target_heat) ** 4 * p**2 * log_not_p)[~centre].sum()

    boxes = torch.cat([t["boxes"] for t in targets])
    b = torch.cat(
        [torch.full((len(t["boxes"]),), i, device=boxes.device) for i, t in enumerate(targets)]
    )
    centre_xy, cell = _centres(boxes, stride)
    n = max(len(boxes), 1)
    size = _gather_at(outputs["size"], b, cell[:, 1], cell[:, 0])
    offset = _gather_at(outputs["offset"], b, cell[:, 1], cell[:, 0])
    true_size = (boxes[:, 2:] - boxes[:, :2]) / stride
    return {
        "heatmap": (pos + neg) / n,
        "size": size_weight * F.l1_loss(size, true_size, reduction="sum") / n,
        "offset": offset_weight * F.l1_loss(offset, centre_xy - cell, reduction="sum") / n,
    }


@torch.no_grad()
def _centernet_decode(
    outputs: dict[str, torch.Tensor],
    stride: int,
    image_size: tuple[int, int] | None = None,
    k: int = 100,
    score_threshold: float = 0.0,
    peak_kernel: int = 3,
) -> list[dict[str, torch.Tensor]]:
    """Heatmaps -> detections: one ``{"boxes" [N, 4], "scores" [N], "labels" [N]}`` per image.

    1. ``p = sigmoid(heatmap)``; keep a cell only where it equals the max of its
       ``peak_kernel x peak_kernel`` neighbourhood (``peak_kernel=1`` keeps every cell: then many
       neighbouring cells describe the same object and box NMS is needed instead);
    2. the ``k`` best (cell, class) pairs of each image, over all classes at once;
    3. box = ``(cell + offset ± size / 2) * stride``, clipped to ``image_size`` if given;
       label = class channel + 1; scores ``<= score_threshold`` are dropped.
    """
    heat = outputs["heatmap"].sigmoid()
    batch, num_classes, height, width = heat.shape
    if peak_kernel > 1:
        pooled = F.max_pool2d(heat, peak_kernel, stride=1, padding=peak_kernel // 2)
        heat = heat * (pooled == heat)
    scores, index = heat.reshape(batch, -1).topk(min(k, num_classes * height * width))
    channel = index // (height * width)
    y = (index % (height * width)) // width
    x = index % width
    b = torch.arange(batch, device=heat.device)[:, None].expand_as(index)
    # [B, k, 2]; the size head is a plain conv, so an untrained one predicts negative sizes too:
    # a negative extent means none, and clamping keeps every box valid xyxy (x1 <= x2)
    size = _gather_at(outputs["size"], b, y, x).clamp(min=0)
    centre = torch.stack((x, y), dim=-1) + _gather_at(outputs["offset"], b, y, x)
    boxes = torch.cat((centre - size / 2, centre + size / 2), dim=-1) * stride
    if image_size is not None:
        boxes = clip_boxes(boxes, image_size)
    detections = []
    for i in range(batch):  # images keep different numbers of boxes: a list, one per image
        keep = scores[i] > score_threshold
        detections.append(
            {"boxes": boxes[i][keep], "scores": scores[i][keep], "labels": channel[i][keep] + 1}
        )
    return detections


class CenterNet(nn.Module):
    """The course's detector: :class:`PyramidBackbone` (finest level, stride 4) + :class:`CenterNetHead`.

    It speaks the language of torchvision's detectors, so the same code trains and uses both:

    * ``model(images, targets)`` in ``train()`` mode -> ``{"heatmap", "size", "offset"}`` losses;
    * ``model(images)`` in ``eval()`` mode -> one ``{"boxes", "scores", "labels"}`` dict per image
      (:func:`_centernet_decode` with the attributes ``score_threshold``, ``max_detections`` and
      ``peak_kernel``, which you may change).

    ``images``: ``[B, 3, H, W]`` float in [0, 1] or a list of ``[3, H, W]``, ``H`` and ``W``
    multiples of 16. :meth:`heads` gives the raw maps.
    """

    stride = 4

    def __init__(self, num_classes: int = 10, channels: int = 64, widths=(32, 48, 96, 160)):
        super().__init__()
        # P2 only: the FPN's top-down path has already added the coarser levels' context to it
        self.backbone = PyramidBackbone(channels, widths, num_outputs=1)
        self.head = CenterNetHead(channels, num_classes, channels)
        self.num_classes = num_classes
        self.score_threshold = 0.05  # low: keeps the weak detections that mAP needs to see
        self.max_detections = 100
        self.peak_kernel = 3

    def heads(self, images) -> dict[str, torch.Tensor]:
        """The head's raw maps (heatmap logits, size, offset) at stride 4."""
        return self.head(self.backbone(image_batch(images, "CenterNet"))[0])

    def forward(self, images, targets: list[dict] | None = None):
        images = image_batch(images, "CenterNet")
        if not self.training:
            return self.decode(self.heads(images), images.shape[-2:])
        check_targets(targets, len(images), self.num_classes, what="CenterNet")
        return _centernet_loss(self.heads(images), targets, self.stride)

    def decode(self, outputs: dict[str, torch.Tensor], image_size) -> list[dict[str, torch.Tensor]]:
        """:func:`_centernet_decode` of the head's maps with this model's settings."""
        return _centernet_decode(
            outputs,
            self.stride,
            image_size,
            k=self.max_detections,
            score_threshold=self.score_threshold,
            peak_kernel=self.peak_kernel,
        )
