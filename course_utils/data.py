"""Data for the course: real images that are always available, and real datasets as an option.

Everything a lesson needs by default ships with the course or with a package it installs, so the
notebooks run offline, in a lecture hall or on a train:

* :func:`photo` -- real photographs bundled with scikit-image and scikit-learn (``PHOTO_NAMES``).
* :func:`digits` / :func:`digits_split` -- scikit-learn's 1,797 real handwritten 8x8 digits, as
  tensors, optionally resized, with one fixed stratified train/test split for every lesson.
* :class:`FolderDataset` and :func:`make_image_folder` -- the ``root/<class>/<image>`` layout most
  image datasets use, with a small set of such images shipped in ``data/images``.
* :class:`DigitScenes` -- detection and segmentation scenes (boxes, labels, instance masks,
  semantic masks) made by pasting real digits onto crops of real photos.

The big classics (CIFAR-10, MNIST, Fashion-MNIST) come from torchvision when a network is there:
:func:`cifar10`, :func:`mnist`, :func:`fashion_mnist` raise :class:`DatasetUnavailable` with one
clear sentence when they cannot get the data, or fall back to the digits with ``fallback="digits"``.
"""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image, ImageFilter
from skimage import data as skimage_data
from sklearn.datasets import load_digits, load_sample_image
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, TensorDataset
from torchvision.ops import masks_to_boxes

from . import runtime

__all__ = [
    "DATA_DIR",
    "IMAGE_FOLDER",
    "PHOTO_NAMES",
    "DatasetUnavailable",
    "DigitScenes",
    "FolderDataset",
    "cifar10",
    "circle_mask",
    "coloured_digits",
    "circles",
    "detection_collate",
    "digits",
    "digits_split",
    "digits_split_indices",
    "fashion_mnist",
    "load_dataset",
    "make_image_folder",
    "mnist",
    "photo",
    "photo_pil",
]

#: The repository's ``data/`` folder (small real data and checkpoints shipped with the course).
DATA_DIR: Path = Path(__file__).resolve().parent.parent / "data"

#: A small class-per-folder image set shipped with the course, written by :func:`make_image_folder`.
IMAGE_FOLDER: Path = DATA_DIR / "images"


class DatasetUnavailable(RuntimeError):
    """A dataset could not be loaded or downloaded; the message says what to do instead."""


# --------------------------------------------------------------------------------------------
# Photos
# --------------------------------------------------------------------------------------------

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


def _check_size(size: int, what: str, minimum: int = 1) -> None:
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
    _check_size(size, "size")
    return np.array(_resize_short_side(Image.fromarray(image), size))  # a writable copy


def photo_pil(name: str, size: int | None = None) -> Image.Image:
    """Like :func:`photo`, as a ``PIL.Image`` in RGB mode (what torchvision transforms expect)."""
    return Image.fromarray(photo(name, size))


# --------------------------------------------------------------------------------------------
# Digits
# --------------------------------------------------------------------------------------------

_DIGIT_SIZES = (8, 16, 28, 32)


