"""Lesson 01: images as tensors: conversions, colour spaces, filtering, preprocessing and mixing.

Conventions used everywhere in the course:

* an image is a float tensor ``[C, H, W]`` (a batch is ``[B, C, H, W]``) with values in ``[0, 1]``;
* ``C`` is 3 (RGB, in that order) or 1 (grey);
* files, NumPy, PIL, OpenCV and matplotlib use ``[H, W, C]`` uint8 in ``[0, 255]`` instead:
  :func:`to_tensor` and :func:`to_numpy` convert between the two worlds.

Functions that accept ``[..., C, H, W]`` work on one image or on a batch alike. Every function
checks its input with :func:`course_utils.checks.check_images`, so a wrong layout, dtype or range
fails loudly with a hint instead of silently producing a wrong picture.

- ``conversions``: the conversions between the two layouts;
- ``colour``: grey, HSV, YCrCb and L*a*b*, and an HSV colour mask;
- ``filters``: classic kernels, depthwise convolution, Gaussian kernels, Sobel gradients;
- ``preprocessing``: ImageNet statistics, normalisation, training/evaluation pipelines,
  histogram equalisation and CLAHE;
- ``mixing``: MixUp and CutMix.
"""

from .colour import *  # noqa: F403
from .colour import __all__ as _colour
from .conversions import *  # noqa: F403
from .conversions import __all__ as _conversions
from .filters import *  # noqa: F403
from .filters import __all__ as _filters
from .mixing import *  # noqa: F403
from .mixing import __all__ as _mixing
from .preprocessing import *  # noqa: F403
from .preprocessing import __all__ as _preprocessing

__all__ = [*_conversions, *_colour, *_filters, *_preprocessing, *_mixing]
