"""Detection and segmentation scenes made by pasting real digits onto crops of real photos.

:class:`DigitScenes` draws each scene with its boxes, labels, instance masks and semantic mask;
:func:`digit_scenes` and :func:`scene_masks` keep a set of them in memory as the training pairs
of a detector and of a semantic segmenter; :func:`coloured_digits` makes two domains of one
classification task (digits on photos, digits on plain colours) for domain adaptation.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch.utils.data import Dataset
from torchvision.ops import masks_to_boxes

from .handwritten import digits, digits_split_indices
from .photos import PHOTO_NAMES, check_size, photo

__all__ = ["DigitScenes", "coloured_digits", "detection_collate", "digit_scenes", "scene_masks"]


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
        check_size(num_scenes, "num_scenes")
        if background not in ("photo", "plain"):
            raise ValueError(f"background must be 'photo' or 'plain', got {background!r}")
        check_size(min_digits, "min_digits")
        check_size(max_digits, "max_digits")
        if min_digits > max_digits:
            raise ValueError(f"min_digits ({min_digits}) must be <= max_digits ({max_digits})")
        if split not in self._SPLIT_CODES:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if len(digit_size) != 2:
            raise ValueError(f"digit_size must be (smallest, largest), got {digit_size!r}")
        smallest, largest = digit_size
        check_size(smallest, "digit_size[0]", minimum=8)  # 8x8 digits are upscaled, never shrunk
        if smallest > largest:
            raise ValueError(f"digit_size must be (smallest, largest), got {digit_size!r}")
        check_size(image_size, "image_size")
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


def digit_scenes(
    num_scenes: int, split: str = "train", keys: Sequence[str] = ("boxes", "labels"), **scene_kwargs
) -> list[tuple]:
    """``num_scenes`` :class:`DigitScenes`, generated once and kept in memory as ``(image
    [3, S, S], {key: target[key] for key in keys})`` pairs, for training a detector.

    Drawing a scene costs about as much as a training step on it: generating them once instead of
    once per epoch makes training much faster. Only the target ``keys`` a detector trains on are
    kept (add ``"masks"`` for instance segmentation). ``scene_kwargs`` go to :class:`DigitScenes`.
    """
    scenes = DigitScenes(num_scenes, split=split, **scene_kwargs)
    return [
        (image, {k: target[k] for k in keys})
        for image, target in (scenes[i] for i in range(num_scenes))
    ]


def scene_masks(num_scenes: int, split: str = "train", **scene_kwargs) -> list[tuple]:
    """The same scenes as :func:`digit_scenes` for semantic segmentation: ``(image [3, S, S]
    float, semantic mask [S, S] int64)`` pairs (0 = background, digit d = d + 1)."""
    scenes = digit_scenes(num_scenes, split, keys=("semantic_mask",), **scene_kwargs)
    return [(image, target["semantic_mask"]) for image, target in scenes]


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
    check_size(size, "size", minimum=16)
    scenes = DigitScenes(
        num_images,
        image_size=size,
        min_digits=1,
        max_digits=1,
        digit_size=(round(0.6 * size), round(0.9 * size)),
        split=split,
        seed=seed,
        background=background,
    )
    pairs = [scenes[i] for i in range(num_images)]
    images = torch.stack([image for image, _ in pairs])
    labels = torch.cat([target["labels"] for _, target in pairs]) - 1  # scene labels are digit + 1
    return images, labels
