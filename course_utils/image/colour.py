"""Lesson 01: colour spaces (grey, HSV, YCrCb, CIE L*a*b*) and colour segmentation in HSV.

Every function takes ``[..., 3, H, W]`` RGB floats in [0, 1] (one image or a batch) and matches
the library named in its docstring (OpenCV or scikit-image).
"""

from __future__ import annotations

import torch

from ..checks import check_images

__all__ = ["rgb_to_gray", "rgb_to_hsv", "hsv_to_rgb", "rgb_to_ycrcb", "rgb_to_lab", "hsv_mask"]


# ITU-R BT.601 luma weights: the eye is most sensitive to green and least to blue.
_LUMA = (0.299, 0.587, 0.114)


def _rgb(x: torch.Tensor, what: str) -> torch.Tensor:
    """RGB images in [0, 1], finite: a NaN would spread to every converted pixel."""
    return check_images(x, what=what, layout="*CHW", channels=3, value_range=(0, 1))


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, as OpenCV and torchvision).

    x: ``[..., 3, H, W]`` float in [0, 1]  ->  ``[..., 1, H, W]`` float in [0, 1].
    """
    weights = _rgb(x, "rgb_to_gray").new_tensor(_LUMA).view(3, 1, 1)
    return (x * weights).sum(dim=-3, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB -> HSV (hue, saturation, value), the convention of ``skimage.color.rgb2hsv``.

    x: ``[..., 3, H, W]`` float in [0, 1]  ->  ``[..., 3, H, W]`` with every channel in [0, 1]:
    H is a *fraction of a full turn* (multiply by 360 for degrees: 0 red, 1/3 green, 2/3 blue),
    S = chroma / V (0 for grey), V = max(R, G, B). H is 0 where the pixel is grey (chroma 0).
    (OpenCV's uint8 HSV stores H in degrees / 2, i.e. 0-179, and S, V in 0-255.)
    """
    r, g, b = _rgb(x, "rgb_to_hsv").unbind(dim=-3)
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
    hue, sat, val = _rgb(x, "hsv_to_rgb").unbind(dim=-3)
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
    linear = torch.where(_rgb(x, "rgb_to_lab") > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
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
