"""The ``root/<class>/<image>`` layout most image datasets use, read by :class:`FolderDataset`.

:func:`make_image_folder` writes such a folder from crops of the course photos; the one it wrote
ships with the course in ``data/images`` (:data:`IMAGE_FOLDER`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .photos import check_size, photo

__all__ = ["IMAGE_FOLDER", "FolderDataset", "make_image_folder"]

#: A small class-per-folder image set shipped with the course, written by :func:`make_image_folder`.
IMAGE_FOLDER: Path = Path(__file__).resolve().parents[2] / "data" / "images"

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
    check_size(per_class, "per_class")
    check_size(size, "size", minimum=8)
    root = Path(root)
    rng = np.random.default_rng(seed)
    for class_name, photo_name in _IMAGE_FOLDER_PHOTOS.items():
        image = photo(photo_name)
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
