"""Lesson 12: the shipped text-to-image model, in three checkpoints, and their recipes.

* ``scene_judge``: the :class:`~course_utils.diffusion.scene_judge.SceneJudge`, trained on real
  captioned scenes and scored on scenes of the 450 test digits;
* ``autoencoder_scenes``: the ``AutoencoderKL`` (32x32x3 -> 8x8x4), scored by how often the judge
  still reads its reconstructions right;
* ``text_to_image_scenes``: the text encoder and the U-Net, trained together on the
  autoencoder's latents of captions without the held-out combinations, scored by the judge on
  what the assembled ``StableDiffusionPipeline`` draws for prompts it saw and did not see.

``python -m course_utils.zoo NAME`` retrains one (``make checkpoints NAMES=...``).
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from ..data.captions import CAPTION_WORDS, COLOURS, SLOTS, CaptionedScenes, captioned_scenes
from ..zoo import Entry, load
from .scene_judge import SceneJudge, judge_accuracy, prompt_accuracy, train_scene_judge
from .text_to_image import (
    NOISE_SCHEDULE,
    SceneAutoencoder,
    TextConditionedDenoiser,
    assemble_pipeline,
    encode_scenes,
    generate,
    train_scene_autoencoder,
    train_text_to_image,
)
from .tokenizer import MAX_TOKENS

__all__ = [
    "DEFAULT_GUIDANCE",
    "DEFAULT_STEPS",
    "evaluation_prompts",
    "prompt_scores",
    "train_scene_judge_entry",
    "train_autoencoder_scenes",
    "train_text_to_image_scenes",
]

#: The sampling settings every reported accuracy uses unless it says otherwise.
DEFAULT_GUIDANCE, DEFAULT_STEPS = 4.0, 25
#: The real scenes every judge and autoencoder is scored on: test handwriting, all combinations.
_TEST_SCENES = {"num": 2000, "split": "test", "include_held_out": True}


def evaluation_prompts(num: int = 600):
    """The scenes whose captions are the evaluation prompts (test split, held-out combinations
    included and flagged in ``.held_out``), the same for every run."""
    return captioned_scenes(num, "test", include_held_out=True, seed=1)


def train_scene_judge_entry(
    judge: SceneJudge, *, scenes: int, epochs: int, lr: float, batch_size: int, progress=False
) -> dict:
    """Train the judge on ``scenes`` training scenes (every combination: a judge must read them
    all) and score it on 2,000 scenes of the test digits."""
    train_scene_judge(
        judge,
        captioned_scenes(scenes, "train", include_held_out=True),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        device="cpu",
        progress=progress,
    )
    scores = judge_accuracy(judge, captioned_scenes(**_TEST_SCENES))
    return {"metric": "scenes_read_right", "value": scores.pop("scenes"), **scores}


def train_autoencoder_scenes(
    model: SceneAutoencoder,
    *,
    scenes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    kl_weight: float,
    progress=False,
) -> dict:
    """Train the autoencoder on ``scenes`` training scenes (without the held-out combinations:
    the text-to-image model must never see them, not even through its autoencoder); score how
    often the shipped judge reads its reconstructions of 2,000 test scenes right."""
    train_scene_autoencoder(
        model,
        captioned_scenes(scenes, "train"),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        kl_weight=kl_weight,
        device="cpu",
        progress=progress,
    )
    test = captioned_scenes(**_TEST_SCENES)
    with torch.no_grad():
        recon = torch.cat([model(batch) for batch in test.images.split(500)])
    scores = judge_accuracy(
        load("scene_judge", device="cpu"), dataclasses.replace(test, images=recon)
    )
    return {
        "metric": "reconstructions_read_right",
        "value": scores["scenes"],
        "mse": ((recon - test.images) ** 2).mean().item(),
    }


def prompt_scores(right: torch.Tensor, prompts: CaptionedScenes) -> dict:
    """The share of prompts drawn right (``right [N]``, from
    :func:`~course_utils.diffusion.scene_judge.prompt_accuracy`) among the one-digit and the
    two-digit prompts seen in training, and among the held-out combinations (``prompts``: the
    scenes whose captions were the prompts); NaN for a group with no prompt."""
    seen, two = ~prompts.held_out, prompts.two

    def share(mask):
        return right[mask].float().mean().item() if mask.any() else float("nan")

    return {
        "one_digit": share(seen & ~two),
        "two_digits": share(seen & two),
        "held_out": share(prompts.held_out),
        "held_out_one_digit": share(prompts.held_out & ~two),
        "held_out_two_digits": share(prompts.held_out & two),
    }


def train_text_to_image_scenes(
    model: TextConditionedDenoiser,
    *,
    scenes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    p_uncond: float,
    ema_decay: float,
    progress=False,
) -> dict:
    """Train the text encoder and U-Net on the shipped autoencoder's latents of ``scenes``
    training scenes (no held-out combination) and keep the EMA weights; score the assembled
    pipeline with the judge on 600 evaluation prompts (default guidance and steps)."""
    autoencoder = load("autoencoder_scenes", device="cpu")
    train = captioned_scenes(scenes, "train")
    ema, _ = train_text_to_image(
        model,
        encode_scenes(autoencoder, train.images),
        train.captions,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        p_uncond=p_uncond,
        ema_decay=ema_decay,
        device="cpu",
        progress=progress,
    )
    model.load_state_dict(ema.state_dict())  # ship the averaged weights
    model.eval()
    prompts = evaluation_prompts()
    images = generate(
        assemble_pipeline(autoencoder, model),
        prompts.captions,
        guidance_scale=DEFAULT_GUIDANCE,
        num_steps=DEFAULT_STEPS,
    )
    right = prompt_accuracy(load("scene_judge", device="cpu"), images, prompts.captions)
    scores = prompt_scores(right, prompts)
    return {"metric": "one_digit_prompts_right", "value": scores.pop("one_digit"), **scores}


_SCENES = {"in_channels": 3, "image_size": 32, "input_range": [0, 1]}
_ONE_CYCLE = {"optimizer": "AdamW, one-cycle lr (peak lr)"}

#: The shipped models of this module; the manifest names the module, so ``zoo.load`` finds them.
#: A builder without arguments (the class itself) is described in words by ``architecture``.
CHECKPOINTS = (
    Entry(
        "scene_judge",
        functools.partial(SceneJudge, width=32, features=256),
        train_scene_judge_entry,
        {"scenes": 30000, "epochs": 6, "lr": 3e-3, "batch_size": 128},
        notes={"objective": "cross-entropy per slot for the digit and the colour"} | _ONE_CYCLE,
        architecture=": per slot, digit (or empty) and colour",
        description="Reads digits, colours and places in 32x32 captioned scenes (lesson 12)",
        config=_SCENES | {"slots": list(SLOTS), "colours": list(COLOURS)},
    ),
    Entry(
        "autoencoder_scenes",
        SceneAutoencoder,
        train_autoencoder_scenes,
        {"scenes": 20000, "epochs": 4, "lr": 2e-3, "batch_size": 64, "kl_weight": 1e-3},
        notes={"objective": "MSE on a posterior sample + kl_weight * KL per pixel"} | _ONE_CYCLE,
        architecture="diffusers AutoencoderKL, block_out_channels (16, 32, 64): 32x32x3 -> 8x8x4",
        description="AutoencoderKL of the captioned scenes, f = 4 (lesson 12)",
        needs=("scene_judge",),
        config=_SCENES | {"latent": [4, 8, 8]},
    ),
    Entry(
        "text_to_image_scenes",
        TextConditionedDenoiser,
        train_text_to_image_scenes,
        {
            "scenes": 20000,
            "epochs": 32,
            "lr": 1e-3,
            "batch_size": 128,
            "p_uncond": 0.1,
            "ema_decay": 0.999,
        },
        notes={
            "objective": "v-prediction (DDPMScheduler.add_noise, target get_velocity), captions "
            "dropped to the empty prompt with probability p_uncond; EMA weights shipped",
            "optimizer": "AdamW on both parts, constant lr",
        },
        architecture="transformers CLIPTextModel (2 layers, width 64) + diffusers "
        "UNet2DConditionModel (block_out_channels (32, 64), cross-attention on both levels) "
        "on the scaled latents of autoencoder_scenes",
        description="Text encoder + cross-attention U-Net of the captioned scenes (lesson 12)",
        needs=("autoencoder_scenes", "scene_judge"),
        config={
            "in_channels": 4,
            "image_size": 8,
            "noise_schedule": {"num_timesteps": 1000, "beta_schedule": "cosine"},
            "diffusers_scheduler": NOISE_SCHEDULE,
            "autoencoder": "autoencoder_scenes",
            "words": list(CAPTION_WORDS),
            "max_tokens": MAX_TOKENS,
            "guidance_scale": DEFAULT_GUIDANCE,
            "num_inference_steps": DEFAULT_STEPS,
        },
    ),
)
