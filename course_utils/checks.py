"""Lessons 01-13: the one place where the course checks its inputs and words the fix.

A network does not know what its input means. Given uint8 pixels, [0, 255] floats, HWC images,
ImageNet-normalised images, 28x28 digits where it learned 16x16 ones, labels counted from 1 where
it counts from 0, or a flow time where it takes integer steps, it still returns numbers -- wrong
ones, without a word -- or fails three layers deeper with a message about matrix sizes. Every
public function and model of the package calls one of the guards below first, so each mistake
fails at the door with one sentence: what was expected, what came in, and how to fix it.

Each guard returns its input unchanged, so it can be used inline (``x = check_images(x, ...)``);
``what`` names the function or model at the start of the message. The value checks cost one
min/max pass over the tensor per call, nothing next to a convolution.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "TOLERANCE",
    "check_images",
    "check_labels",
    "check_timesteps",
    "check_flow_time",
    "check_finite",
    "check_lengths",
    "check_matrix",
    "check_num_classes",
    "check_signed_images",
    "check_sample_range",
    "check_trained_input",
    "first_batch",
]

#: How far outside its range a value may stray (float rounding, a slightly overshooting sample).
TOLERANCE = 1e-3

_LAYOUTS = {"BCHW": (4,), "CHW": (3,), "*CHW": (3, 4)}
_SHAPES = {"BCHW": "[B, C, H, W]", "CHW": "[C, H, W]", "*CHW": "[C, H, W] or [B, C, H, W]"}


def check_images(
    x,
    *,
    what: str,
    layout: str = "BCHW",
    channels: int | Sequence[int] | None = None,
    size: int | tuple[int, int] | None = None,
    min_size: int = 1,
    multiple_of: int = 1,
    value_range: tuple[float, float] | None = None,
    dtype: str | None = "float",
) -> Tensor:
    """Raise a clear error unless ``x`` is an image tensor as described; return ``x`` unchanged.

    x: ``[B, C, H, W]`` (``layout="BCHW"``), ``[C, H, W]`` (``"CHW"``) or either (``"*CHW"``).
    channels: the allowed channel count(s); size: the exact ``H = W`` (or ``(H, W)``);
    min_size / multiple_of: the smallest H, W, and what they must divide by (a U-Net halves them);
    value_range: ``(low, high)`` for float images, within :data:`TOLERANCE`;
    dtype: ``"float"``, ``"uint8"`` or ``None`` (either). Each check only when given; a float
    tensor with NaN or inf is always refused.
    """
    _require_tensor(x, what, f"an image tensor {_SHAPES[layout]}", fix="torch.stack(x)")
    shape = tuple(x.shape)
    if x.ndim not in _LAYOUTS[layout]:
        hint = (
            ": add a batch dimension with x.unsqueeze(0)"
            if layout == "BCHW" and x.ndim == 3
            else ""
        )
        raise ValueError(f"{what} takes images {_SHAPES[layout]}, got shape {shape}{hint}")
    if x.numel() == 0:
        raise ValueError(f"{what} got an empty tensor (shape {shape}): nothing to compute on")
    _check_dtype(x, what, dtype)
    _check_channels(x, what, channels)
    _check_size(x, what, size, min_size, multiple_of)
    if x.is_floating_point() and x.device.type != "meta":  # meta tensors (lesson 02) hold no values
        _check_values(x, what, value_range)
    return x


def check_labels(
    y, *, what: str, num_classes: int | None = None, first: int = 0, length: int | None = None
) -> Tensor:
    """Raise a clear error unless ``y`` is an integer tensor ``[N]`` with values in
    ``[first, first + num_classes)`` (``first=1`` where 0 means background) and, if given,
    ``length`` entries; return ``y`` unchanged. An empty ``y`` (an image with no objects) passes."""
    _require_tensor(y, what, "labels as an integer tensor [N]", fix="torch.tensor(y)")
    if y.ndim != 1:
        onehot = y.ndim == 2 and num_classes is not None and y.shape[1] == num_classes
        hint = (
            ": one-hot? use y.argmax(1)" if onehot else ": use y.flatten()" if y.ndim == 0 else ""
        )
        raise ValueError(f"{what} takes labels [N], got shape {tuple(y.shape)}{hint}")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{what} takes integer class labels, got {y.dtype}: use y.long()")
    if length is not None and len(y) != length:
        raise ValueError(
            f"{what} got {len(y)} labels, expected {length}: one per image (or object)"
        )
    if len(y) == 0:
        return y
    low, high = y.min().item(), y.max().item()
    last = None if num_classes is None else first + num_classes - 1
    if low >= first and (last is None or high <= last):
        return y
    wanted = f"[{first}, {last}]" if last is not None else f"{first} or more"
    if first == 1 and low == 0 and (last is None or high < last):
        fix = "labels here are 1-based (label = class + 1, 0 = background): use y + 1"
    elif first == 0 and low >= 1 and last is not None and high == last + 1:
        fix = "labels here are 0-based (class index, no background): use y - 1"
    else:
        fix = f"is num_classes={num_classes} right?" if last is not None and low >= first else ""
        fix = fix or "every label must name one of the classes"
    raise ValueError(f"{what} takes labels in {wanted}, got values in [{low}, {high}]; {fix}")


def check_timesteps(t, *, what: str, num_timesteps: int, length: int | None = None) -> Tensor:
    """Raise a clear error unless ``t`` holds diffusion steps in ``[0, num_timesteps)``, one per
    image when ``length`` is given. Integers, or floats from a diffusers scheduler that
    interpolates between steps; float times all in [0, 1] are a flow-matching model's input."""
    _require_tensor(t, what, "steps t as a tensor [B]", fix="torch.tensor(t)", name="t", n=length)
    _check_per_sample(t, what, length)
    if t.numel() == 0:
        return t
    low, high = t.min().item(), t.max().item()
    if t.is_floating_point() and high <= 1 and not torch.equal(t, t.round()):
        raise ValueError(
            f"{what} takes integer steps t in [0, {num_timesteps}), got float times in "
            f"[{low:.3g}, {high:.3g}]: a flow time? this model takes integer steps; use "
            f"(t * {num_timesteps - 1}).round().long() or a flow-matching model"
        )
    if low < 0 or high >= num_timesteps:
        hint = ": steps here are 0-based, use t - 1" if high == num_timesteps and low >= 1 else ""
        raise ValueError(
            f"{what} was trained on steps t in [0, {num_timesteps}) (0-based), "
            f"got [{low:g}, {high:g}]{hint}"
        )
    return t