@functools.cache
def _digits_cached(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    bunch = load_digits()
    # The scans were reduced to 8x8 blocks counting "on" pixels out of 16: 0..16 -> [0, 1].
    images = torch.from_numpy(bunch.images).float().div(16).unsqueeze(1)  # [N, 1, 8, 8]
    if size != 8:
        images = F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        # Bilinear weights are convex, so values stay in [0, 1] up to float rounding.
        images = images.clamp(0, 1)
    labels = torch.from_numpy(bunch.target).long()  # [N]
    return images, labels


def digits(size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 real handwritten digits (about 180 per class), as tensors.

    Returns ``images: [1797, 1, size, size] float32 in [0, 1]`` and ``labels: [1797] int64`` in
    0..9. ``size`` is 8 (the original resolution), 16, 28 (MNIST-sized) or 32 (CIFAR-sized);
    larger sizes are bilinear upscalings, so they hold no more detail than the 8x8 originals.
    """
    if size not in _DIGIT_SIZES:
        raise ValueError(f"digits size must be one of {_DIGIT_SIZES}, got {size!r}")
    images, labels = _digits_cached(size)
    return images.clone(), labels.clone()  # clones: a caller editing them cannot touch the cache


def digits_split_indices(
    test_size: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The indices (into :func:`digits`) of the fixed stratified split: ``(train [N], test [M])``.

    Stratified means every class keeps its share in both parts (within one sample), so the test
    accuracy is not skewed by an unlucky draw of classes.
    """
    if not isinstance(test_size, float) or not 0 < test_size < 1:
        raise ValueError(f"test_size must be a float strictly between 0 and 1, got {test_size!r}")
    labels = _digits_cached(8)[1].numpy()
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=seed
    )
    return torch.from_numpy(train_idx), torch.from_numpy(test_idx)


def digits_split(
    size: int = 8, test_size: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_train, x_test, y_train, y_test`` from :func:`digits`, split by :func:`digits_split_indices`.

    Every lesson uses this split with the defaults, so a CNN and an SVM are scored on the same
    450 test digits. Shapes: ``x_* [N, 1, size, size] float32 in [0, 1]``, ``y_* [N] int64``.
    """
    images, labels = digits(size)
    train_idx, test_idx = digits_split_indices(test_size, seed)
    return images[train_idx], images[test_idx], labels[train_idx], labels[test_idx]


# --------------------------------------------------------------------------------------------
# A class-per-folder image set
# --------------------------------------------------------------------------------------------

# class name -> the photo its images are cut from
_IMAGE_FOLDER_PHOTOS = {
    "astronaut": "astronaut",
    "cat": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
}


def make_image_folder(
    root: Path = IMAGE_FOLDER, per_class: int = 8, size: int = 64, seed: int = 0
) -> Path:
    """Write ``root/<class>/<class>_<i>.jpg`` for the classes astronaut, cat, coffee and rocket.

    Each image is a random square crop of that class's photo (40-100 % of its shorter side, at a
    random position, flipped left-right half of the time) resized to ``size x size`` and saved as
    JPEG (quality 90). The same ``seed`` writes the same images. Existing ``<class>_*.jpg`` files
    in the class folders are replaced, so the folder holds exactly ``per_class`` images per class.
    Returns ``root``.
    """
    _check_size(per_class, "per_class")
    _check_size(size, "size", minimum=8)
    root = Path(root)
    rng = np.random.default_rng(seed)
    for class_name, photo_name in _IMAGE_FOLDER_PHOTOS.items():
        image = _photo_original(photo_name)
        h, w = image.shape[:2]
        short = min(h, w)
        class_dir = root / class_name
        class_dir.mkdir(parents=True, exist_ok=True)
        for old in class_dir.glob(f"{class_name}_*.jpg"):
            old.unlink()
        for i in range(per_class):
            side = rng.integers(round(0.4 * short), short + 1)
            y0 = rng.integers(0, h - side + 1)
            x0 = rng.integers(0, w - side + 1)
            crop = image[y0 : y0 + side, x0 : x0 + side]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            small = Image.fromarray(np.ascontiguousarray(crop)).resize(
                (size, size), Image.Resampling.BICUBIC
            )
            small.save(class_dir / f"{class_name}_{i}.jpg", quality=90)
    return root


class FolderDataset(Dataset):
    """Images stored as ``root/<class_name>/<image file>``, the layout of most image datasets.

    A from-scratch version of ``torchvision.datasets.ImageFolder`` for flat class folders:
    ``classes`` (sorted folder names), ``class_to_idx`` (name -> index) and ``samples`` (sorted
    ``(path, class_index)`` pairs) are the same as ImageFolder's. Hidden folders and files (names
    starting with ``.``, such as ``.ipynb_checkpoints`` or macOS's ``._photo.jpg``) are skipped,
    where ImageFolder would take them for a class or an image.

    ``dataset[i]`` is ``(transform(image), class_index)``, or ``(image, class_index)`` without a
    transform, with ``image`` a ``PIL.Image`` in RGB mode.
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable | None = None,
        extensions: tuple[str, ...] = (".jpg", ".jpeg", ".png"),
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"image folder {self.root} does not exist; expected root/<class_name>/<image> "
                "(make_image_folder() writes one)"
            )
        self.classes = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not self.classes:
            raise FileNotFoundError(
                f"no class folders in {self.root}; expected root/<class_name>/<image>"
            )
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        suffixes = tuple(e.lower() for e in extensions)
        self.samples: list[tuple[Path, int]] = []
        for name in self.classes:
            files = sorted(
                p
                for p in (self.root / name).iterdir()
                if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(suffixes)
            )
            if not files:
                raise FileNotFoundError(
                    f"class folder {self.root / name} has no image ending in {', '.join(suffixes)}"
                )
            self.samples += [(path, self.class_to_idx[name]) for path in files]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        with Image.open(path) as image:  # `with` closes the file: no leak across many epochs
            image = image.convert("RGB")  # grey or RGBA files become 3-channel RGB
        return (self.transform(image) if self.transform else image), label


