"""Lesson 12: Stable Diffusion in miniature, the real parts, small enough to train on a laptop.

Stable Diffusion is four parts, and this module builds each from diffusers and transformers:

1. an autoencoder (``diffusers.AutoencoderKL``) that compresses an image to latents, here
   32x32x3 -> 8x8x4 (f = 4, two downsamplings), and decodes them back;
2. a text encoder (``transformers.CLIPTextModel``) that turns the prompt's token ids into one
   vector per token, ``[B, 12, 64]``;
3. a denoiser (``diffusers.UNet2DConditionModel``) that predicts, from noisy latents, the velocity
   v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x0 (Stable Diffusion 2's target); its cross-attention layers let
   every latent pixel look at every token vector;
4. a scheduler (``diffusers.DDPMScheduler`` to train, ``DDIMScheduler`` to sample).

:class:`SceneAutoencoder` and :class:`TextConditionedDenoiser` hold the trainable parts as the
course's checkpoint store keeps them; :func:`assemble_pipeline` puts them, the tokenizer and a
scheduler into diffusers' ``StableDiffusionPipeline``, the same class that runs the real model.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..data.captions import CaptionedScenes
from ..train import fit_one_cycle
from .tokenizer import MAX_TOKENS, build_tokenizer, check_prompt
from .training import seeded_loader, train_denoiser

__all__ = [
    "NOISE_SCHEDULE",
    "SceneAutoencoder",
    "TextConditionedDenoiser",
    "train_scene_autoencoder",
    "encode_scenes",
    "tokenize",
    "train_text_to_image",
    "assemble_pipeline",
    "sample_by_hand",
    "generate",
]

#: The noise schedule of training and sampling, in diffusers' terms: 1,000 steps of the cosine
#: schedule (diffusers calls it ``squaredcos_cap_v2``), the model predicting the velocity v.
#: Why not the noise ε, as lessons 07-11 do: where a digit goes is decided at the noisiest steps,
#: and there x_t is almost all noise, so the blind guess ε ~ sqrt(1 - ᾱ_t) x_t is nearly right
#: whatever the image: the ε loss hardly teaches the layout. The v loss depends on x0 at every t.
#: Same recipe and seed: ε drew 0.495 of two-digit relation prompts right (most of the rest with
#: the digits swapped), v 1.000.
NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",
    "clip_sample": False,
}
_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "down_block_types": ("DownEncoderBlock2D",) * 3,  # three blocks, two downsamplings: f = 4
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (16, 32, 64),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 32,
}
_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "cross_attention_dim": 64,  # = the text encoder's hidden size: what cross-attention reads
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": MAX_TOKENS,
}


@functools.cache
def _tokenizer() -> CLIPTokenizer:
    return build_tokenizer()


class SceneAutoencoder(nn.Module):
    """``vae``: a diffusers ``AutoencoderKL`` for 32x32 RGB scenes (8x8x4 latents), and the
    ``scaling_factor`` (a buffer, saved with the weights) that gives its latents unit variance.

    ``forward(images [N, 3, 32, 32] in [0, 1]) -> [N, 3, 32, 32]`` reconstructs from the latent
    means, clipped to [0, 1]: what the lesson looks at to judge the autoencoder.
    """

    def __init__(self):
        super().__init__()
        self.vae = AutoencoderKL(**_VAE)
        self.register_buffer("scaling_factor", torch.tensor(1.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean = self.vae.encode(images * 2 - 1).latent_dist.mean
        return ((self.vae.decode(mean).sample + 1) / 2).clamp(0, 1)


class TextConditionedDenoiser(nn.Module):
    """The two parts trained together: ``text_encoder`` (a ``CLIPTextModel``, 2 layers of width
    64) and ``unet`` (a ``UNet2DConditionModel`` on 8x8x4 latents).

    ``forward(latents [N, 4, 8, 8], t [N], input_ids [N, 12]) -> v̂ [N, 4, 8, 8]``: the token
    ids become one vector per token, and the U-Net's cross-attention reads them.
    """

    def __init__(self):
        super().__init__()
        tokenizer = _tokenizer()
        config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **_TEXT,
        )
        self.text_encoder = CLIPTextModel(config)
        self.unet = UNet2DConditionModel(**_UNET)

    def forward(
        self, latents: torch.Tensor, t: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        tokens = self.text_encoder(input_ids).last_hidden_state  # [N, 12, 64]
        return self.unet(latents, t, encoder_hidden_states=tokens).sample


def train_scene_autoencoder(
    model: SceneAutoencoder,
    scenes: CaptionedScenes,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    kl_weight: float,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
):
    """Train ``model.vae`` to reconstruct ``scenes.images`` (mean squared error in [-1, 1]) with
    a small KL pull of the latents toward N(0, I) (AdamW, one-cycle learning rate up to ``lr``), then set ``model.scaling_factor`` to one over
    the standard deviation of the training latents. Returns the training ``History``.

    The KL term is tiny, as in Stable Diffusion: it only keeps the latent space smooth; the
    scaling factor then brings the latents to unit variance, the scale the noise schedule
    assumes.
    """
    loader, generator = seeded_loader(scenes.images, torch.zeros(len(scenes)), batch_size, seed)

    def step(model, batch, device):
        x = batch[0].to(device)
        posterior = model.vae.encode(x).latent_dist
        # a seeded draw from the posterior: z = mean + std * noise
        noise = torch.randn(posterior.mean.shape, generator=generator).to(device)
        recon = model.vae.decode(posterior.mean + posterior.std * noise).sample
        return F.mse_loss(recon, x) + kl_weight * posterior.kl().mean() / x[0].numel()

    history = fit_one_cycle(
        model, loader, epochs=epochs, lr=lr, train_step=step, device=device, progress=progress
    )
    model.eval()
    latents = encode_scenes(model, scenes.images, scale=False)
    model.scaling_factor.fill_(1.0 / latents.std().item())
    return history


@torch.no_grad()
def encode_scenes(
    model: SceneAutoencoder, images: torch.Tensor, *, scale: bool = True, batch_size: int = 500
) -> torch.Tensor:
    """The latent means ``[N, 4, 8, 8]`` of ``images [N, 3, 32, 32]`` in [0, 1], multiplied by
    the scaling factor unless ``scale=False`` (on the CPU, in batches)."""
    device = model.scaling_factor.device
    means = [
        model.vae.encode(batch.to(device) * 2 - 1).latent_dist.mean.cpu()
        for batch in images.split(batch_size)
    ]
    return torch.cat(means) * (model.scaling_factor.item() if scale else 1.0)


def tokenize(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """``[N, 12]`` token ids: start token, words, end token, then the end token again as padding
    -- exactly what ``StableDiffusionPipeline`` feeds the text encoder."""
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def train_text_to_image(
    model: TextConditionedDenoiser,
    latents: torch.Tensor,
    captions: list[str],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    p_uncond: float,
    ema_decay: float,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
):
    """Stable Diffusion's training step, on ``latents [N, 4, 8, 8]`` (scaled) and their captions:
    noise each latent to a random t with the scheduler's ``add_noise``, predict the velocity
    (``get_velocity``: the target of :data:`NOISE_SCHEDULE`'s ``prediction_type``) from the noisy
    latent, t and the caption, and minimise the squared error; AdamW on both parts and an
    EMA of the weights. With probability ``p_uncond`` a caption is replaced by the empty prompt,
    so the model also learns the unconditional prediction classifier-free guidance needs.

    The loop is :func:`~course_utils.diffusion.train_denoiser`'s, the one lessons 07-10 train
    with (seeded batches, AdamW, EMA after every step); only the loss is new. Returns
    ``(ema_model, training loss per epoch)``; ``model`` holds the last, un-averaged weights.
    """
    if len(latents) != len(captions):
        raise ValueError(f"{len(latents)} latents but {len(captions)} captions")
    tokenizer, scheduler = _tokenizer(), DDPMScheduler(**NOISE_SCHEDULE)
    empty = tokenize(tokenizer, [""])[0]

    def loss(model, x0, ids, generator):
        device = x0.device
        drop = (torch.rand(len(ids), generator=generator) < p_uncond).to(device)
        ids = torch.where(drop[:, None], empty.to(device), ids)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = t.to(device)
        noisy = scheduler.add_noise(x0, noise, t)  # sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε
        target = scheduler.get_velocity(x0, noise, t)  # sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x0
        return F.mse_loss(model(noisy, t, ids), target)

    return train_denoiser(
        model,
        loss,
        latents,
        tokenize(tokenizer, captions),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        ema_decay=ema_decay,
        seed=seed,
        device=device,
        progress=progress,
        rescale=False,
    )


def assemble_pipeline(
    autoencoder: SceneAutoencoder, denoiser: TextConditionedDenoiser
) -> StableDiffusionPipeline:
    """diffusers' ``StableDiffusionPipeline`` made of the course's trained parts, the course's
    tokenizer and a DDIM scheduler on the training schedule, with Stable Diffusion's "leading"
    spacing and ``steps_offset=1``. No safety checker: the model draws digits.

    The scheduler reads ``prediction_type`` from :data:`NOISE_SCHEDULE`, so it steps with the
    velocity the model predicts (x̂0 = sqrt(ᾱ_t) x_t - sqrt(1 - ᾱ_t) v̂).

    The pipeline reads the latent scale from ``vae.config.scaling_factor``, so the autoencoder's
    trained scale is written there.
    """
    vae = autoencoder.vae
    vae.register_to_config(scaling_factor=autoencoder.scaling_factor.item())
    scheduler = DDIMScheduler(**NOISE_SCHEDULE, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=denoiser.text_encoder,
        tokenizer=_tokenizer(),
        unet=denoiser.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _check_prompts(pipe: StableDiffusionPipeline, prompts, negative_prompt: str | None) -> None:
    """A clear error for what the pipeline itself would take silently: a single string instead
    of a list, no prompt at all, a word the text encoder never saw, a prompt too long."""
    if isinstance(prompts, str) or not isinstance(prompts, list | tuple):
        raise TypeError(
            f"prompts is a list of str (e.g. [{prompts!r}]), got {type(prompts).__name__}"
        )
    if not prompts:
        raise ValueError("no prompts: pass at least one")
    for prompt in [*prompts, *([negative_prompt] if negative_prompt is not None else [])]:
        check_prompt(pipe.tokenizer, prompt)


@torch.no_grad()
def sample_by_hand(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    *,
    num_steps: int = 30,
    guidance_scale: float = 4.0,
    negative_prompt: str = "",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """What ``pipe(prompts, num_inference_steps=num_steps, ...)`` does, written out: images
    ``[N, 3, 32, 32]`` in [0, 1].

    1. The text encoder turns the prompts, and the negative prompt (the empty one by default),
       into token vectors.
    2. Noise ``[N, 4, 8, 8]`` is drawn from ``generator`` (on the CPU, as diffusers does).
    3. At each of the scheduler's timesteps the U-Net predicts the velocity twice in one batch --
       for the negative prompt and for the prompt -- and classifier-free guidance extrapolates
       from the first toward the second: v = v_neg + s (v_prompt - v_neg). The scheduler's step
       turns it into the next, less noisy latents.
    4. The VAE decodes the latents (divided by the scaling factor the model was trained with).

    Prompts are checked first (:func:`~course_utils.diffusion.tokenizer.check_prompt`).
    """
    _check_prompts(pipe, prompts, negative_prompt)
    device = pipe.device

    def embed(texts: list[str]) -> torch.Tensor:
        return pipe.text_encoder(tokenize(pipe.tokenizer, texts).to(device)).last_hidden_state

    tokens = torch.cat([embed([negative_prompt] * len(prompts)), embed(prompts)])
    scheduler = pipe.scheduler
    scheduler.set_timesteps(num_steps, device=device)
    channels, side = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    latents = torch.randn((len(prompts), channels, side, side), generator=generator)
    latents = latents.to(device) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        both = pipe.unet(torch.cat([latents] * 2), t, encoder_hidden_states=tokens).sample
        negative, positive = both.chunk(2)
        velocity = negative + guidance_scale * (positive - negative)
        latents = scheduler.step(velocity, t, latents).prev_sample
    images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return (images / 2 + 0.5).clamp(0, 1)


@torch.no_grad()
def generate(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    *,
    guidance_scale: float,
    num_steps: int,
    seed: int = 0,
    negative_prompt: str | None = None,
    batch_size: int = 250,
) -> torch.Tensor:
    """``pipe(prompts, num_inference_steps=num_steps)`` in batches, as images ``[N, 3, 32, 32]`` in [0, 1] on the CPU; the
    noise comes from one generator seeded with ``seed``, so the same call draws the same images.
    Prompts are checked first (:func:`~course_utils.diffusion.tokenizer.check_prompt`)."""
    _check_prompts(pipe, prompts, negative_prompt)
    generator = torch.Generator().manual_seed(seed)
    images = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        images.append(
            pipe(
                chunk,
                guidance_scale=guidance_scale,
                num_inference_steps=num_steps,
                negative_prompt=None if negative_prompt is None else [negative_prompt] * len(chunk),
                generator=generator,
                output_type="pt",
            ).images.cpu()
        )
    return torch.cat(images)
