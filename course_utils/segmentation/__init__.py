"""Lesson 04: semantic, instance and panoptic segmentation: metrics, losses, models, fusion.

Segmentation classifies every pixel. A model maps an image [B, C, H, W] to logits
[B, K, H, W], one score per class and pixel; ``logits.argmax(1)`` is the label map [B, H, W]
that is compared with the target label map [B, H, W] (int64). Datasets mark pixels that should
not count (object borders in PASCAL VOC, unlabelled regions in Cityscapes) with an
``ignore_index``, usually 255: every metric and loss here leaves those pixels out entirely.

- ``metrics``: ``confusion_matrix``, ``pixel_accuracy``, ``mean_iou``; ``losses``: ``DiceLoss``,
  ``FocalLossSegmentation``, ``CombinedSegmentationLoss``, ``BoundaryLoss``.
- Models, each [B, C, H, W] -> logits [B, K, H, W] for any H, W: ``unet`` (``MiniUNet``,
  ``UNet``), ``fcn`` (``FCN8s``) and ``deeplab`` (``ASPP``, ``DeepLabV3Plus``), the last two on
  any backbone shaped like ``backbone``'s ``TinyBackbone``.
- ``instance`` (Mask R-CNN's ``MaskHead`` and the ``InstanceSegmenter`` built on the course's
  detector) and ``panoptic`` (``panoptic_fusion``: things from instance masks, stuff from a
  semantic map, one map of segment ids).
- ``segmenter``: training and evaluating a semantic segmenter on the digit scenes.
"""

from .backbone import *  # noqa: F403
from .backbone import __all__ as _backbone
from .deeplab import *  # noqa: F403
from .deeplab import __all__ as _deeplab
from .fcn import *  # noqa: F403
from .fcn import __all__ as _fcn
from .instance import *  # noqa: F403
from .instance import __all__ as _instance
from .losses import *  # noqa: F403
from .losses import __all__ as _losses
from .metrics import *  # noqa: F403
from .metrics import __all__ as _metrics
from .panoptic import *  # noqa: F403
from .panoptic import __all__ as _panoptic
from .segmenter import *  # noqa: F403
from .segmenter import __all__ as _segmenter
from .unet import *  # noqa: F403
from .unet import __all__ as _unet

__all__ = [
    *_metrics,
    *_losses,
    *_unet,
    *_backbone,
    *_fcn,
    *_deeplab,
    *_instance,
    *_panoptic,
    *_segmenter,
]