# --------------------------------------------------------------------------------------------
# Detection / segmentation scenes
# --------------------------------------------------------------------------------------------


class DigitScenes(Dataset):
    """Deterministic detection and segmentation scenes: real digits pasted onto real photos.

    Scene ``i`` is drawn from its own generator ``numpy.random.default_rng([seed, i, split])``, so
    ``dataset[i]`` is the same whatever was read before and in whatever order. Each scene:

    1. background: a random square crop of a random photo from :data:`PHOTO_NAMES`, resized to
       ``image_size``, lightly blurred and darkened so that the digits stand out
       (``background="plain"``: one random dark colour instead, a domain without texture);
    2. between ``min_digits`` and ``max_digits`` real digits (from the training part of
       :func:`digits_split` for ``split="train"``, from its test part for ``split="test"``, so held
       -out scenes contain only held-out handwriting), each upscaled (bilinear) from 8x8 to a
       random side in ``digit_size`` (inclusive), painted with a random saturated ink colour using
       the digit's intensity as alpha, at a random position that keeps at least 2 background
       pixels between digits. A digit that finds no free position after 20 tries is skipped; the
       first one always fits, so every scene has at least one (and a crowded one may have fewer
       than ``min_digits``).

    ``dataset[i]`` is ``(image, target)`` with ``image: [3, H, W] float32 in [0, 1]`` and ``target``
    a torchvision-style dict for ``K`` digits:

    * ``"boxes"``: ``[K, 4] float32`` xyxy, the tight box of each mask in *pixel-edge* coordinates:
      pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``, so a mask spanning columns
      3..7 has ``x1 = 3, x2 = 8`` and ``x2 - x1`` is its width in pixels. (This is
      ``torchvision.ops.masks_to_boxes`` plus one on ``x2`` and ``y2``; that function returns the
      index of the last pixel instead.)
    * ``"labels"``: ``[K] int64``, digit + 1 (0 is the background class, see :attr:`CLASSES`).
    * ``"masks"``: ``[K, H, W] uint8``, 1 where the digit's upscaled intensity is above 0.3.
    * ``"semantic_mask"``: ``[H, W] int64``, 0 for background, else the label of the digit there.
    * ``"instance_map"``: ``[H, W] int64``, 0 for background, ``k + 1`` on instance ``k``.
    * ``"image_id"``: ``int64`` scalar tensor ``i``.
    * ``"digit_ids"``: ``[K] int64``, which of the 1,797 :func:`digits` each instance is.

    This is the target format of torchvision's Faster R-CNN and Mask R-CNN (they ignore the extra
    keys); batch scenes with ``DataLoader(..., collate_fn=detection_collate)``.
    """

    CLASSES: tuple[str, ...] = ("background", *(str(d) for d in range(10)))
    _SPLIT_CODES = {"train": 0, "test": 1}
    _GAP = 2  # background pixels kept between two digits, so instances never touch
    _TRIES = 20  # random positions tried per digit before giving up on it
    _MASK_THRESHOLD = 0.3  # intensity above which a pixel belongs to the digit
    _DARKEN = 0.6  # background brightness factor: bright ink on a dimmed photo reads well

    def __init__(
        self,
        num_scenes: int = 500,
        image_size: int = 128,
        min_digits: int = 1,
        max_digits: int = 4,
        digit_size: tuple[int, int] = (20, 44),
        split: str = "train",
        seed: int = 0,
        background: str = "photo",
    ) -> None:
        _check_size(num_scenes, "num_scenes")
        if background not in ("photo", "plain"):
            raise ValueError(f"background must be 'photo' or 'plain', got {background!r}")
        _check_size(min_digits, "min_digits")
        _check_size(max_digits, "max_digits")
        if min_digits > max_digits:
            raise ValueError(f"min_digits ({min_digits}) must be <= max_digits ({max_digits})")
        if split not in self._SPLIT_CODES:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if len(digit_size) != 2:
            raise ValueError(f"digit_size must be (smallest, largest), got {digit_size!r}")
        smallest, largest = digit_size
        _check_size(smallest, "digit_size[0]", minimum=8)  # 8x8 digits are upscaled, never shrunk
        if smallest > largest:
            raise ValueError(f"digit_size must be (smallest, largest), got {digit_size!r}")
        _check_size(image_size, "image_size")
        if image_size < largest:
            raise ValueError(
                f"image_size ({image_size}) must be at least the largest digit_size ({largest})"
            )
        self.num_scenes = num_scenes
        self.image_size = image_size
        self.min_digits = min_digits
        self.max_digits = max_digits
        self.digit_size = (smallest, largest)
        self.split = split
        self.seed = seed
        self.background = background

        images, self._digit_labels = digits(8)
        self._digit_images = images[:, 0]  # [1797, 8, 8]
        train_idx, test_idx = digits_split_indices()
        #: indices into digits() that this split may paste
        self.digit_pool: np.ndarray = (train_idx if split == "train" else test_idx).numpy()
        # Backgrounds are cut from photos at twice the scene size: crops of 50-100 % of their
        # short side are then resized down to image_size (so never blown up from few pixels).
        self._photos = [photo(name, size=2 * image_size) for name in PHOTO_NAMES]

    def __len__(self) -> int:
        return self.num_scenes

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A random crop of a random photo, or one random colour for ``background="plain"``:
        ``[S, S, 3] float32 in [0, DARKEN]``."""
        if self.background == "plain":
            colour = rng.uniform(0, self._DARKEN, 3).astype(np.float32)
            return np.broadcast_to(colour, (self.image_size, self.image_size, 3)).copy()
        source = self._photos[rng.integers(len(self._photos))]
        h, w = source.shape[:2]
        side = rng.integers(self.image_size, min(h, w) + 1)
        y0 = rng.integers(0, h - side + 1)
        x0 = rng.integers(0, w - side + 1)
        crop = Image.fromarray(source[y0 : y0 + side, x0 : x0 + side])
        crop = crop.resize((self.image_size,) * 2, Image.Resampling.BILINEAR)
        crop = crop.filter(ImageFilter.GaussianBlur(radius=1))  # soften textures that mimic strokes
        return np.asarray(crop, dtype=np.float32) * (self._DARKEN / 255)

    def _digit_alpha(self, digit_id: int, side: int) -> np.ndarray:
        """Digit ``digit_id`` upscaled to ``side x side``, cropped to its ink: ``[h, w]`` in [0, 1]."""
        digit = self._digit_images[digit_id][None, None]  # [1, 1, 8, 8]
        alpha = F.interpolate(digit, size=(side, side), mode="bilinear", align_corners=False)
        alpha = alpha[0, 0].numpy()
        # Cut away the all-zero border so digits can sit closer together; nothing visible is lost.
        rows = np.flatnonzero(alpha.any(axis=1))
        cols = np.flatnonzero(alpha.any(axis=0))
        return alpha[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    def _free_spot(
        self, occupied: np.ndarray, h: int, w: int, rng: np.random.Generator
    ) -> tuple[int, int] | None:
        """Top-left corner for an ``h x w`` patch that keeps ``_GAP`` pixels from every digit.

        Rejection sampling: draw random corners and keep the first one whose patch, grown by the
        gap on each side, covers no pixel of ``occupied`` ``[S, S] bool``; ``None`` if all fail.
        """
        size, gap = self.image_size, self._GAP
        ys = rng.integers(0, size - h + 1, size=self._TRIES)
        xs = rng.integers(0, size - w + 1, size=self._TRIES)
        for y, x in zip(ys, xs):
            if not occupied[max(y - gap, 0) : y + h + gap, max(x - gap, 0) : x + w + gap].any():
                return int(y), int(x)
        return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not 0 <= index < self.num_scenes:
            raise IndexError(f"scene index {index} out of range for {self.num_scenes} scenes")
        rng = np.random.default_rng([self.seed, index, self._SPLIT_CODES[self.split]])
        size = self.image_size
        image = self._background(rng)  # [S, S, 3]
        occupied = np.zeros((size, size), dtype=bool)  # pixels taken by a digit's patch
        instance_map = np.zeros((size, size), dtype=np.int64)
        labels, digit_ids = [], []
        for _ in range(rng.integers(self.min_digits, self.max_digits + 1)):
            digit_id = int(rng.choice(self.digit_pool))
            alpha = self._digit_alpha(digit_id, int(rng.integers(*self.digit_size, endpoint=True)))
            h, w = alpha.shape
            spot = self._free_spot(occupied, h, w, rng)
            if spot is None:
                continue  # the scene is too crowded for this digit: skip it
            y, x = spot
            occupied[y : y + h, x : x + w] = True
            ink = np.array(colorsys.hsv_to_rgb(rng.random(), 1.0, 1.0), dtype=np.float32)
            # Alpha blending: where the digit is fully "on" we see ink, where it is 0 the photo.
            patch = image[y : y + h, x : x + w]
            image[y : y + h, x : x + w] = (1 - alpha[..., None]) * patch + alpha[..., None] * ink
            instance_map[y : y + h, x : x + w][alpha > self._MASK_THRESHOLD] = len(labels) + 1
            labels.append(int(self._digit_labels[digit_id]) + 1)
            digit_ids.append(digit_id)

        instance_ids = torch.arange(1, len(labels) + 1)
        instance_map_t = torch.from_numpy(instance_map)
        masks = (instance_map_t[None] == instance_ids[:, None, None]).to(torch.uint8)  # [K, S, S]
        boxes = masks_to_boxes(masks)  # [K, 4] xyxy, x2/y2 = index of the last mask pixel
        boxes[:, 2:] += 1  # -> pixel-edge coordinates: x2/y2 = the edge just past that pixel
        labels_t = torch.tensor(labels, dtype=torch.int64)
        # Look-up table: instance id 0 (background) -> 0, instance k + 1 -> its label.
        semantic_mask = torch.cat([torch.zeros(1, dtype=torch.int64), labels_t])[instance_map_t]
        target = {
            "boxes": boxes.float(),
            "labels": labels_t,
            "masks": masks,
            "semantic_mask": semantic_mask,
            "instance_map": instance_map_t,
            "image_id": torch.tensor(index, dtype=torch.int64),
            "digit_ids": torch.tensor(digit_ids, dtype=torch.int64),
        }
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), target


def detection_collate(batch):
    """``DataLoader`` ``collate_fn`` for detection: ``(list of images, list of target dicts)``.

    The default collate would try to stack the targets, which fails because every scene has its
    own number of boxes; detection models take lists instead.
    """
    images, targets = zip(*batch)
    return list(images), list(targets)


def coloured_digits(
    num_images: int, split: str = "train", size: int = 32, background: str = "photo", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """One real digit per image, painted in a random ink colour at a random position, over a crop
    of a real photo (``background="photo"``, like the MNIST-M set of domain-adaptation papers) or
    over one plain colour (``"plain"``): two domains of the same 10-class task.

    Images are one-digit :class:`DigitScenes` (digit side 60-90 % of ``size``), so the handwriting
    of ``split="test"`` is never seen in ``"train"``. Returns ``(images [N, 3, size, size] float32
    in [0, 1], labels [N] int64 digits 0-9)``; same arguments, same images.
    """
    _check_size(size, "size", minimum=16)
    scenes = DigitScenes(
        num_images, image_size=size, min_digits=1, max_digits=1,
        digit_size=(round(0.6 * size), round(0.9 * size)), split=split, seed=seed,
        background=background,
    )  # fmt: skip
    pairs = [scenes[i] for i in range(num_images)]
    images = torch.stack([image for image, _ in pairs])
    labels = torch.cat([target["labels"] for _, target in pairs]) - 1  # scene labels are digit + 1
    return images, labels


# --------------------------------------------------------------------------------------------
# Circles: a two-class segmentation set small enough to train on in a minute
# --------------------------------------------------------------------------------------------


def circle_mask(size: int, cx: float, cy: float, r: float) -> torch.Tensor:
    """Bool ``[size, size]`` mask of the pixels whose centre lies strictly inside the circle
    ``(x - cx)^2 + (y - cy)^2 < r^2`` (pixel ``(row, col)`` has its centre at ``(col + 0.5,
    row + 0.5)``)."""
    _check_size(size, "size")
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    return (centres[None, :] - cx) ** 2 + (centres[:, None] - cy) ** 2 < r**2


def circles(
    num_images: int = 250,
    size: int = 64,
    max_circles: int = 3,
    noise: float = 0.1,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random filled circles on plain backgrounds, for the U-Net exercise of lesson 04.

    Image ``i`` has a random background colour, between 1 and ``max_circles`` circles (radius
    ``size / 16`` to ``size / 5``, fully inside the image) painted in a second colour at least 0.5
    away from it (Euclidean RGB distance), and Gaussian pixel noise of standard deviation
    ``noise``. Returns ``(images [N, 3, size, size] float32 in [0, 1], masks [N, size, size]
    int64)``, mask 1 inside any circle and 0 elsewhere. Same seed, same images.
    """
    _check_size(num_images, "num_images")
    _check_size(size, "size", minimum=8)
    _check_size(max_circles, "max_circles")
    rng = np.random.default_rng(seed)
    images = torch.empty(num_images, 3, size, size)
    masks = torch.zeros(num_images, size, size, dtype=torch.int64)
    for i in range(num_images):
        background, ink = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        while np.linalg.norm(ink - background) < 0.5:  # a circle must be visible to be learnable
            ink = rng.uniform(0, 1, 3)
        for _ in range(rng.integers(1, max_circles + 1)):
            r = rng.uniform(size / 16, size / 5)
            cx, cy = rng.uniform(r, size - r, 2)
            masks[i] |= circle_mask(size, cx, cy, r).long()
        colour = np.where(masks[i].numpy()[..., None] == 1, ink, background)  # [size, size, 3]
        colour = colour + rng.normal(0, noise, colour.shape)
        images[i] = torch.from_numpy(colour.clip(0, 1).transpose(2, 0, 1).astype(np.float32))
    return images, masks


