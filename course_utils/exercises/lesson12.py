"""Lesson 12: checkers for the exercises of ``12_text_to_image``.

Each checker calls the learner's answer on small inputs and compares it with a reference from the
libraries themselves: the course's BPE rules and transformers' ``CLIPTokenizer``, a tiny
diffusers ``UNet2DConditionModel`` and ``Attention`` layer, and the schedule of diffusers'
image-to-image pipeline. A wrong answer fails with a hint about the most likely mistake.
"""

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from ..diffusion.tokenizer import build_tokenizer, learn_merges
from . import close, exercise

# --------------------------------------------------------------------------------------------
# 12.1 Byte-pair encoding of one word
# --------------------------------------------------------------------------------------------

_WORDS = ("a", "red", "green", "blue", "left", "right", "below", "bottom", "3")


def reference_bpe(word: str, rules: list[tuple[str, str]]) -> list[str]:
    """Spell ``word`` in letters (the last marked ``</w>``), then apply each rule, in order, to
    every adjacent occurrence of its pair."""
    pieces = [*word[:-1], word[-1] + "</w>"]
    for pair in rules:
        joined: list[str] = []
        for piece in pieces:
            if joined and (joined[-1], piece) == pair:
                joined[-1] += piece
            else:
                joined.append(piece)
        pieces = joined
    return pieces


@exercise("12.1 byte-pair encoding of a word")
def check_bpe(my_bpe) -> None:
    """``my_bpe(word, rules) -> list of pieces`` with CLIP's end-of-word marker."""
    rules = learn_merges(_WORDS)
    tokenizer = build_tokenizer(_WORDS)
    for word in (*_WORDS, "bell", "tree", "gold", "eft"):
        out = my_bpe(word, list(rules))
        assert isinstance(out, list) and all(isinstance(p, str) for p in out), (
            f"return a list of str pieces, got {type(out).__name__}"
        )
        expected = reference_bpe(word, rules)
        if out == expected:
            continue
        if "".join(out) != "".join(expected):
            raise AssertionError(
                f"{word!r}: your pieces {out} do not spell the word with its end marker "
                f"({''.join(expected)!r}): mark the last letter with '</w>', e.g. "
                "['r', 'e', 'd</w>']"
            )
        if word in _WORDS:
            raise AssertionError(
                f"{word!r} is one of the words the rules were learned from, so it must come out "
                f"whole ({expected}), got {out}: apply every rule in order, each to all "
                "adjacent occurrences of its pair"
            )
        raise AssertionError(
            f"{word!r}: expected {expected}, got {out}; rules apply in their order (the first "
            "learned first), each joining every adjacent occurrence of its pair"
        )
    whole = tokenizer.tokenize("green")
    assert my_bpe("green", list(rules)) == whole, f"CLIPTokenizer gives {whole} for 'green'"


