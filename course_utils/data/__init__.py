"""Data for the course: real images that are always available, and real datasets as an option.

Everything a lesson needs by default ships with the course or with a package it installs, so the
notebooks run offline, in a lecture hall or on a train:

* :func:`photo` -- real photographs bundled with scikit-image and scikit-learn (``PHOTO_NAMES``).
* :func:`fashion_mnist` -- Fashion-MNIST's 70,000 real 28x28 garment images in ten classes
  (``FASHION_CLASSES``), shipped in ``data/fashion_mnist`` and checked against their sha256, as
  train (55,000), validation (5,000) and test (10,000) splits: the course's main data set.
* :func:`mnist_5k` -- 5,000 real MNIST digits at 28x28, shipped in ``data/mnist_5k``, as fixed
  train (3,500), validation (500) and test (1,000) splits: lesson 05's target domain.
* :func:`digits` / :func:`digits_split` -- scikit-learn's 1,797 real handwritten 8x8 digits, as
  tensors, optionally resized, with one fixed stratified train/test split for every lesson.
* :class:`FolderDataset` and :func:`make_image_folder` -- the ``root/<class>/<image>`` layout most
  image datasets use, with a small set of such images shipped in ``data/images``.
* :class:`DigitScenes` -- detection and segmentation scenes (boxes, labels, instance masks,
  semantic masks) made by pasting real digits onto crops of real photos; :func:`digit_scenes`
  and :func:`scene_masks` keep a set of them in memory as the training pairs of a detector and
  of a semantic segmenter.
* :func:`captioned_scenes` -- coloured digits placed on a canvas, each scene with a caption
  ("a green 2 above a yellow 5") and its structured target, for text-to-image.

CIFAR-10 and MNIST come from torchvision when a network is there: :func:`cifar10` and
:func:`mnist` raise :class:`DatasetUnavailable` with one clear sentence when they cannot get the data, or fall back to the digits with ``fallback="digits"``.

One idea per file:

- ``fashion``: Fashion-MNIST and its three splits; ``photos``: the bundled photographs;
  ``handwritten``: the digits and their fixed split;
  ``folder``: class-per-folder image sets.
- ``scenes``: digit scenes for detection and segmentation, and the two domains of
  :func:`coloured_digits`; ``captions``: the captioned scenes of text-to-image; ``shapes``: the circles set of the U-Net exercise (:func:`circles`).
- ``online``: the torchvision datasets, their downloads and the offline fallback
  (:func:`load_dataset` picks one by name).
"""

from .captions import *  # noqa: F403
from .captions import __all__ as _captions
from .fashion import *  # noqa: F403
from .fashion import __all__ as _fashion
from .folder import *  # noqa: F403
from .folder import __all__ as _folder
from .handwritten import *  # noqa: F403
from .handwritten import __all__ as _handwritten
from .mnist_digits import *  # noqa: F403
from .mnist_digits import __all__ as _mnist_digits
from .online import *  # noqa: F403
from .online import __all__ as _online
from .photos import *  # noqa: F403
from .photos import __all__ as _photos
from .scenes import *  # noqa: F403
from .scenes import __all__ as _scenes
from .shapes import *  # noqa: F403
from .shapes import __all__ as _shapes

__all__ = [
    *_fashion,
    *_mnist_digits,
    *_photos,
    *_handwritten,
    *_folder,
    *_scenes,
    *_captions,
    *_shapes,
    *_online,
]
