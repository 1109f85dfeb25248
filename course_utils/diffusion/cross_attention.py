"""Lesson 12: looking inside cross-attention, which latent pixels read which prompt token.

In each cross-attention layer of a ``UNet2DConditionModel`` the latent pixels are the queries and
the prompt's token vectors the keys and values: pixel i takes ``softmax(q_i · k_j / sqrt(d))``
of token j's value. Those weights -- one row per pixel, summing to 1 over the tokens -- are the
attention map, and the map of the token "red" shows where the model paints red.

diffusers computes attention in fused kernels that never hand out the weights. While
:func:`recording_cross_attention` is active, every cross-attention layer runs diffusers' plain
``AttnProcessor`` instead (the same maths, step by step) and keeps a copy of its weights;
:func:`token_maps` averages them into one picture per token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor
from torch import nn

__all__ = ["recording_cross_attention", "token_maps"]


@contextlib.contextmanager
def recording_cross_attention(unet: nn.Module) -> Iterator[list[torch.Tensor]]:
    """While the block runs, append the weights of every cross-attention call of ``unet`` to the
    yielded list, each ``[B, heads, H*W, tokens]`` (on the CPU); afterwards the layers get their
    previous processors back.
    """
    records: list[torch.Tensor] = []
    layers = [m for m in unet.modules() if isinstance(m, Attention) and m.is_cross_attention]
    if not layers:
        raise ValueError("this network has no cross-attention layers to record")
    previous = [layer.processor for layer in layers]

    def recorder(layer: Attention):
        original = layer.get_attention_scores

        def scores(query, key, attention_mask=None):
            probs = original(query, key, attention_mask)  # [B * heads, H*W, tokens]
            records.append(probs.detach().unflatten(0, (-1, layer.heads)).cpu())
            return probs

        return scores

    for layer in layers:
        layer.set_processor(AttnProcessor())
        layer.get_attention_scores = recorder(layer)  # an instance attribute hides the method
    try:
        yield records
    finally:
        for layer, processor in zip(layers, previous):
            del layer.get_attention_scores
            layer.set_processor(processor)


def token_maps(
    records: list[torch.Tensor], *, size: int = 8, last: int | None = None
) -> torch.Tensor:
    """One map per image and token, ``[B, tokens, size, size]``: the recorded attention weights
    averaged over heads, layers (each resized to ``size`` x ``size``) and calls (denoising steps).

    ``last=n`` keeps the last ``n`` images of each call: under classifier-free guidance the U-Net
    sees the unconditional half first, and only the prompt's half says where its words go.
    """
    if not records:
        raise ValueError(
            "no attention was recorded: run the sampler inside recording_cross_attention"
        )
    maps = []
    for probs in records:
        if last is not None:
            probs = probs[-last:]
        side = int(probs.shape[2] ** 0.5)
        grid = probs.mean(1).transpose(1, 2).unflatten(2, (side, side))  # [B, tokens, h, w]
        maps.append(F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False))
    return torch.stack(maps).mean(0)
