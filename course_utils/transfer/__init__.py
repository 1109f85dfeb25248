"""Lesson 05: transfer learning -- reuse a network trained on one task for another.

A network trained on a large *source* task has learned features worth keeping: early layers detect
edges and textures that every visual task needs, later layers combine them into parts and objects
that are more specific to the source classes. Transfer learning keeps those features and retrains
what must change. One idea per file:

- ``strategies``: what trains -- feature extraction (a new head on a frozen backbone), partial
  and full fine-tuning (``STRATEGIES``, ``set_strategy``, ``replace_head``, ``resnet_blocks``),
  discriminative learning rates (``discriminative_groups``) and ``GradualUnfreezing``.
- ``schedules``: ``warmup_cosine`` and ``one_cycle`` multipliers, and ``GroupScheduler``, which
  scales each parameter group's own rate so discriminative rates survive.
- ``augmentation``: presets from gentle to strong (``AUGMENTATIONS``, ``augmentation``).
- ``domain``: domain adaptation with unlabelled target images -- ``adapt_batch_norm`` (AdaBN),
  ``mmd_loss``, ``DANN`` with ``grad_reverse`` and ``dann_lambda``.
- ``loops``: the lesson's experiments on the course's ``fit`` -- ``fine_tune`` (with early
  stopping on a validation split and the best checkpoint kept, ``patience=``), ``adapt_domain``
  and the ``accuracy`` they report.
"""

from .augmentation import *  # noqa: F403
from .augmentation import __all__ as _augmentation
from .domain import *  # noqa: F403
from .domain import __all__ as _domain
from .loops import *  # noqa: F403
from .loops import __all__ as _loops
from .schedules import *  # noqa: F403
from .schedules import __all__ as _schedules
from .strategies import *  # noqa: F403
from .strategies import __all__ as _strategies

__all__ = [*_strategies, *_schedules, *_augmentation, *_domain, *_loops]
