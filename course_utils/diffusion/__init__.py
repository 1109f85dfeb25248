"""Lessons 07-12, denoising diffusion: noise schedules, the forward process, DDPM and DDIM
sampling, guidance, a small conditional U-Net, its training, flow matching, latent diffusion's
autoencoder and the measurements of sample quality.

A diffusion model learns to undo a fixed, gradual noising of the data: it is trained to predict
the noise ε in x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε, and samples by removing that noise step by
step. Each file holds one part of the story, its docstring the maths:

- ``schedule``: :class:`NoiseSchedule` (β_t, ᾱ_t), :func:`q_sample` (the forward process in one
  jump), :func:`trained_schedule` (the one a shipped model was trained with).
- ``steps``: one reverse step, :func:`ddpm_step` and :func:`ddim_step`; :func:`ddim_timesteps`.
- ``samplers``: the whole loops, :func:`sample_ddpm`, :func:`sample_ddim`, :func:`ddim_invert`.
- ``guidance``: :class:`Condition` (labels, guidance scale, null class: what a sampler is asked
  to draw), classifier-free guidance; classifier guidance with a :class:`NoisyClassifier`.
- ``unet``: :func:`timestep_embedding`, :class:`ResBlock`, :class:`ConditionalUNet`.
- ``training``: :func:`diffusion_loss`, conditioning dropout, :class:`EMA`, :func:`train_diffusion`.
- ``flow``: flow matching, its loss, training and the ODE samplers :func:`sample_euler`,
  :func:`sample_heun`.
- ``vae``: lesson 09's :class:`VAE`, its loss, training and latent scale.
- ``sample_quality``: judging generated digits -- :func:`recognition_accuracy`,
  :func:`frechet_distance` and the judge's version :func:`judge_distance`, :func:`memorisation`;
  :func:`to01` maps samples to [0, 1].

Text-to-image (lesson 12) is imported by module, not re-exported here (it needs transformers):

- ``tokenizer``: a CLIP tokenizer learned from the caption grammar, :func:`check_prompt`.
- ``text_to_image``: Stable Diffusion's parts from diffusers and transformers, their training, the
  assembled ``StableDiffusionPipeline`` and its sampling loop written out.
- ``scene_judge``: the judge that reads generated scenes; ``cross_attention``: attention maps.
- ``text_recipes``: the shipped judge, autoencoder and text-to-image model.

Every step and sampler matches Hugging Face diffusers' ``DDPMScheduler`` / ``DDIMScheduler``
(default settings, "leading" timestep spacing) to float32 precision; the tests check it.
"""

from .flow import *  # noqa: F403
from .flow import __all__ as _flow
from .guidance import *  # noqa: F403
from .guidance import __all__ as _guidance
from .sample_quality import *  # noqa: F403
from .sample_quality import __all__ as _sample_quality
from .samplers import *  # noqa: F403
from .samplers import __all__ as _samplers
from .schedule import *  # noqa: F403
from .schedule import __all__ as _schedule
from .steps import *  # noqa: F403
from .steps import __all__ as _steps
from .training import *  # noqa: F403
from .training import __all__ as _training
from .unet import *  # noqa: F403
from .unet import __all__ as _unet
from .vae import *  # noqa: F403
from .vae import __all__ as _vae

__all__ = [
    *_schedule,
    *_steps,
    *_samplers,
    *_guidance,
    *_unet,
    *_training,
    *_flow,
    *_vae,
    *_sample_quality,
]