# --------------------------------------------------------------------------------------------
# Online datasets (an option, never required)
# --------------------------------------------------------------------------------------------

# key -> (name for messages, torchvision class, (channels, size) of one image)
_ONLINE_DATASETS = {
    "cifar10": ("CIFAR-10", torchvision.datasets.CIFAR10, (3, 32)),
    "mnist": ("MNIST", torchvision.datasets.MNIST, (1, 28)),
    "fashion_mnist": ("Fashion-MNIST", torchvision.datasets.FashionMNIST, (1, 28)),
}


def _digits_dataset(train: bool = True, size: int = 8, channels: int = 1) -> TensorDataset:
    """The train or test part of :func:`digits_split` as a ``TensorDataset``.

    Items are ``(image [channels, size, size] float32 in [0, 1], label int64)``; with 3 channels
    the grey digit is repeated in R, G and B.
    """
    x_train, x_test, y_train, y_test = digits_split(size)
    images, labels = (x_train, y_train) if train else (x_test, y_test)
    return TensorDataset(images.repeat(1, channels, 1, 1), labels)


def _torchvision_dataset(key, train, download, root, transform, fallback, verbose):
    title, dataset_class, (channels, size) = _ONLINE_DATASETS[key]
    if fallback not in (None, "digits"):
        raise ValueError(f"fallback must be None or 'digits', got {fallback!r}")
    root = Path(root) if root is not None else runtime.cache_dir("datasets")
    try:
        return _load_or_download(key, title, dataset_class, train, download, root, transform)
    except DatasetUnavailable:
        if fallback is None:
            raise
    if verbose:
        print(
            f"{title} is unavailable, so the embedded scikit-learn digits are used instead, "
            f"shaped like {title} ({channels}x{size}x{size} images)."
        )
    return _digits_dataset(train, size, channels)