def check_flow_time(t, *, what: str, length: int | None = None) -> Tensor:
    """Raise a clear error unless ``t`` is a float time in [0, 1], one per image when ``length``
    is given (the input of a flow-matching model)."""
    _require_tensor(
        t, what, "a time t as a float tensor [B]", fix="torch.tensor(t)", name="t", n=length
    )
    _check_per_sample(t, what, length)
    if not t.is_floating_point():
        raise TypeError(
            f"{what} takes a float time t in [0, 1], got {t.dtype} steps: integer diffusion "
            "steps? use t / num_timesteps (or a diffusion model)"
        )
    if t.numel() and (t.min() < -TOLERANCE or t.max() > 1 + TOLERANCE):
        raise ValueError(
            f"{what} takes a time t in [0, 1], got values in "
            f"[{t.min().item():.3g}, {t.max().item():.3g}]: integer steps? use t / num_timesteps"
        )
    return t


def check_finite(x, *, what: str) -> Tensor:
    """Raise a clear error if the tensor ``x`` holds NaN or inf; return it unchanged."""
    _require_tensor(x, what, "a tensor", fix="torch.as_tensor(x)")
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{what} got NaN or infinite values ({bad} of {x.numel()}): they would spread to "
            "every result; look at the step that produced them (a learning rate too high?)"
        )
    return x


def check_lengths(what: str, **named: Sized) -> None:
    """Raise a clear error unless every named input has the same, non-zero, length, e.g.
    ``check_lengths("fit", images=x, labels=y)``."""
    lengths = {name: len(value) for name, value in named.items()}
    if len(set(lengths.values())) > 1:
        found = ", ".join(f"{n} {k}" for k, n in lengths.items())
        raise ValueError(
            f"{what} takes one entry of each per item, got mismatched lengths: {found}"
        )
    empty = [name for name, n in lengths.items() if n == 0]
    if empty:
        raise ValueError(f"{what} got empty inputs ({', '.join(empty)} hold 0 items)")


def check_matrix(x, *, what: str, name: str = "features"):
    """Raise a clear error unless ``x`` is a finite 2-D matrix ``[N, D]`` with N >= 1: a tensor, or
    a NumPy array for the tools that hand it to scikit-learn; return ``x`` unchanged."""
    t = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    _require_tensor(t, what, f"{name} as a matrix [N, D]", fix="torch.stack(x)")
    if t.ndim != 2 or len(t) == 0:
        hint = ": one vector? use x.unsqueeze(0)" if t.ndim == 1 else ""
        raise ValueError(
            f"{what} takes {name} as a 2-D matrix [N, D] with N >= 1, got shape "
            f"{tuple(t.shape)}{hint}"
        )
    check_finite(t, what=f"{what} ({name})")
    return x


