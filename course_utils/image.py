"""Images as tensors: conversions, colour spaces, filtering, preprocessing and mixing (lesson 01).

Conventions used everywhere in the course:

* an image is a float tensor ``[C, H, W]`` (a batch is ``[B, C, H, W]``) with values in ``[0, 1]``;
* ``C`` is 3 (RGB, in that order) or 1 (grey);
* files, NumPy, PIL, OpenCV and matplotlib use ``[H, W, C]`` uint8 in ``[0, 255]`` instead:
  :func:`to_tensor` and :func:`to_numpy` convert between the two worlds.

Functions that accept ``[..., C, H, W]`` work on one image or on a batch alike. Every function
checks its input with :func:`check_image`, so a wrong layout, dtype or range fails loudly with a
hint instead of silently producing a wrong picture.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np
import scipy.special
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

__all__ = [
    # conversions and checks
    "check_image", "to_tensor", "to_numpy", "hwc_to_chw", "chw_to_hwc",
    # colour
    "rgb_to_gray", "rgb_to_hsv", "hsv_to_rgb", "rgb_to_ycrcb", "rgb_to_lab", "hsv_mask",
    # filtering
    "KERNELS", "convolve", "gaussian_kernel", "sobel",
    # preprocessing
    "IMAGENET_MEAN", "IMAGENET_STD", "normalize", "denormalize", "channel_stats",
    "train_transforms", "eval_transforms", "equalize_histogram", "clahe",
    # mixing
    "mixup", "cutmix", "cutmix_box", "mixup_batch", "cutmix_batch",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Checks and conversions
# ------------------------------------------------------------------------------------------------

_LAYOUT_DIMS = {"CHW": (3,), "BCHW": (4,), "*CHW": (3, 4)}
_LAYOUT_TEXT = {"CHW": "[C, H, W]", "BCHW": "[B, C, H, W]", "*CHW": "[C, H, W] or [B, C, H, W]"}


def check_image(
    x: torch.Tensor,
    layout: str = "CHW",
    dtype: str | None = "float",
    value_range: tuple[float, float] | None = (0.0, 1.0),
    channels: int | Sequence[int] | None = (1, 3),
    name: str = "image",
) -> torch.Tensor:
    """Raise a clear error unless ``x`` is an image tensor as described; return ``x`` unchanged.

    layout: ``"CHW"`` (one image), ``"BCHW"`` (a batch) or ``"*CHW"`` (either).
    dtype: ``"float"``, ``"uint8"`` or ``None`` (any).
    value_range: ``(low, high)`` the values must lie in, or ``None`` (e.g. normalised images).
    channels: allowed channel counts, or ``None`` (any, e.g. feature maps).
    """
    if layout not in _LAYOUT_DIMS:
        raise ValueError(f"layout must be one of {sorted(_LAYOUT_DIMS)}, got {layout!r}")
    wanted = _LAYOUT_TEXT[layout]
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"expected {name} as a torch.Tensor {wanted}, got {type(x).__name__}: "
            "use to_tensor() for NumPy arrays and PIL images"
        )
    shape = tuple(x.shape)
    allowed = (channels,) if isinstance(channels, int) else channels
    if x.ndim not in _LAYOUT_DIMS[layout]:
        raise ValueError(f"expected {name} as a {wanted} tensor, got shape {shape}")
    if allowed is not None and shape[-3] not in allowed:
        if shape[-1] in allowed:  # e.g. (32, 32, 3): channels last
            raise ValueError(
                f"expected {name} as a {wanted} tensor with {_channels_text(allowed)}, got shape "
                f"{shape}: this looks like HWC (channels last); use to_tensor() for NumPy/PIL "
                "images or hwc_to_chw() for tensors"
            )
        raise ValueError(
            f"expected {name} with {_channels_text(allowed)}, got {shape[-3]} in shape {shape}"
        )
    if dtype == "float" and not x.is_floating_point():
        raise TypeError(
            f"expected {name} as a float tensor, got {x.dtype}: "
            "convert with x.float() / 255 (or to_tensor() for NumPy/PIL images)"
        )
    if dtype == "uint8" and x.dtype != torch.uint8:
        raise TypeError(f"expected {name} as a uint8 tensor, got {x.dtype}")
    if value_range is not None and x.numel() > 0:
        low, high = value_range
        lo, hi = x.min().item(), x.max().item()
        if lo < low - 1e-6 or hi > high + 1e-6:
            hint = ""
            if lo < 0 <= low:
                hint = ": it looks normalised; use denormalize() first"
            elif hi > 1.5 and high <= 1:
                hint = ": it looks like 0-255 values; divide by 255"
            raise ValueError(
                f"expected {name} values in [{low:g}, {high:g}], got [{lo:.3g}, {hi:.3g}]{hint}"
            )
    return x


def _channels_text(allowed: Sequence[int]) -> str:
    return " or ".join(str(c) for c in allowed) + " channels"


def to_tensor(img: np.ndarray | Image.Image) -> torch.Tensor:
    """A NumPy/PIL image -> the course's tensor layout.

    img: ``[H, W, 3]`` or ``[H, W]`` uint8 NumPy array in ``[0, 255]``, or a PIL image.
    returns: ``[3, H, W]`` (or ``[1, H, W]`` for grey) float32 in ``[0, 1]``, contiguous.
    """
    if isinstance(img, torch.Tensor):
        raise TypeError("to_tensor() expects a NumPy array or a PIL image, got a torch.Tensor")
    if isinstance(img, Image.Image):
        img = np.asarray(img if img.mode in ("L", "RGB") else img.convert("RGB"))
    if not isinstance(img, np.ndarray):
        raise TypeError(f"expected a NumPy array or a PIL image, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise TypeError(
            f"expected a uint8 image with values 0-255, got {img.dtype}: for a float array "
            "already in [0, 1] use hwc_to_chw(torch.from_numpy(img).float())"
        )
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(
            f"expected an [H, W, 3] or [H, W] image, got shape {img.shape}"
            + (
                ": drop the alpha channel with img[..., :3]"
                if img.ndim == 3 and img.shape[2] == 4
                else ""
            )
        )
    # transpose() only changes the strides (a view); np.array() then copies the pixels into
    # channel-first memory order, as float32 (and writable, even if the input array was not).
    chw = np.array(img.transpose(2, 0, 1), dtype=np.float32, order="C")
    return torch.from_numpy(chw).div_(255)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """The course's tensor layout -> a NumPy image for OpenCV, PIL or matplotlib.

    t: ``[3, H, W]`` or ``[1, H, W]`` float in ``[0, 1]`` (any device).
    returns: ``[H, W, 3]`` or ``[H, W]`` uint8 array (values rounded to the nearest level).
    """
    check_image(t)
    out = (t.detach().cpu() * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return out[:, :, 0] if out.shape[2] == 1 else out


def hwc_to_chw(x: torch.Tensor) -> torch.Tensor:
    """``[..., H, W, C]`` -> ``[..., C, H, W]`` (a view: no copy, only the strides change)."""
    return x.movedim(-1, -3)


def chw_to_hwc(x: torch.Tensor) -> torch.Tensor:
    """``[..., C, H, W]`` -> ``[..., H, W, C]`` (a view: no copy, only the strides change)."""
    return x.movedim(-3, -1)


# ------------------------------------------------------------------------------------------------
# Colour spaces
# ------------------------------------------------------------------------------------------------

# ITU-R BT.601 luma weights: the eye is most sensitive to green and least to blue.
_LUMA = (0.299, 0.587, 0.114)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return check_image(x, layout="*CHW", channels=3, name="RGB image")


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, as OpenCV and torchvision).

    x: ``[..., 3, H, W]`` float in [0, 1]  ->  ``[..., 1, H, W]`` float in [0, 1].
    """
    weights = _rgb(x).new_tensor(_LUMA).view(3, 1, 1)
    return (x * weights).sum(dim=-3, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB -> HSV (hue, saturation, value), the convention of ``skimage.color.rgb2hsv``.

    x: ``[..., 3, H, W]`` float in [0, 1]  ->  ``[..., 3, H, W]`` with every channel in [0, 1]:
    H is a *fraction of a full turn* (multiply by 360 for degrees: 0 red, 1/3 green, 2/3 blue),
    S = chroma / V (0 for grey), V = max(R, G, B). H is 0 where the pixel is grey (chroma 0).
    (OpenCV's uint8 HSV stores H in degrees / 2, i.e. 0-179, and S, V in 0-255.)
    """
    r, g, b = _rgb(x).unbind(dim=-3)
    value = x.amax(dim=-3)
    chroma = value - x.amin(dim=-3)
    safe_chroma = torch.where(chroma > 0, chroma, 1.0)  # avoids 0/0; those pixels get hue 0
    # Which channel is the largest decides the sector of the colour wheel (in sixths of a turn).
    hue = torch.where(
        value == r,
        (g - b) / safe_chroma,
        torch.where(value == g, 2 + (b - r) / safe_chroma, 4 + (r - g) / safe_chroma),
    )
    hue = torch.where(chroma > 0, (hue / 6) % 1, 0.0)
    hue = torch.where(hue >= 1, 0.0, hue)  # float rounding can turn (-tiny % 1) into exactly 1.0
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, 1.0), 0.0)
    return torch.stack([hue, saturation, value], dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV -> RGB, the inverse of :func:`rgb_to_hsv` (H as a fraction of a turn).

    x: ``[..., 3, H, W]`` float in [0, 1]  ->  ``[..., 3, H, W]`` float in [0, 1].
    Uses the closed form ``f(n) = V - V S clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6H) mod 6``
    with n = 5, 3, 1 for R, G, B: one vectorised expression instead of six cases.
    """
    hue, sat, val = check_image(x, layout="*CHW", channels=3, name="HSV image").unbind(dim=-3)
    n = x.new_tensor([5.0, 3.0, 1.0]).view(3, 1, 1)
    k = (n + 6 * hue.unsqueeze(-3)) % 6
    ramp = torch.minimum(k, 4 - k).clamp(0, 1)
    return val.unsqueeze(-3) * (1 - sat.unsqueeze(-3) * ramp)


def rgb_to_ycrcb(x: torch.Tensor) -> torch.Tensor:
    """RGB -> YCrCb (luma + two colour differences), as OpenCV's ``COLOR_RGB2YCrCb``.

    x: ``[..., 3, H, W]`` float in [0, 1]  ->  ``[..., 3, H, W]`` (Y, Cr, Cb), all in [0, 1];
    Cr and Cb are centred on 0.5 (grey pixels have Cr = Cb = 0.5). JPEG stores images this way.
    """
    y = rgb_to_gray(x)
    r, b = x[..., 0:1, :, :], x[..., 2:3, :, :]
    cr = (r - y) * 0.713 + 0.5
    cb = (b - y) * 0.564 + 0.5
    return torch.cat([y, cr, cb], dim=-3)


# sRGB primaries -> CIE XYZ (the matrix scikit-image uses) and the D65 white point (2° observer).
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_D65_WHITE = (0.95047, 1.0, 1.08883)


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """sRGB -> CIE L*a*b* (D65), as ``skimage.color.rgb2lab``.

    x: ``[..., 3, H, W]`` float in [0, 1]  ->  ``[..., 3, H, W]`` with L in [0, 100] (lightness),
    a (green - / red +) and b (blue - / yellow +) roughly in [-128, 127].
    Steps: undo the sRGB gamma (-> linear light), mix into XYZ, divide by the white point, then a
    cube root so that equal distances look about equally different to a human.
    """
    linear = torch.where(_rgb(x) > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    matrix = x.new_tensor(_XYZ_FROM_RGB)
    xyz = torch.einsum("ij,...jhw->...ihw", matrix, linear) / x.new_tensor(_D65_WHITE).view(3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0.008856) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(dim=-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def hsv_mask(
    img: torch.Tensor,
    hue_range: tuple[float, float],
    sat_min: float = 0.0,
    val_min: float = 0.0,
) -> torch.Tensor:
    """Pixels whose colour lies in a hue interval: the simplest colour segmentation.

    img: ``[..., 3, H, W]`` RGB float in [0, 1].
    hue_range: ``(start, end)`` in degrees. If start > end the interval wraps through 0°:
        red is ``(340, 20)``, i.e. 340°..360° together with 0°..20°.
    sat_min, val_min: in [0, 1]; discard washed-out (low S) and dark (low V) pixels, whose hue
        is meaningless noise.
    returns: ``[..., H, W]`` bool mask.
    """
    start, end = hue_range
    if not (0 <= start <= 360 and 0 <= end <= 360):
        raise ValueError(
            f"hue_range must be two angles in degrees within [0, 360], got {hue_range}"
        )
    hue, sat, val = rgb_to_hsv(img).unbind(dim=-3)
    degrees = hue * 360
    if start <= end:
        in_range = (degrees >= start) & (degrees <= end)
    else:  # wraps around 0°: either above start or below end
        in_range = (degrees >= start) | (degrees <= end)
    return in_range & (sat >= sat_min) & (val >= val_min)


# ------------------------------------------------------------------------------------------------
# Filtering
# ------------------------------------------------------------------------------------------------


def _k(rows: list[list[float]], scale: float = 1.0) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32) * scale


#: Classic 3x3 kernels, written for cross-correlation (what ``F.conv2d`` computes).
KERNELS: dict[str, torch.Tensor] = {
    "identity": _k([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "box_blur": _k([[1, 1, 1], [1, 1, 1], [1, 1, 1]], 1 / 9),  # mean of the 3x3 neighbourhood
    "gaussian": _k([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 1 / 16),  # nearer pixels weigh more
    "sharpen": _k([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),  # identity + (identity - blur)
    "laplacian": _k([[0, 1, 0], [1, -4, 1], [0, 1, 0]]),  # 2nd derivative: 0 on flat regions
    "edge": _k([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),  # all-direction edge detector
    "sobel_x": _k([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),  # d/dx: > 0 where it gets brighter →
    "sobel_y": _k([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),  # d/dy: > 0 where it gets brighter ↓
    "emboss": _k([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),  # lit from the top left
}


def convolve(
    img: torch.Tensor,
    kernel: torch.Tensor,
    padding: str = "same",
    mode: str = "cross_correlation",
    border: str = "zeros",
) -> torch.Tensor:
    """Slide one 2-D kernel over every channel separately (a depthwise convolution).

    img: ``[..., C, H, W]`` float (any range, any C).   kernel: ``[kh, kw]``.
    padding: ``"same"`` (output ``[..., C, H, W]``, needs odd kernel sizes) or ``"valid"``
        (no padding, output ``[..., C, H - kh + 1, W - kw + 1]``).
    mode: ``"cross_correlation"``: ``out[i, j] = sum_mn img[i + m, j + n] * kernel[m, n]``,
        which is what ``nn.Conv2d``/``F.conv2d`` compute and call "convolution";
        ``"convolution"``: the textbook ``sum_mn img[i - m, j - n] * kernel[m, n]``, i.e. the
        same with the kernel flipped in both directions. A network learns its kernels, so it
        does not care which one it uses; a hand-made asymmetric kernel (Sobel, emboss) does.
    border: how ``"same"`` invents pixels outside the image: ``"zeros"`` (like ``nn.Conv2d``),
        ``"reflect"`` (mirror without repeating the edge pixel, OpenCV's default
        ``BORDER_REFLECT_101``) or ``"replicate"`` (repeat the edge pixel).
    """
    check_image(img, layout="*CHW", value_range=None, channels=None)
    kernel = torch.as_tensor(kernel, dtype=img.dtype, device=img.device)
    if kernel.ndim != 2:
        raise ValueError(f"expected a 2-D kernel [kh, kw], got shape {tuple(kernel.shape)}")
    if mode not in ("cross_correlation", "convolution"):
        raise ValueError(f"mode must be 'cross_correlation' or 'convolution', got {mode!r}")
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    if border not in ("zeros", "reflect", "replicate"):
        raise ValueError(f"border must be 'zeros', 'reflect' or 'replicate', got {border!r}")
    if mode == "convolution":
        kernel = kernel.flip(0, 1)
    kh, kw = kernel.shape
    *lead, c, h, w = img.shape
    x = img.reshape(-1, c, h, w)
    if padding == "same":
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"padding='same' needs an odd kernel size, got {kh}x{kw}")
        pads = (kw // 2, kw // 2, kh // 2, kh // 2)  # left, right, top, bottom
        x = F.pad(x, pads, mode="constant" if border == "zeros" else border)
    # groups=C: each channel gets its own copy of the kernel and never mixes with the others.
    out = F.conv2d(x, kernel.expand(c, 1, kh, kw), groups=c)
    return out.reshape(*lead, c, *out.shape[-2:])


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """A normalised ``[size, size]`` Gaussian (sums to 1), equal to OpenCV's for odd ``size``.

    It is the outer product of a 1-D Gaussian with itself: that is why a Gaussian blur can be
    done as a horizontal then a vertical 1-D pass (separable filter).
    """
    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise ValueError(f"expected an odd size >= 1 and sigma > 0, got size={size}, sigma={sigma}")
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).float()


def sobel(
    img: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image gradients with the Sobel kernels, on the grey image.

    img: ``[..., 3, H, W]`` (converted to grey first) or ``[..., 1, H, W]``, float.
    returns ``(magnitude, direction, gx, gy)``, each ``[..., 1, H, W]``:
    gx, gy are the horizontal/vertical derivatives (positive where the image gets brighter to
    the right / downwards), magnitude = sqrt(gx² + gy²), direction = atan2(gy, gx) in (-pi, pi]
    (0: brighter to the right, pi/2: brighter downwards, since image rows grow downwards).
    Borders are mirrored (``"reflect"``), like ``cv2.Sobel``'s default, so the image frame itself
    does not show up as an edge; with zero padding a bright image would get a bright outline.
    """
    check_image(img, layout="*CHW", value_range=None)
    gray = rgb_to_gray(img) if img.shape[-3] == 3 else img
    gx = convolve(gray, KERNELS["sobel_x"], border="reflect")
    gy = convolve(gray, KERNELS["sobel_y"], border="reflect")
    return torch.hypot(gx, gy), torch.atan2(gy, gx), gx, gy


# ------------------------------------------------------------------------------------------------
# Preprocessing
# ------------------------------------------------------------------------------------------------

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
    check_image(x, layout="*CHW", channels=None)
    return (x - _stats(x, mean, "mean")) / _stats(x, std, "std")


def denormalize(
    x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Undo :func:`normalize`: ``x * std + mean``, back to [0, 1] (e.g. to show the image).

    x: ``[..., C, H, W]`` normalised float  ->  same shape.
    """
    check_image(x, layout="*CHW", value_range=None, channels=None)
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
        check_image(batch, layout="BCHW", value_range=None, channels=None, name="batch")
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
    check_image(gray, layout="CHW", channels=1, name="grey image")
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
    check_image(img, layout="CHW")
    array = to_numpy(img)
    equaliser = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tuple(tile_grid))
    if array.ndim == 2:
        out = equaliser.apply(array)
    else:
        lab = cv2.cvtColor(array, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = equaliser.apply(lab[:, :, 0])
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return to_tensor(out).to(img.device)


# ------------------------------------------------------------------------------------------------
# Mixing images: MixUp and CutMix
# ------------------------------------------------------------------------------------------------


def _sample_beta(alpha: float, generator: torch.Generator | None) -> float:
    """One draw from Beta(alpha, alpha) by inverse-CDF sampling, so that a torch ``generator``
    makes it reproducible: a uniform ``u`` pushed through Beta's inverse CDF is Beta-distributed."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    return float(scipy.special.betaincinv(alpha, alpha, u))


def _check_pair(x1, y1, x2, y2) -> None:
    check_image(x1, layout="*CHW", value_range=None, name="x1")
    check_image(x2, layout="*CHW", value_range=None, name="x2")
    if x1.shape != x2.shape:
        raise ValueError(
            f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    for name, y in (("y1", y1), ("y2", y2)):
        if not isinstance(y, torch.Tensor) or not y.is_floating_point():
            raise TypeError(
                f"expected {name} as a float one-hot (or probability) tensor [..., num_classes], got "
                f"{getattr(y, 'dtype', type(y).__name__)}: use F.one_hot(labels, num_classes).float()"
            )
    if y1.shape != y2.shape:
        raise ValueError(
            f"y1 and y2 must have the same shape, got {tuple(y1.shape)} and {tuple(y2.shape)}"
        )


def mixup(
    x1: torch.Tensor,
    y1: torch.Tensor,
    x2: torch.Tensor,
    y2: torch.Tensor,
    alpha: float = 0.2,
    lam: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """MixUp (Zhang et al. 2018): a weighted average of two images *and* of their labels.

    x1, x2: ``[..., C, H, W]`` float.  y1, y2: ``[..., K]`` one-hot / probability vectors.
    lam: the weight of the first pair; drawn from Beta(alpha, alpha) when ``None`` (small alpha
        puts most draws near 0 or 1, i.e. mostly one image with a ghost of the other).
    returns ``(x, y, lam)``: new tensors ``lam * x1 + (1 - lam) * x2`` (same for y); the inputs are
    never modified.
    """
    _check_pair(x1, y1, x2, y2)
    if lam is None:
        lam = _sample_beta(alpha, generator)
    return lam * x1 + (1 - lam) * x2, lam * y1 + (1 - lam) * y2, float(lam)


def cutmix_box(
    height: int, width: int, lam: float, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """A random box covering about ``1 - lam`` of an ``height x width`` image.

    returns ``(top, bottom, left, right)`` (rows ``top:bottom``, columns ``left:right``). The box
    has the image's aspect ratio and side ``sqrt(1 - lam)`` times the image's; its centre is
    uniform over the image and the box is clipped at the borders, so the real area can be smaller
    (that is why :func:`cutmix` recomputes lambda from the box).
    """
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    cut_h, cut_w = round(height * math.sqrt(1 - lam)), round(width * math.sqrt(1 - lam))
    cy = int(torch.randint(height, (), generator=generator))
    cx = int(torch.randint(width, (), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy - cut_h // 2 + cut_h, height)
    left, right = max(cx - cut_w // 2, 0), min(cx - cut_w // 2 + cut_w, width)
    return top, bottom, left, right


def cutmix(
    x1: torch.Tensor,
    y1: torch.Tensor,
    x2: torch.Tensor,
    y2: torch.Tensor,
    alpha: float = 1.0,
    box: tuple[int, int, int, int] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix (Yun et al. 2019): paste a rectangle of ``x2`` into ``x1``; labels mix by area.

    x1, x2: ``[..., C, H, W]`` float (a batch gets the same box in every image).
    y1, y2: ``[..., K]`` one-hot / probability vectors.
    box: ``(top, bottom, left, right)``; drawn with :func:`cutmix_box` and ``lam ~ Beta(alpha,
        alpha)`` when ``None``.
    returns ``(x, y, lam)`` where ``lam = 1 - box area / image area`` is the fraction of pixels
    that really come from ``x1`` (after clipping), and ``y = lam * y1 + (1 - lam) * y2``.
    ``x1`` is copied before pasting: the inputs are never modified.
    """
    _check_pair(x1, y1, x2, y2)
    height, width = x1.shape[-2:]
    if box is None:
        box = cutmix_box(height, width, _sample_beta(alpha, generator), generator)
    top, bottom, left, right = box
    if not (0 <= top <= bottom <= height and 0 <= left <= right <= width):
        raise ValueError(f"box {box} does not fit an image of {height}x{width}")
    mixed = x1.clone()
    mixed[..., top:bottom, left:right] = x2[..., top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (height * width)
    return mixed, lam * y1 + (1 - lam) * y2, lam


def mixup_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float = 0.2, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """MixUp of a batch with a shuffled copy of itself (how it is used in a training loop).

    x: ``[B, C, H, W]``, y: ``[B, K]`` one-hot  ->  ``(x, y, lam)``, one ``lam`` for the batch.
    """
    perm = torch.randperm(x.shape[0], generator=generator)
    return mixup(x, y, x[perm], y[perm], alpha=alpha, generator=generator)


def cutmix_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix of a batch with a shuffled copy of itself: one box, pasted into every image.

    x: ``[B, C, H, W]``, y: ``[B, K]`` one-hot  ->  ``(x, y, lam)``.
    """
    perm = torch.randperm(x.shape[0], generator=generator)
    return cutmix(x, y, x[perm], y[perm], alpha=alpha, generator=generator)