def _load_or_download(key, title, dataset_class, train, download, root, transform):
    try:  # already on disk? Then no network is needed at all.
        return dataset_class(root, train=train, transform=transform, download=False)
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        pass
    if not download:
        raise DatasetUnavailable(
            f"{title} is not in {root}; call {key}(download=True) while online, "
            f"or use the embedded digits with {key}(fallback='digits')."
        )
    if not runtime.online():
        raise DatasetUnavailable(
            f"There is no network, so {title} cannot be downloaded; "
            f"use the embedded digits instead with {key}(fallback='digits')."
        )
    try:
        with runtime.download_timeout():
            return dataset_class(root, train=train, transform=transform, download=True)
    except (OSError, RuntimeError) as err:  # network errors, or torchvision giving up on mirrors
        runtime.mark_offline()  # so the next loader does not wait on the network again
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DatasetUnavailable(
            f"Downloading {title} into {root} failed ({reason}); check the connection "
            f"or use the embedded digits with {key}(fallback='digits')."
        ) from err


def cifar10(
    train: bool = True,
    download: bool = False,
    root: Path | None = None,
    transform: Callable | None = None,
    fallback: str | None = None,
    verbose: bool = False,
) -> Dataset:
    """CIFAR-10 (60,000 32x32 colour images, 10 classes) from torchvision, or a fallback.

    The data is read from ``root`` (default: ``cache_dir("datasets")``) when it is already there,
    without any network. Otherwise ``download=True`` fetches it (about 170 MB) if
    :func:`~course_utils.runtime.online`. When neither works, :class:`DatasetUnavailable` says
    what to do -- unless ``fallback="digits"``: then the embedded digits of :func:`digits_split`
    (``train`` or test part) come back as a ``TensorDataset`` of ``([3, 32, 32] float32 in
    [0, 1], int64 label)``, like CIFAR-10 after ``ToTensor()``; ``transform`` is not applied to
    them. ``verbose=True`` prints one sentence when the fallback is used.
    """
    return _torchvision_dataset("cifar10", train, download, root, transform, fallback, verbose)