def check_num_classes(num_classes, *, what: str) -> int:
    """Raise a clear error unless ``num_classes`` is a whole number >= 1 (a head with 0 classes
    would build, return empty predictions and train nothing); return it unchanged."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"{what} needs num_classes >= 1 (the classes it predicts; a detector's count leaves "
            f"out the background), got {num_classes!r}"
        )
    return num_classes


def check_signed_images(x, *, what: str) -> Tensor:
    """Raise a clear error unless ``x`` is a batch of diffusion images ``x0`` in [-1, 1]. A batch
    of several images with no negative value at all is data in [0, 1] that was not mapped."""
    check_images(x, what=what, value_range=(-1.0, 1.0))
    if len(x) > 1 and x.min() >= 0:
        raise ValueError(
            f"{what} takes images in [-1, 1], got a batch with no negative value: it looks like "
            "[0, 1]; use x * 2 - 1"
        )
    return x


def check_sample_range(x, *, what: str, sample_range: float | None) -> Tensor:
    """Raise a clear error unless ``x`` is data a diffusion noise schedule takes: a finite tensor
    in [-sample_range, sample_range] (any values when ``sample_range`` is None, e.g. latents);
    with ``sample_range`` 1, images ``[B, C, H, W]`` also as :func:`check_signed_images` says (a
    batch with no negative value was not mapped from [0, 1]). Return it unchanged."""
    check_finite(x, what=what)  # a tensor (NumPy arrays and lists get the fix), no NaN
    images = sample_range == 1 and x.dim() == 4 and x.numel() > 0
    if images and not x.is_floating_point():
        check_images(x, what=what)  # uint8 pixels: the conversion named
    if sample_range is None or x.numel() == 0 or x.abs().max() <= sample_range + TOLERANCE:
        return check_signed_images(x, what=what) if images else x
    raise ValueError(
        f"{what}: x0 must lie in [-{sample_range:g}, {sample_range:g}], got values in "
        f"[{x.min():.3g}, {x.max():.3g}]; scale images from [0, 1] with x * 2 - 1 (unbounded "
        "data such as latents need NoiseSchedule(sample_range=None))"
    )


def check_trained_input(model, x, *, what: str) -> Tensor:
    """Raise a clear error unless ``x`` is an image batch of the kind ``model`` was trained on:
    the channel count, size and value range its ``model.config`` records (``zoo.load`` gives every
    shipped model that record). A model without a record gets the checks every image batch gets.

    A classifier with global average pooling takes any size, so a judge trained on 16x16 digits
    would score 28x28 ones without a word; this check is what makes it say so.
    """
    config = getattr(model, "config", None) or {}
    return check_images(
        x,
        what=what,
        channels=config.get("in_channels"),
        size=config.get("image_size"),
        value_range=config.get("input_range"),
    )


def first_batch(loader) -> object:
    """The first batch of ``loader`` (a DataLoader or a list of batches), to check the inputs of
    a whole loop once. The random state is restored afterwards: drawing this batch does not
    change which batches the loop itself will draw."""
    if isinstance(loader, Iterator):
        raise TypeError(
            "got a one-shot iterator: checking its first batch would consume it; pass the "
            "DataLoader (or a list of batches) itself"
        )
    sampler = getattr(loader, "sampler", None)
    generators = {
        id(g): g
        for g in (getattr(loader, "generator", None), getattr(sampler, "generator", None))
        if g is not None
    }
    states = {key: g.get_state() for key, g in generators.items()}
    with torch.random.fork_rng(devices=[]):  # a shuffling sampler draws its seed here
        batch = next(iter(loader), None)
    for key, g in generators.items():
        g.set_state(states[key])
    if batch is None:
        raise ValueError(
            "got an empty loader (no batch): check the data set's length (and drop_last)"
        )
    return batch


# -- the pieces the guards share ------------------------------------------------------------


def _require_tensor(x, what: str, wanted: str, fix: str, name: str = "", n: int | None = None):
    """Refuse anything that is not a tensor, naming the conversion."""
    if isinstance(x, Tensor):
        return
    if name and n is not None and isinstance(x, int | float):  # one number for the whole batch
        raise ValueError(
            f"{what}: {name} must hold one value per image, shape [B] = [{n}], got "
            f"{type(x).__name__}: for the same {name} everywhere use torch.full(({n},), {name})"
        )
    if isinstance(x, np.ndarray):
        raise TypeError(
            f"{what} takes {wanted}, got a NumPy array {x.shape}: use torch.from_numpy(x) "
            "(or image.to_tensor(x) for an HWC uint8 image)"
        )
    if isinstance(x, list | tuple):
        raise TypeError(f"{what} takes {wanted}, got a Python {type(x).__name__}: use {fix}")
    raise TypeError(f"{what} takes {wanted}, got {type(x).__name__}")


def _check_per_sample(t: Tensor, what: str, length: int | None) -> None:
    if length is not None and tuple(t.shape) != (length,):
        raise ValueError(
            f"{what}: t must hold one value per image, shape [B] = [{length}], got "
            f"{tuple(t.shape)}: for the same t everywhere use torch.full(({length},), t)"
        )


def _check_dtype(x: Tensor, what: str, dtype: str | None) -> None:
    if dtype == "float" and not x.is_floating_point():
        fix = "x.float() / 255" if x.dtype == torch.uint8 else "x.float()"
        raise TypeError(f"{what} takes float images, got {x.dtype}: for 8-bit pixels use {fix}")
    if dtype == "uint8" and x.dtype != torch.uint8:
        raise TypeError(f"{what} takes uint8 images, got {x.dtype}: use (x * 255).round().byte()")


def _check_channels(x: Tensor, what: str, channels: int | Sequence[int] | None) -> None:
    allowed = (channels,) if isinstance(channels, int) else channels
    if allowed is None or x.shape[-3] in allowed:
        return
    text = " or ".join(", ".join(map(str, allowed)).rsplit(", ", 1))  # "1, 3 or 4"
    hwc = x.shape[-1] in allowed  # e.g. [B, 32, 32, 3]: channels last
    permute = "x.permute(0, 3, 1, 2)" if x.ndim == 4 else "x.permute(2, 0, 1)"
    hint = f": it looks like HWC (channels last); use {permute}" if hwc else ""
    raise ValueError(
        f"{what} takes {text}-channel images, got {x.shape[-3]} channels "
        f"(shape {tuple(x.shape)}){hint}"
    )


def _check_size(x: Tensor, what: str, size, min_size: int, multiple_of: int) -> None:
    h, w = x.shape[-2:]
    if size is not None:
        want = (size, size) if isinstance(size, int) else tuple(size)
        if (h, w) != want:
            raise ValueError(
                f"{what} takes {want[0]}x{want[1]} images, got {h}x{w}: resize them, "
                f"e.g. F.interpolate(x, size={want})"
            )
    if min(h, w) < min_size:
        raise ValueError(
            f"{what} takes images of at least {min_size}x{min_size} pixels, got {h}x{w}: its "
            "pooling layers would shrink anything smaller to nothing"
        )
    if h % multiple_of or w % multiple_of:
        up = [multiple_of * math.ceil(s / multiple_of) for s in (h, w)]
        raise ValueError(
            f"{what} takes heights and widths divisible by {multiple_of} (it halves them), got "
            f"{h}x{w}: pad or resize to {up[0]}x{up[1]}"
        )


def _check_values(x: Tensor, what: str, value_range: tuple[float, float] | None) -> None:
    low, high = (v.item() for v in torch.aminmax(x.detach()))  # one pass: NaN and inf show too
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{what} got NaN or infinite values: look at the step that made them")
    if value_range is None:
        return
    lo, hi = value_range
    if lo - TOLERANCE <= low and high <= hi + TOLERANCE:
        return
    raise ValueError(
        f"{what} takes images in [{lo:g}, {hi:g}], got values in [{low:.3g}, {high:.3g}]; "
        + _range_fix(low, high, lo, hi)
    )


def _range_fix(low: float, high: float, lo: float, hi: float) -> str:
    """The likely mix-up behind values outside ``[lo, hi]``, and its fix: the one place that
    recognises [0, 255] pixels, normalised images and [0, 1]-vs-[-1, 1]."""
    if high > 2 and low >= -TOLERANCE:
        return f"they look like 8-bit pixels in [0, 255]: use {_from_255(lo, hi)}"
    if (lo, hi) == (0, 1) and low >= -1 - TOLERANCE and high <= 1 + TOLERANCE:
        return (
            "negative values: samples in [-1, 1] (use (x + 1) / 2) or normalised images "
            "(use image.denormalize(x, mean, std))?"
        )
    if low < lo and high > hi or low < -1 - TOLERANCE:
        return "they look normalised (x - mean) / std: undo it with image.denormalize(x, mean, std)"
    return f"rescale them to [{lo:g}, {hi:g}] (or .clamp({lo:g}, {hi:g}) a small overshoot)"


def _from_255(lo: float, hi: float) -> str:
    if (lo, hi) == (0, 1):
        return "x / 255"
    if (lo, hi) == (-1, 1):
        return "x / 127.5 - 1"
    return f"x / 255 * {hi - lo:g} + {lo:g}"
