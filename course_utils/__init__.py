"""course_utils: every implementation the course's notebooks import, each one tested.

Modules, in course order: ``runtime`` (devices, FAST mode, network), ``data`` (embedded and
online datasets), ``image`` (lesson 01), ``train`` and ``plot`` (used by every lesson),
``zoo`` (shipped checkpoints), ``models`` (lesson 02), ``detection`` (lesson 03),
``segmentation`` (lesson 04), ``transfer`` (lesson 05), ``features`` and ``style`` (lesson 06),
``diffusion`` (lessons 07-08), ``exercises`` (auto-checked exercises).
"""

from .runtime import FAST, cache_dir, device, environment, in_colab, online, seed_everything

#: The course's GitHub repository ("owner/name"), defined once: the Colab badge and install cell of
#: every notebook are generated from it by `python tools/nbtools.py colab`. A fork changes it here.
REPOSITORY = "cv-diffusion-course/course"

__all__ = [
    "REPOSITORY",
    "FAST",
    "cache_dir",
    "device",
    "environment",
    "in_colab",
    "online",
    "seed_everything",
]
__version__ = "0.1.0"
