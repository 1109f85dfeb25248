"""Lesson 03: object detection: boxes, losses, metrics, the heads of the main detectors, and the
small CenterNet detector the lesson trains.

- ``boxes``: formats, IoU, NMS, anchors, the box coder; ``losses``: focal and GIoU losses;
  ``metrics``: COCO mAP, precision-recall curves, Hungarian matching; ``errors``: what kind of
  mistake each confident detection is.
- Heads: ``two_stage`` (RPN, FPN RoI Align, Faster R-CNN box head), ``one_stage`` (YOLOv1, SSD,
  RetinaNet, FCOS), ``detr`` (DETR's decoder and set loss), ``centernet``.
- ``backbone`` (a small ResNet-style backbone with an FPN), ``batch`` (what every detector takes:
  images and training targets, checked) and ``detector`` (training and evaluating the lesson's
  detector).
- Trainable detectors of the other two families, with CenterNet's interface: ``retinanet``
  (one-stage, anchors + focal loss) and ``faster_rcnn`` (two-stage: RPN, then RoI box head).
"""

from .backbone import *  # noqa: F403
from .backbone import __all__ as _backbone
from .batch import *  # noqa: F403
from .batch import __all__ as _batch
from .boxes import *  # noqa: F403
from .boxes import __all__ as _boxes
from .centernet import *  # noqa: F403
from .centernet import __all__ as _centernet
from .detector import *  # noqa: F403
from .detector import __all__ as _detector
from .detr import *  # noqa: F403
from .detr import __all__ as _detr
from .errors import *  # noqa: F403
from .errors import __all__ as _errors
from .faster_rcnn import *  # noqa: F403
from .faster_rcnn import __all__ as _faster_rcnn
from .losses import *  # noqa: F403
from .losses import __all__ as _losses
from .metrics import *  # noqa: F403
from .metrics import __all__ as _metrics
from .one_stage import *  # noqa: F403
from .one_stage import __all__ as _one_stage
from .retinanet import *  # noqa: F403
from .retinanet import __all__ as _retinanet
from .two_stage import *  # noqa: F403
from .two_stage import __all__ as _two_stage

__all__ = [
    *_boxes,
    *_losses,
    *_metrics,
    *_errors,
    *_one_stage,
    *_two_stage,
    *_detr,
    *_backbone,
    *_batch,
    *_centernet,
    *_retinanet,
    *_faster_rcnn,
    *_detector,
]
