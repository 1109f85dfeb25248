"""Lesson 03: Boxes: formats, IoU, non-maximum suppression, anchors and the box coder.

Every box here is a float tensor ``[..., 4]``, by default **xyxy** in pixels: ``(x1, y1, x2, y2)``
with ``x1 <= x2`` and ``y1 <= y2``, the corners of the box in the coordinate system where pixel
``(row, col)`` covers ``[col, col + 1) x [row, row + 1)`` (so ``x2 - x1`` is the width in pixels).
The functions check that, so an ``xywh`` box passed by mistake raises a clear error instead of
giving a silently wrong IoU. Each one is tested against ``torchvision.ops`` where it has a twin.

Half-precision boxes (``float16``, ``bfloat16``, e.g. from a model under autocast) are measured in
``float32``, as torchvision does: a 300 x 300 box has an area of 90,000, beyond float16's largest
number (65,504), so its IoU would be ``inf / inf = NaN`` and NMS would keep every box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np
import torch

from ..checks import check_finite

__all__ = [
    "box_area",
    "box_convert",
    "box_iou",
    "generalized_box_iou",
    "clip_boxes",
    "nms",
    "batched_nms",
    "soft_nms",
    "generate_anchors",
    "encode_boxes",
    "decode_boxes",
    "match_boxes",
]

_BOX_FORMATS = ("xyxy", "xywh", "cxcywh")

#: The largest log-scale a decoded box may grow by (a box 62.5 times its anchor), as in
#: torchvision: it keeps ``exp()`` from overflowing while a detector is still untrained.
MAX_LOG_SCALE = math.log(1000.0 / 16)


# --------------------------------------------------------------------------------------------
# Checks shared by every function: a wrong box format should fail loudly, not compute garbage
# --------------------------------------------------------------------------------------------


def check_boxes(boxes, name: str = "boxes", fmt: str | None = "xyxy") -> torch.Tensor:
    """Raise a clear error unless ``boxes`` is a finite float tensor ``[..., 4]`` in format
    ``fmt``; return it unchanged. For xyxy a box with ``x2 < x1`` or ``y2 < y1`` -- the usual sign
    of xywh boxes passed by mistake -- is an error (``x2 == x1`` is not: a zero-area box is
    legitimate, as in torchvision); ``fmt=None`` checks only the type, shape and values. The other
    detection files call it too (it is not in ``__all__``: learners never need it)."""
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N, 4], got {type(boxes).__name__}")
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        hint = ": no boxes is torch.zeros(0, 4)" if boxes.numel() == 0 else ""
        raise ValueError(
            f"expected {name} of shape [..., 4] ({fmt or 'any format'}), got "
            f"{tuple(boxes.shape)}{hint}"
        )
    if not boxes.is_floating_point():
        raise ValueError(f"expected float {name}, got {boxes.dtype}: use boxes.float()")
    check_finite(boxes, what=name)
    if fmt == "xyxy" and boxes.numel():
        bad = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
        if bad.any():
            first = tuple(boxes.reshape(-1, 4)[bad.reshape(-1)][0].tolist())
            raise ValueError(
                f"{name} must be xyxy with x1 <= x2 and y1 <= y2, but {first} has x2 < x1 or "
                "y2 < y1: are these xywh or cxcywh boxes? Convert them with "
                "box_convert(boxes, 'xywh', 'xyxy') first"
            )
    elif fmt in ("xywh", "cxcywh") and boxes.numel() and (boxes[..., 2:] < 0).any():
        raise ValueError(f"{name} in {fmt} format must have width, height >= 0")
    return boxes


def check_iou_threshold(threshold, name: str = "iou_threshold") -> float:
    """Raise a clear error unless ``threshold`` is an IoU, in [0, 1]; return it. (Outside,
    NMS silently keeps every box (``> 1``) or only the best one (``< 0``), and mAP matches
    nothing.) The metrics call it too; not in ``__all__``."""
    if not isinstance(threshold, (Real, torch.Tensor)) or not 0 <= threshold <= 1:
        raise ValueError(
            f"{name} must be an IoU in [0, 1], got {threshold!r}: it is a fraction of the union, "
            "e.g. 0.5 for boxes that overlap by half (not 50)"
        )
    return threshold


def _upcast(boxes: torch.Tensor) -> torch.Tensor:
    """float16 and bfloat16 boxes in float32 (their areas overflow float16); others unchanged."""
    return boxes.float() if boxes.dtype in (torch.float16, torch.bfloat16) else boxes


def _check_image_size(image_size) -> tuple:
    if not (
        isinstance(image_size, Sequence)
        and len(image_size) == 2
        and all(isinstance(s, Real) and s > 0 for s in image_size)
    ):
        raise ValueError(
            f"image_size must be (height, width), two positive numbers, got {image_size!r}: "
            "e.g. images.shape[-2:]"
        )
    return tuple(image_size)


def _check_scores(scores, n: int, name: str = "scores") -> torch.Tensor:
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"expected {name} as a 1-D tensor [N], got {shape}")
    if len(scores) != n:
        raise ValueError(f"got {len(scores)} {name} for {n} boxes: they must have the same length")
    if scores.is_floating_point() and torch.isnan(scores).any():
        raise ValueError(f"{name} contain NaN: check the model's outputs (a diverged training?)")
    return scores


def _check_nms_boxes(boxes: torch.Tensor, name: str = "boxes") -> torch.Tensor:
    check_boxes(boxes, name)
    if boxes.ndim != 2:
        raise ValueError(f"expected {name} of shape [N, 4], got {tuple(boxes.shape)}")
    return boxes


# --------------------------------------------------------------------------------------------
# Formats, areas, IoU
# --------------------------------------------------------------------------------------------


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Convert boxes ``[..., 4]`` between ``"xyxy"``, ``"xywh"`` (corner + size) and ``"cxcywh"``
    (centre + size). Same as ``torchvision.ops.box_convert``.
    """
    for fmt in (in_fmt, out_fmt):
        if fmt not in _BOX_FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; expected one of {_BOX_FORMATS}")
    check_boxes(boxes, fmt=in_fmt)
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":  # everything goes through xyxy
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return torch.stack((a, b, c, d), dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of xyxy boxes ``[..., 4]`` -> ``[...]`` (float32 for half-precision boxes)."""
    boxes = _upcast(check_boxes(boxes))
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def inter_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersection and union areas of xyxy boxes ``a [..., 4]`` and ``b [..., 4]``, unchecked,
    which broadcast: ``a[:, None]`` against ``b[None]`` gives every pair ``[N, M]``, equal shapes
    give pairs. (Not in ``__all__``: the metrics use it for COCO's crowd regions.)"""
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    # One coordinate at a time: the [N, M] results are contiguous, several times faster than
    # broadcasting [N, 1, 2] against [1, M, 2].
    w = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp_(min=0)  # 0 if no overlap
    h = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp_(min=0)
    inter = w * h
    return inter, (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter


def matched_giou(a: torch.Tensor, b: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Generalised IoU of matched boxes ``a [..., 4]``, ``b [..., 4]`` (they broadcast), unchecked:
    ``a[i]`` against ``b[i]``, as :func:`~course_utils.detection.losses.giou_loss` needs, or every
    pair with ``a[:, None]`` and ``b[None]``, as :func:`generalized_box_iou` does (see there).
    ``eps`` is added to both denominators (a loss wants 1, not NaN, for two zero-area boxes)."""
    a, b = _upcast(a), _upcast(b)
    inter, union = inter_union(a, b)
    enclosing_w = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    enclosing_h = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    enclosing = enclosing_w * enclosing_h
    return inter / (union + eps) - (enclosing - union) / (enclosing + eps)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair: ``a [N, 4]``, ``b [M, 4]`` (xyxy) -> ``[N, M]``.

    ``IoU = area(a ∩ b) / area(a ∪ b)``, 1 for identical boxes, 0 for disjoint ones. Like
    ``torchvision.ops.box_iou`` (which this equals), two zero-area boxes give ``0 / 0 = NaN``,
    and half-precision boxes give a float32 IoU.
    """
    a = _upcast(_check_nms_boxes(a, "a"))
    b = _upcast(_check_nms_boxes(b, "b"))
    inter, union = inter_union(a[:, None], b[None, :])  # [N, M] each
    return inter / union


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU (Rezatofighi et al., 2019) of every pair: ``[N, 4], [M, 4] -> [N, M]``.

    ``GIoU = IoU - (area(C) - area(a ∪ b)) / area(C)`` with ``C`` the smallest box enclosing both:
    in [-1, 1], and unlike IoU it still says *how far apart* two disjoint boxes are, so ``1 - GIoU``
    is a loss with a gradient even without overlap (DETR and FCOS use it).
    Equals ``torchvision.ops.generalized_box_iou``.
    """
    _check_nms_boxes(a, "a")
    _check_nms_boxes(b, "b")
    return matched_giou(a[:, None], b[None, :])


def clip_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Clip xyxy boxes ``[..., 4]`` to an image of ``(height, width)``: a new tensor, like
    ``torchvision.ops.clip_boxes_to_image``.

    Unlike the other functions it accepts ``x2 < x1``, as torchvision does: it is the first step
    after a detector decodes its raw outputs, which for an untrained model may be inverted boxes
    (CenterNet's size head starts out predicting negative sizes); they are rejected later, by
    whatever measures them.
    """
    check_boxes(boxes, fmt=None)
    height, width = _check_image_size(image_size)
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


# --------------------------------------------------------------------------------------------
# Non-maximum suppression
# --------------------------------------------------------------------------------------------


def _threshold(t: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` number ``<= t``: for an IoU stored in ``dtype``, ``iou > t`` (compared
    in float64, as torchvision's C++ kernel does) is then exactly ``iou > _threshold(t)``."""
    if dtype != torch.float32:
        return t
    down = np.float32(t)
    return float(np.nextafter(down, np.float32(-np.inf)) if down > t else down)


#: How many of the best remaining boxes one step of :func:`nms` settles (any value gives the same
#: result; 16 is fastest on 2,000 boxes).
NMS_BLOCK = 16


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: the indices of the boxes kept, by decreasing score.

    ``boxes [N, 4]`` xyxy, ``scores [N]`` -> ``int64 [K]``. Walk through the boxes from the
    highest score down; keep a box unless a box already kept overlaps it with IoU
    ``> iou_threshold`` (in [0, 1]). Same indices in the same order as ``torchvision.ops.nms``
    (ties in score are broken by the lower index first); half-precision boxes are compared in
    float32, as torchvision's GPU kernel does (its CPU one refuses them).

    The greedy loop, with its steps taken a block at a time: compute the IoUs of the
    :data:`NMS_BLOCK` best remaining boxes with all remaining ones in one go, apply the greedy
    rule within the block (a short loop over its rows), drop every box a kept one overlaps, and
    repeat with the survivors. One box per step would do the same with a dozen tiny array
    operations per kept box, whose overhead dominates; the whole ``[N, N]`` IoU matrix at once is
    simpler but >10x slower on 2,000 boxes, most of which are dropped early and never need their
    own row. The steps run in NumPy on the CPU, whose per-call overhead is several times smaller
    than PyTorch's. Each IoU is computed with torchvision's operations, in its order and dtype,
    so the decisions are identical bit for bit.
    """
    boxes = _upcast(_check_nms_boxes(boxes))
    _check_scores(scores, len(boxes))
    check_iou_threshold(iou_threshold)
    order = torch.sort(scores, descending=True, stable=True).indices
    coords = boxes[order].detach().cpu().numpy().T.copy()  # [4, M], best box first
    areas = (coords[2] - coords[0]) * (coords[3] - coords[1])
    ids = order.cpu().numpy()  # the remaining boxes' indices in the input
    threshold = _threshold(iou_threshold, boxes.dtype)
    kept = []
    with np.errstate(invalid="ignore"):  # two zero-area boxes have IoU 0 / 0 = NaN
        while len(ids):
            # the IoUs of the best NMS_BLOCK remaining boxes with all remaining ones, [k, M]
            top = coords[:, :NMS_BLOCK, None]
            inter = np.minimum(top[2], coords[2]) - np.maximum(top[0], coords[0])
            np.maximum(inter, 0, out=inter)
            height = np.minimum(top[3], coords[3]) - np.maximum(top[1], coords[1])
            np.maximum(height, 0, out=height)
            inter *= height
            union = areas[:NMS_BLOCK, None] + areas
            union -= inter
            overlaps = inter / union > threshold  # NaN > t is False: no suppression, as in C++
            # the greedy rule, in score order: a box of the block not suppressed by a better
            # kept one is kept, and suppresses what it overlaps; the rest of the block is gone
            suppressed = np.zeros(len(ids), dtype=bool)
            for i in range(min(NMS_BLOCK, len(ids))):
                if not suppressed[i]:
                    kept.append(ids[i])
                    suppressed |= overlaps[i]
                    suppressed[i] = True
            rest = np.flatnonzero(~suppressed)
            coords, areas, ids = coords[:, rest], areas[rest], ids[rest]
    return torch.as_tensor(np.array(kept, dtype=np.int64), device=boxes.device)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each category: boxes with different ``idxs [N]`` never suppress each other.

    The trick: shift every category's boxes by its own offset, larger than any coordinate, so that
    boxes of different categories cannot overlap; then one :func:`nms` does all categories at
    once. Same result as ``torchvision.ops.batched_nms``.
    """
    # float32 first: shifted by thousands, float16 boxes would keep no precision at all
    boxes = _upcast(_check_nms_boxes(boxes))
    _check_scores(scores, len(boxes))
    check_iou_threshold(iou_threshold)
    if not isinstance(idxs, torch.Tensor) or idxs.shape != (len(boxes),):
        raise ValueError(f"expected idxs [N] with N = {len(boxes)} (one category per box)")
    if len(boxes) == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def soft_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "gaussian",
    iou_threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS (Bodla et al., 2017): overlapping boxes lose score instead of being deleted.

    ``boxes [N, 4]``, ``scores [N]`` -> ``(keep int64 [K], new_scores [K])`` in the order the
    boxes were selected (decreasing *decayed* score). Each step takes the box with the highest
    remaining score and multiplies the score of every other remaining box by

    - ``"gaussian"``: ``exp(-IoU² / sigma)`` -- the more overlap, the stronger the decay;
    - ``"linear"``: ``1 - IoU`` where ``IoU > iou_threshold``, else 1;
    - ``"hard"``: ``0`` where ``IoU > iou_threshold`` -- ordinary NMS.

    Boxes whose score falls to ``score_threshold`` or below are dropped. Two objects that overlap
    a lot (a crowd) both survive with a lower score, where NMS would delete one. The inputs are
    never modified: the scores are decayed in a copy.
    """
    _check_nms_boxes(boxes)
    _check_scores(scores, len(boxes))
    check_iou_threshold(iou_threshold)
    if method not in ("gaussian", "linear", "hard"):
        raise ValueError(f"method must be 'gaussian', 'linear' or 'hard', got {method!r}")
    if method == "gaussian" and sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    iou = box_iou(boxes, boxes).nan_to_num(0.0)  # two zero-area boxes do not overlap
    current = scores.detach().clone().float()  # decayed scores live in a copy
    alive = current > score_threshold
    keep, kept_scores = [], []
    while alive.any():
        i = int(torch.where(alive, current, -math.inf).argmax())  # first index on ties
        keep.append(i)
        kept_scores.append(current[i])
        alive[i] = False
        overlap = iou[i]
        if method == "gaussian":
            decay = torch.exp(-(overlap**2) / sigma)
        elif method == "linear":
            decay = torch.where(overlap > iou_threshold, 1 - overlap, 1.0)
        else:
            decay = (overlap <= iou_threshold).float()
        current = torch.where(alive, current * decay, current)
        alive &= current > score_threshold
    keep_t = torch.as_tensor(keep, dtype=torch.int64, device=boxes.device)
    new_scores = torch.stack(kept_scores) if kept_scores else current.new_zeros(0)
    return keep_t, new_scores.to(scores.dtype)


# --------------------------------------------------------------------------------------------
# Anchors and the box coder
# --------------------------------------------------------------------------------------------


def generate_anchors(
    feature_size: tuple[int, int],
    image_size: tuple[int, int],
    scales: Sequence[float] = (32.0, 64.0, 128.0),
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The anchor boxes of one feature map: ``[H * W * A, 4]`` xyxy, ``A = len(scales) *
    len(ratios)``.

    Feature cell ``(i, j)`` of an ``H x W`` map looks at the image around its centre
    ``((j + 0.5) * stride_x, (i + 0.5) * stride_y)`` with ``stride = image_size / feature_size``;
    there we place one box per (scale, ratio): area ``scale²`` and ``ratio = height / width``, so
    ``h = scale * sqrt(ratio)``, ``w = scale / sqrt(ratio)``.

    Order (what a head's ``[B, A * K, H, W]`` output becomes after ``permute(0, 2, 3, 1)`` and
    ``reshape(B, H * W * A, K)``): row ``i``, then column ``j``, then anchor ``a = r * len(scales)
    + s`` (ratio-major, as torchvision's ``AnchorGenerator``, whose anchors these equal up to its
    rounding of the sizes and its centres at ``j * stride`` instead of ``(j + 0.5) * stride``).
    Built with broadcasting: no loop over cells.
    """
    height, width = feature_size
    image_h, image_w = image_size
    if min(height, width, image_h, image_w) <= 0:
        raise ValueError(f"sizes must be positive, got {feature_size=} and {image_size=}")
    scales_t = torch.as_tensor(scales, dtype=torch.float32, device=device)
    ratios_t = torch.as_tensor(ratios, dtype=torch.float32, device=device)
    if (scales_t <= 0).any() or (ratios_t <= 0).any():
        raise ValueError(f"scales and ratios must be positive, got {scales=} and {ratios=}")
    hs = (ratios_t[:, None].sqrt() * scales_t[None, :]).reshape(-1)  # [A], ratio-major
    ws = (scales_t[None, :] / ratios_t[:, None].sqrt()).reshape(-1)  # [A]
    half_sizes = torch.stack((-ws, -hs, ws, hs), dim=1) / 2  # [A, 4], centred on (0, 0)
    cy = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * (image_h / height)
    cx = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * (image_w / width)
    cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # [H, W] each
    centres = torch.stack((cx, cy, cx, cy), dim=-1)  # [H, W, 4]
    return (centres[:, :, None, :] + half_sizes).reshape(-1, 4)  # [H, W, A, 4] -> [H*W*A, 4]


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(
    anchors: torch.Tensor,
    gt: torch.Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Regression targets that turn each anchor into its box: ``[..., 4], [..., 4] -> [..., 4]``.

    ``(dx, dy, dw, dh) = (wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * log(gw / aw),
    wh * log(gh / ah))`` with centres ``(x, y)`` and sizes ``(w, h)``: shifts relative to the
    anchor's size and log scale factors, so the same small numbers work for small and large
    boxes. Equals torchvision's ``BoxCoder(weights).encode_single(gt, anchors)``; Faster R-CNN's
    second stage uses ``weights=(10, 10, 5, 5)`` to scale the targets to about unit variance.
    """
    check_boxes(anchors, "anchors")
    check_boxes(gt, "gt")
    wx, wy, ww, wh = weights
    ax, ay, aw, ah = _centre_size(anchors)
    gx, gy, gw, gh = _centre_size(gt)
    return torch.stack(
        (
            wx * (gx - ax) / aw,
            wy * (gy - ay) / ah,
            ww * torch.log(gw / aw),
            wh * torch.log(gh / ah),
        ),
        dim=-1,
    )


def decode_boxes(
    anchors: torch.Tensor,
    deltas: torch.Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    max_log_scale: float = MAX_LOG_SCALE,
) -> torch.Tensor:
    """Apply predicted ``deltas [..., 4]`` to ``anchors [..., 4]``: the inverse of
    :func:`encode_boxes`. Log scales are clamped at ``max_log_scale`` so that an untrained head
    cannot overflow ``exp``. Equals torchvision's ``BoxCoder(weights).decode_single(deltas,
    anchors)``.
    """
    check_boxes(anchors, "anchors")
    if deltas.shape[-1] != 4:
        raise ValueError(f"expected deltas [..., 4], got {tuple(deltas.shape)}")
    anchors = anchors.to(deltas.dtype)
    wx, wy, ww, wh = weights
    ax, ay, aw, ah = _centre_size(anchors)
    cx = deltas[..., 0] / wx * aw + ax
    cy = deltas[..., 1] / wy * ah + ay
    w = torch.exp((deltas[..., 2] / ww).clamp(max=max_log_scale)) * aw
    h = torch.exp((deltas[..., 3] / wh).clamp(max=max_log_scale)) * ah
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def match_boxes(
    anchors: torch.Tensor,
    gt: torch.Tensor,
    high: float = 0.5,
    low: float = 0.4,
    allow_low_quality: bool = True,
) -> torch.Tensor:
    """Assign every anchor to a ground-truth box, or to the background: ``[A]`` int64.

    ``>= 0``: index of the gt box the anchor must predict (its best IoU is ``>= high``);
    ``-1``: background (best IoU ``< low``); ``-2``: ignored (in between: neither a clear object
    nor clear background, so it takes no part in the loss). With ``allow_low_quality`` each gt
    box also gets the anchor(s) that overlap it most, even below ``high``, so that no object is
    left without an anchor. RetinaNet uses (0.5, 0.4), SSD (0.5, 0.5), the RPN (0.7, 0.3).
    """
    _check_nms_boxes(anchors, "anchors")
    _check_nms_boxes(gt, "gt")
    if not 0 <= low <= high <= 1:
        raise ValueError(f"expected 0 <= low <= high <= 1, got {low=} and {high=}")
    matches = torch.full((len(anchors),), -1, dtype=torch.int64, device=anchors.device)
    if len(gt) == 0:
        return matches
    iou = box_iou(gt, anchors).nan_to_num(0.0)  # [G, A]
    best_iou, best_gt = iou.max(dim=0)  # for every anchor, its best gt
    matches = torch.where(best_iou >= high, best_gt, matches)
    matches[(best_iou >= low) & (best_iou < high)] = -2
    if allow_low_quality:
        # (gt, anchor) pairs where the anchor is (one of) the best for that gt. A gt that no
        # anchor overlaps has best IoU 0, a tie of all anchors: skipped, where torchvision's
        # Matcher would make every anchor a positive for its argmax gt at IoU 0.
        best_for_gt = iou.max(dim=1, keepdim=True).values
        _, anchor_idx = torch.nonzero((iou == best_for_gt) & (best_for_gt > 0), as_tuple=True)
        matches[anchor_idx] = best_gt[anchor_idx]
    return matches