# --------------------------------------------------------------------------------------------
# 12.2 Guidance with a negative prompt
# --------------------------------------------------------------------------------------------


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    """A 2-level ``UNet2DConditionModel`` on 4x4x4 latents with 8-dimensional tokens."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=4,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=8,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()


@exercise("12.2 classifier-free guidance with a negative prompt")
def check_guided_noise(my_guided_noise) -> None:
    """``my_guided_noise(unet, latents, t, prompt_tokens, negative_tokens, scale) -> ε``."""
    unet = tiny_unet()
    g = torch.Generator().manual_seed(12)
    latents = torch.randn(3, 4, 4, 4, generator=g)
    prompt, negative = torch.randn(3, 5, 8, generator=g), torch.randn(3, 5, 8, generator=g)
    t = torch.tensor(500)
    with torch.no_grad():
        e_prompt = unet(latents, t, encoder_hidden_states=prompt).sample
        e_negative = unet(latents, t, encoder_hidden_states=negative).sample
        for scale in (1.0, 4.0, 7.5):
            out = my_guided_noise(unet, latents.clone(), t, prompt, negative, scale)
            assert isinstance(out, torch.Tensor) and out.shape == latents.shape, (
                f"return the guided noise, a tensor of shape {list(latents.shape)}"
            )
            expected = e_negative + scale * (e_prompt - e_negative)
            if close(out, expected, 1e-4, 1e-5):
                continue
            if close(out, e_prompt + scale * (e_negative - e_prompt), 1e-4, 1e-5):
                raise AssertionError(
                    "the two predictions are swapped: start from the negative prompt's noise "
                    "and move toward the prompt's, ε_neg + s (ε_prompt - ε_neg)"
                )
            raise AssertionError(
                f"scale {scale}: largest gap {(out - expected).abs().max():.3g} from "
                "ε_neg + s (ε_prompt - ε_neg), with both predictions from the same latents and t"
            )


# --------------------------------------------------------------------------------------------
# 12.3 The cross-attention weights
# --------------------------------------------------------------------------------------------


@exercise("12.3 cross-attention weights per head")
def check_attention_weights(my_weights) -> None:
    """``my_weights(query [B, N, C], key [B, T, C], heads) -> [B, heads, N, T]``."""
    torch.manual_seed(0)
    layer = Attention(query_dim=16, cross_attention_dim=8, heads=2, dim_head=8).eval()
    g = torch.Generator().manual_seed(3)
    pixels, tokens = torch.randn(2, 9, 16, generator=g), torch.randn(2, 5, 8, generator=g)
    with torch.no_grad():
        query, key = layer.to_q(pixels), layer.to_k(tokens)  # [2, 9, 16], [2, 5, 16]
        expected = layer.get_attention_scores(
            layer.head_to_batch_dim(query), layer.head_to_batch_dim(key)
        ).unflatten(0, (2, 2))
        out = my_weights(query, key, 2)
    assert isinstance(out, torch.Tensor) and out.shape == expected.shape, (
        f"return weights of shape [batch, heads, pixels, tokens] = {list(expected.shape)}, got "
        f"{getattr(out, 'shape', type(out).__name__)}"
    )
    if close(out, expected, 1e-4, 1e-6):
        return
    if close(out.sum(-2), torch.ones_like(out.sum(-2)), 1e-4, 1e-5):
        raise AssertionError(
            "your weights sum to 1 over the pixels: each pixel (query) shares its attention "
            "among the tokens, so the softmax runs over the last axis"
        )
    split = query.unflatten(-1, (2, 8)).transpose(1, 2), key.unflatten(-1, (2, 8)).transpose(1, 2)
    if close(out, (split[0] @ split[1].transpose(-1, -2) / 16**0.5).softmax(-1), 1e-4, 1e-6):
        raise AssertionError("scale by the square root of one head's width (8), not of 16")
    if close(out, (split[0] @ split[1].transpose(-1, -2)).softmax(-1), 1e-4, 1e-6):
        raise AssertionError("divide q · k by sqrt(d) of one head before the softmax")
    raise AssertionError(
        "split the channels into heads (C = heads x d), then softmax(q · k / sqrt(d)) over the "
        f"tokens for each head; largest gap {(out - expected).abs().max():.3g}"
    )


# --------------------------------------------------------------------------------------------
# 12.4 Where image-to-image starts
# --------------------------------------------------------------------------------------------


def reference_img2img_start(scheduler, latents, noise, num_inference_steps, strength):
    """diffusers' image-to-image schedule: run the last ``strength`` share of the steps, starting
    from the source latents noised to the first of them."""
    scheduler.set_timesteps(num_inference_steps)
    run = min(int(num_inference_steps * strength), num_inference_steps)
    timesteps = scheduler.timesteps[num_inference_steps - run :]
    return timesteps, scheduler.add_noise(latents, noise, timesteps[:1])


@exercise("12.4 the start of image-to-image")
def check_img2img_start(my_start) -> None:
    """``my_start(scheduler, latents, noise, num_inference_steps, strength) -> (timesteps, x)``."""
    config = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}
    g = torch.Generator().manual_seed(4)
    latents, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for steps, strength in ((20, 0.5), (25, 0.3), (10, 0.75), (10, 1.0)):
        expected_t, expected_x = reference_img2img_start(
            DDIMScheduler(**config), latents, noise, steps, strength
        )
        out = my_start(DDIMScheduler(**config), latents.clone(), noise.clone(), steps, strength)
        assert isinstance(out, tuple) and len(out) == 2, "return (timesteps, noisy latents)"
        timesteps, x = out
        timesteps = torch.as_tensor(timesteps)
        what = f"{steps} steps, strength {strength}"
        skipped = steps - len(expected_t)  # int(steps * (1 - strength)) may round one off
        if timesteps.tolist() != expected_t.tolist() and abs(len(timesteps) - skipped) <= 1:
            raise AssertionError(
                f"{what}: strength is the share of the steps that run ({len(expected_t)}), "
                f"not the share that is skipped"
            )
        assert timesteps.tolist() == expected_t.tolist(), (
            f"{what}: expected the last {len(expected_t)} of scheduler.timesteps "
            f"{expected_t.tolist()}, got {timesteps.tolist()}"
        )
        assert isinstance(x, torch.Tensor) and x.shape == latents.shape, (
            f"return noisy latents of shape {list(latents.shape)}"
        )
        assert close(x, expected_x, 1e-5, 1e-6), (
            f"{what}: noise the source latents to the first timestep that runs "
            f"({int(expected_t[0])}) with scheduler.add_noise"
        )