def mnist(
    train: bool = True,
    download: bool = False,
    root: Path | None = None,
    transform: Callable | None = None,
    fallback: str | None = None,
    verbose: bool = False,
) -> Dataset:
    """MNIST (70,000 28x28 handwritten digits) from torchvision, or a fallback.

    Same behaviour as :func:`cifar10`; the digits fallback holds ``[1, 28, 28]`` images.
    """
    return _torchvision_dataset("mnist", train, download, root, transform, fallback, verbose)


def fashion_mnist(
    train: bool = True,
    download: bool = False,
    root: Path | None = None,
    transform: Callable | None = None,
    fallback: str | None = None,
    verbose: bool = False,
) -> Dataset:
    """Fashion-MNIST (70,000 28x28 clothing images, 10 classes) from torchvision, or a fallback.

    Same behaviour as :func:`cifar10`; the digits fallback holds ``[1, 28, 28]`` images.
    """
    return _torchvision_dataset(
        "fashion_mnist", train, download, root, transform, fallback, verbose
    )


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "cifar10": cifar10,
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "digits": _digits_dataset,
}


def load_dataset(name: str, **kwargs) -> Dataset:
    """Load a dataset by name: ``"cifar10"``, ``"mnist"``, ``"fashion_mnist"`` or ``"digits"``.

    ``kwargs`` go to the loader: :func:`cifar10` and friends for the online sets; ``train`` and
    ``size`` for ``"digits"``, which returns the train or test part of :func:`digits_split` as a
    ``TensorDataset`` of ``([1, size, size] float32 in [0, 1], int64 label)``.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(_LOADERS)}")
    return _LOADERS[name](**kwargs)
