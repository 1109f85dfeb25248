"""course_utils: every implementation the course's notebooks import, each one tested.

One idea per file; a topic with several ideas is a package whose ``__init__`` re-exports them.
In course order:

- ``runtime``: devices, FAST mode, network, cache (re-exported here).
- ``data/``: the embedded digits and photos, digit scenes, a folder dataset, circles, online sets.
- ``image/``: lesson 01 -- layouts, colour spaces, filters, preprocessing, MixUp/CutMix.
- ``train`` and ``plot``: the training loop and the figures every lesson uses.
- ``checks``: the one input-check vocabulary (images, labels, timesteps, lengths) and its fixes.
- ``zoo``: the checkpoint store (load, info, status, ``make checkpoints``); it knows no topic.
- ``models/``: lesson 02 -- LeNet-5 to ConvNeXt, the tools that measure them (``measure``), the
  classifiers' recipes.
- ``detection/``: lesson 03 -- boxes, anchors, heads, losses, mAP, the detector and its recipe.
- ``segmentation/``: lesson 04 -- metrics, losses, U-Net, FCN, DeepLab, instance and panoptic.
- ``transfer/``: lesson 05 -- strategies, schedules, augmentation, domain adaptation (AdaBN, MMD,
  DANN), the training loops; ``selfsup`` (self-supervised pretraining, the linear probe).
- ``features/``: lesson 06 -- feature extraction, similarity search, clustering, classifiers,
  top-k, calibration; ``style``: neural style transfer.
- ``diffusion/``: lessons 07-12 -- schedules, steps, samplers, guidance, the U-Net, training,
  flow matching, text-to-image (tokenizer, Stable Diffusion's parts, judge, attention maps), and
  the generative models' recipes, lesson 09's VAE (``vae``) and judging generated digits
  (``sample_quality``: recognition, Fréchet distance, memorisation).
- ``distributed``: the multi-GPU appendix. ``exercises/``: the auto-checked exercises.
- ``widgets``: sliders that redraw a figure of lessons 01, 03, 07 and 08 (ipywidgets).
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
