"""Lesson 01: preprocessing: normalisation with dataset statistics, training and evaluation
pipelines, and contrast enhancement (histogram equalisation, CLAHE).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import torch
from torchvision.transforms import v2

from ..checks import check_images
from .conversions import to_numpy, to_tensor

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "normalize",
    "denormalize",
    "channel_stats",
    "train_transforms",
    "eval_transforms",
    "equalize_histogram",
    "clahe",
]


#: Per-channel (R, G, B) mean and standard deviation of the ImageNet training set, in [0, 1] units.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(x: torch.Tensor, values: Sequence[float], what: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    if t.shape[0] not in (1, x.shape[-3]):
        raise ValueError(f"{what} has {t.shape[0]} values but the image has {x.shape[-3]} channels")
    return t


def normalize(
    x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """``(x - mean) / std`` per channel, like ``torchvision.transforms.Normalize``.

    x: ``[..., C, H, W]`` float in [0, 1]  ->  same shape, roughly zero mean and unit variance.
    """
    check_images(x, what="normalize", layout="*CHW", value_range=(0, 1))
    return (x - _stats(x, mean, "mean")) / _stats(x, std, "std")


def denormalize(
    x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Undo :func:`normalize`: ``x * std + mean``, back to [0, 1] (e.g. to show the image).

    x: ``[..., C, H, W]`` normalised float  ->  same shape.
    """
    check_images(x, what="denormalize", layout="*CHW")
    return x * _stats(x, std, "std") + _stats(x, mean, "mean")


def channel_stats(
    images: torch.Tensor | Iterable[torch.Tensor | tuple[torch.Tensor, ...]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over every pixel of every image.

    images: a ``[N, C, H, W]`` float tensor, or an iterable of such batches or of
        ``(images, labels)`` pairs, e.g. a DataLoader (then nothing needs to fit in memory).
    returns: ``(mean [C], std [C])`` float32 (population std), ready for :func:`normalize`.
    Sums are accumulated in float64: millions of float32 additions would lose digits.
    """
    batches = [images] if isinstance(images, torch.Tensor) else images
    total = total_sq = None
    count = 0
    for batch in batches:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        check_images(batch, what="channel_stats")
        b = batch.double()
        sums, sq_sums = b.sum(dim=(0, 2, 3)), (b * b).sum(dim=(0, 2, 3))
        total = sums if total is None else total + sums
        total_sq = sq_sums if total_sq is None else total_sq + sq_sums
        count += b.shape[0] * b.shape[2] * b.shape[3]
    if count == 0:
        raise ValueError("channel_stats() got no images")
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(0).sqrt()  # Var = E[x²] - E[x]²
    return mean.float(), std.float()


def train_transforms(
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Training pipeline: a random view of the image each time it is seen, then normalised.

    Accepts a PIL image, an ``[H, W, C]`` uint8 array or a ``[C, H, W]`` tensor; returns a
    ``[C, size, size]`` float32 normalised tensor. Geometry runs on uint8 (fast), colour jitter
    before the float conversion, erasing last (erased pixels become 0 = the mean colour).
    """
    return v2.Compose([
        v2.ToImage(),                                          # -> uint8 [C, H, W] tensor
        v2.RandomResizedCrop(size, scale=(0.8, 1.0), antialias=True),  # zoom + aspect jitter
        v2.RandomHorizontalFlip(p=0.5),                        # mirror: a cat stays a cat
        v2.RandomRotation(degrees=15),                         # small tilts
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
        v2.ToDtype(torch.float32, scale=True),                 # -> float in [0, 1]
        v2.Normalize(mean=list(mean), std=list(std)),
        v2.RandomErasing(p=0.1),                               # hide a rectangle: occlusion
    ])  # fmt: skip


def eval_transforms(
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Evaluation pipeline: deterministic, the same output every time.

    Resize the shorter side to ``size * 256 / 224`` then keep the central ``size x size`` crop:
    the ImageNet convention (256 -> 224) that drops a border of 1/8 of the side, where the
    object rarely is, and matches the object scale the random crops showed during training.
    """
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(int(size * 256 / 224), antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])  # fmt: skip


def equalize_histogram(gray: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation: remap grey levels so that they are used about equally often.

    gray: ``[1, H, W]`` float in [0, 1] (quantised to 256 levels)  ->  ``[1, H, W]`` float.
    Each level ``v`` becomes ``255 * (cdf(v) - cdf_min) / (N - cdf_min)`` / 255, where ``cdf`` counts
    the pixels at or below ``v``: a steep part of the CDF (many pixels in few levels) gets spread
    out. Same result as ``cv2.equalizeHist`` on the uint8 image.
    """
    check_images(gray, what="equalize_histogram", layout="CHW", channels=1, value_range=(0, 1))
    levels = (gray * 255).round().long()
    hist = torch.bincount(levels.flatten(), minlength=256)
    cdf = hist.cumsum(0)
    cdf_min = cdf[hist > 0][0]  # pixels in the darkest level present: it maps to 0
    total = levels.numel()
    if cdf_min == total:  # a constant image has nothing to spread
        return gray.clone()
    lut = ((cdf - cdf_min).clamp_min(0).double() * 255 / (total - cdf_min)).round()
    return (lut[levels] / 255).to(gray.dtype)


def clahe(
    img: torch.Tensor, clip_limit: float = 2.0, tile_grid: tuple[int, int] = (8, 8)
) -> torch.Tensor:
    """Contrast Limited Adaptive Histogram Equalisation (OpenCV's ``createCLAHE``).

    img: ``[3, H, W]`` RGB or ``[1, H, W]`` grey, float in [0, 1]  ->  same shape and range.
    Equalises each tile of a ``tile_grid`` separately (adaptive: local contrast), clips each
    tile's histogram at ``clip_limit`` times the mean bin height (so noise in flat regions is not
    blown up) and blends neighbouring tiles bilinearly. On colour images only the lightness L of
    LAB changes, so the hues stay the same.
    """
    check_images(img, what="clahe", layout="CHW", channels=(1, 3), value_range=(0, 1))
    array = to_numpy(img)
    equaliser = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tuple(tile_grid))
    if array.ndim == 2:
        out = equaliser.apply(array)
    else:
        lab = cv2.cvtColor(array, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = equaliser.apply(lab[:, :, 0])
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return to_tensor(out).to(img.device)
