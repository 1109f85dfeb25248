"""Real photographs that ship with scikit-image and scikit-learn, so they load offline.

:func:`photo` gives one as a ``uint8`` array ``[H, W, 3]``, optionally resized so that its
shorter side has a given length (antialiased); :func:`photo_pil` gives it as a ``PIL.Image``.
:func:`check_size` is the argument check the generators of this package share.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from PIL import Image
from skimage import data as skimage_data
from sklearn.datasets import load_sample_image

__all__ = ["PHOTO_NAMES", "photo", "photo_pil"]

# Each loader reads a file that the package installed, so no network is ever involved.
_PHOTO_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": skimage_data.astronaut,
    "chelsea": skimage_data.chelsea,
    "coffee": skimage_data.coffee,
    "rocket": skimage_data.rocket,
    "hubble": skimage_data.hubble_deep_field,
    "immunohistochemistry": skimage_data.immunohistochemistry,
    "china": lambda: load_sample_image("china.jpg"),
    "flower": lambda: load_sample_image("flower.jpg"),
}

#: Names accepted by :func:`photo`: real photos bundled with scikit-image and scikit-learn.
PHOTO_NAMES: tuple[str, ...] = tuple(_PHOTO_LOADERS)


@functools.cache
def _photo_original(name: str) -> np.ndarray:
    # Decoding a PNG/JPEG takes tens of milliseconds; keep each photo once per process.
    # photo() hands out copies, so nobody can change the cached array.
    return _PHOTO_LOADERS[name]()


def check_size(size: int, what: str, minimum: int = 1) -> None:
    """Raise a ``ValueError`` naming ``what`` unless ``size`` is an integer ``>= minimum``.

    ``True`` is refused although Python counts ``bool`` as an ``int``: it is never meant as 1.
    Every generator of this package calls it (it is not in ``__all__``: learners never need it).
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {size!r}")


def _resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Resize so that the shorter side is ``size`` pixels, keeping the aspect ratio."""
    w, h = image.size
    new_size = (size, round(h * size / w)) if w <= h else (round(w * size / h), size)
    # Pillow widens its filter when it shrinks an image, so every output pixel averages all the
    # input pixels it covers: antialiased, unlike picking every k-th pixel (which aliases).
    return image.resize(new_size, Image.Resampling.BICUBIC)


def photo(name: str, size: int | None = None) -> np.ndarray:
    """A real photograph as a ``uint8`` array ``[H, W, 3]`` (RGB), available offline.

    ``name`` is one of :data:`PHOTO_NAMES`. ``size=None`` keeps the original resolution; an integer
    resizes so that the *shorter* side is ``size`` pixels, keeping the aspect ratio.

    >>> photo("chelsea").shape
    (300, 451, 3)
    >>> photo("chelsea", size=64).shape
    (64, 96, 3)
    """
    if name not in _PHOTO_LOADERS:
        raise ValueError(f"unknown photo {name!r}; expected one of {', '.join(PHOTO_NAMES)}")
    image = _photo_original(name)
    if size is None:
        return image.copy()
    check_size(size, "size")
    return np.array(_resize_short_side(Image.fromarray(image), size))  # a writable copy


def photo_pil(name: str, size: int | None = None) -> Image.Image:
    """Like :func:`photo`, as a ``PIL.Image`` in RGB mode (what torchvision transforms expect)."""
    return Image.fromarray(photo(name, size))
