"""Lesson 01: filtering: classic 3x3 kernels, depthwise convolution, Gaussian kernels, Sobel.

:func:`convolve` is ``F.conv2d`` with one kernel shared by every channel, with the choice between
cross-correlation (what networks compute) and the textbook convolution (the kernel flipped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_images
from .colour import rgb_to_gray

__all__ = ["KERNELS", "convolve", "gaussian_kernel", "sobel"]


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
    check_images(img, what="convolve", layout="*CHW")
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
    check_images(img, what="sobel", layout="*CHW", channels=(1, 3))
    gray = rgb_to_gray(img) if img.shape[-3] == 3 else img
    gx = convolve(gray, KERNELS["sobel_x"], border="reflect")
    gy = convolve(gray, KERNELS["sobel_y"], border="reflect")
    return torch.hypot(gx, gy), torch.atan2(gy, gx), gx, gy
