"""Sliders that redraw a lesson's figure (ipywidgets): where dragging a value beats editing it and
re-running the cell.

Every widget comes in two parts:

- a ``draw_*`` function takes the slider values and returns a :class:`Drawn`: the matplotlib
  figure and the numbers it shows. A notebook calls it once with the default values, so that the
  book and the slides, where no Python runs behind the sliders, still show the picture;
- a ``*_widget`` builder wires sliders to it with ``ipywidgets.interactive``: each change of a
  slider calls ``draw_*`` again and shows the new figure. ``widget.result`` is the last
  :class:`Drawn`, which is how the tests move a slider and read what changed.

The widgets, in course order:

- :func:`hsv_threshold_widget`: a hue interval and the minimum saturation and value of a colour
  mask, on a photo (lesson 01);
- :func:`nms_widget`: the score threshold and the IoU threshold of NMS, on a detector's raw
  boxes (lesson 03);
- :func:`forward_process_widget`: a few digits at step t of the forward process (lesson 07);
- :func:`ddim_widget`: DDIM's number of steps and η, from a fixed starting noise (lesson 07);
- :func:`guidance_widget`: the classifier-free guidance scale, from a fixed starting noise
  (lesson 08).

The figures are built without pyplot (``matplotlib.figure.Figure``): a slider that moves a
hundred times leaves no hundred open figures behind, and no figure is shown twice.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import ipywidgets
import torch
from IPython.display import display
from matplotlib.figure import Figure
from torch import nn

from .detection import batched_nms
from .diffusion import Condition, NoiseSchedule, q_sample, sample_ddim, to01
from .image import hsv_mask
from .plot import draw_boxes, show_grid, to_display

__all__ = [
    "Drawn",
    "draw_hsv_threshold",
    "hsv_threshold_widget",
    "draw_nms",
    "nms_widget",
    "draw_forward_process",
    "forward_process_widget",
    "draw_ddim_samples",
    "ddim_widget",
    "draw_guided_samples",
    "guidance_widget",
]


@dataclass
class Drawn:
    """What a ``draw_*`` function drew: ``figure``, and in ``data`` the numbers and tensors it
    shows (a mask, the indices of the kept boxes, the samples ...). A notebook displays it as
    the figure (``_repr_png_``)."""

    figure: Figure = field(repr=False)
    data: dict = field(default_factory=dict)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()

    def __repr__(self) -> str:  # the text next to the picture: what data holds, not its values
        return f"Drawn(data keys: {', '.join(self.data)})"


def _check_range(name: str, value, low: float, high: float, integer: bool = False) -> None:
    """The sliders are bounded, but the draw functions are public: refuse what no slider gives."""
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what} in [{low}, {high}], got {value!r}")


def _interactive(draw: Callable[..., Drawn], sliders: Mapping[str, ipywidgets.Widget]):
    """``ipywidgets.interactive`` that calls ``draw(**slider values)``, shows the figure, and keeps
    the :class:`Drawn` in ``.result``."""

    def show(**values) -> Drawn:
        drawn = draw(**values)
        display(drawn)
        return drawn

    return ipywidgets.interactive(show, **sliders)


def _slider(kind, value, low, high, step, description: str, continuous: bool = True):
    # continuous=False redraws when the slider is released: for the figures that sample a model
    return kind(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description,
        continuous_update=continuous,
        style={"description_width": "initial"},
    )


# --- lesson 01: an HSV colour mask -------------------------------------------------------------


def draw_hsv_threshold(
    img: torch.Tensor, hue_from: float, hue_to: float, sat_min: float, val_min: float
) -> Drawn:
    """The mask of :func:`~course_utils.image.hsv_mask` and the photo seen through it.

    img: ``[3, H, W]`` RGB float in [0, 1]. hue_from, hue_to: degrees in [0, 360]; with
    ``hue_from > hue_to`` the interval wraps through 0° (red). sat_min, val_min: in [0, 1].
    data: ``mask`` ``[H, W]`` bool, ``area`` (the fraction of the pixels in the mask).
    """
    for name, value in (("sat_min", sat_min), ("val_min", val_min)):  # hsv_mask checks the hues
        _check_range(name, value, 0, 1)
    if not isinstance(img, torch.Tensor) or img.ndim != 3:
        raise ValueError(
            f"img must be one [3, H, W] RGB tensor, got {getattr(img, 'shape', type(img))}: "
            "convert a [H, W, 3] photo with image.to_tensor"
        )
    mask = hsv_mask(img, (hue_from, hue_to), sat_min=sat_min, val_min=val_min).cpu()
    area = mask.float().mean().item()

    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax_mask, ax_photo = fig.subplots(1, 2)
    ax_mask.imshow(mask.numpy(), cmap="gray", vmin=0, vmax=1)
    ax_mask.set_title(f"mask: {area:.1%} of the pixels")
    ax_photo.imshow(to_display(img * mask))  # black outside the mask
    ax_photo.set_title("the photo through the mask")
    for ax in (ax_mask, ax_photo):
        ax.set_axis_off()
    wraps = " (wraps through 0°)" if hue_from > hue_to else ""
    fig.suptitle(f"hue {hue_from:g}°..{hue_to:g}°{wraps}, S ≥ {sat_min:.2f}, V ≥ {val_min:.2f}")
    return Drawn(fig, {"mask": mask, "area": area})


def hsv_threshold_widget(
    img: torch.Tensor,
    hue_range: tuple[float, float] = (12, 35),
    sat_min: float = 0.5,
    val_min: float = 0.25,
) -> ipywidgets.interactive:
    """Sliders for :func:`draw_hsv_threshold` on ``img``, starting at the given values."""
    sliders = {
        "hue_from": _slider(ipywidgets.IntSlider, hue_range[0], 0, 360, 1, "hue from (°)"),
        "hue_to": _slider(ipywidgets.IntSlider, hue_range[1], 0, 360, 1, "hue to (°)"),
        "sat_min": _slider(ipywidgets.FloatSlider, sat_min, 0, 1, 0.05, "min saturation"),
        "val_min": _slider(ipywidgets.FloatSlider, val_min, 0, 1, 0.05, "min value"),
    }
    return _interactive(functools.partial(draw_hsv_threshold, img), sliders)


# --- lesson 03: non-maximum suppression ---------------------------------------------------------


def draw_nms(
    image: torch.Tensor,
    detections: Mapping[str, torch.Tensor],
    score_threshold: float,
    iou_threshold: float,
    class_names: Sequence[str] | None = None,
) -> Drawn:
    """The boxes scoring above ``score_threshold``, then what per-class NMS keeps of them.

    image: ``[3, H, W]``. detections: ``boxes [N, 4]`` xyxy, ``scores [N]``, ``labels [N]``, as
    a detector returns them. Both thresholds in [0, 1]; NMS is
    :func:`~course_utils.detection.batched_nms` (a box only suppresses boxes of its own label).
    data: ``candidates`` (boxes above the score threshold), ``kept`` (after NMS), ``keep`` (their
    indices into ``detections``, best first).
    """
    _check_range("score_threshold", score_threshold, 0, 1)
    _check_range("iou_threshold", iou_threshold, 0, 1)
    missing = {"boxes", "scores", "labels"} - set(detections)
    if missing:
        raise ValueError(f"detections need boxes, scores and labels; missing {sorted(missing)}")
    boxes, scores, labels = (detections[k].cpu() for k in ("boxes", "scores", "labels"))
    above = (scores > score_threshold).nonzero().flatten()
    keep = above[batched_nms(boxes[above], scores[above], labels[above], iou_threshold)]

    fig = Figure(figsize=(10, 5.2), layout="constrained")
    panels = {
        f"score > {score_threshold:.2f}: {len(above)} boxes": above,
        f"after NMS (IoU > {iou_threshold:.2f} suppresses): {len(keep)} boxes": keep,
    }
    for ax, (title, chosen) in zip(fig.subplots(1, 2), panels.items()):
        # the best box drawn last, so that its caption stays on top
        chosen = chosen[scores[chosen].argsort()]
        draw_boxes(
            image, boxes[chosen], labels[chosen], scores[chosen], class_names, ax, title=title
        )
    fig.suptitle("Two thresholds decide which detections remain")
    return Drawn(fig, {"candidates": len(above), "kept": len(keep), "keep": keep})


def nms_widget(
    image: torch.Tensor,
    detections: Mapping[str, torch.Tensor],
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.5,
) -> ipywidgets.interactive:
    """Sliders for :func:`draw_nms` on one image's raw detections."""
    sliders = {
        "score_threshold": _slider(
            ipywidgets.FloatSlider, score_threshold, 0, 1, 0.05, "score threshold"
        ),
        "iou_threshold": _slider(
            ipywidgets.FloatSlider, iou_threshold, 0, 1, 0.05, "NMS IoU threshold"
        ),
    }
    draw = functools.partial(draw_nms, image, detections, class_names=class_names)
    return _interactive(draw, sliders)


# --- lesson 07: the forward process -------------------------------------------------------------


def draw_forward_process(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: int,
    col_labels: Sequence | None = None,
) -> Drawn:
    """A few clean images at step ``t`` of the forward process, all with their own fixed noise.

    x0: ``[B, C, H, W]`` in [-1, 1]; noise: ε, shaped like ``x0``; t: an integer in [0, T).
    data: ``x_t`` ``[B, C, H, W]`` (:func:`~course_utils.diffusion.q_sample`), ``signal``
    sqrt(ᾱ_t) (the factor of x0 in x_t) and ``noise_scale`` sqrt(1 - ᾱ_t) (the factor of ε).
    """
    _check_range("t", t, 0, schedule.num_timesteps - 1, integer=True)
    x_t = q_sample(schedule, x0, torch.full((len(x0),), t), noise)
    alpha_bar = schedule.alphas_cumprod[t].item()
    signal, noise_scale = alpha_bar**0.5, (1 - alpha_bar) ** 0.5

    fig = Figure(figsize=(1.6 * len(x0) + 1, 2.6), layout="constrained")
    show_grid(to01(x_t), col_labels=col_labels, ncols=len(x0), ax=fig.subplots())
    fig.suptitle(
        f"x_t at t = {t}: signal fraction sqrt(ᾱ_t) = {signal:.3f}, noise factor {noise_scale:.3f}"
    )
    return Drawn(fig, {"x_t": x_t, "signal": signal, "noise_scale": noise_scale})


def forward_process_widget(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: int = 300,
    col_labels: Sequence | None = None,
) -> ipywidgets.interactive:
    """A slider over t for :func:`draw_forward_process` (the noise stays the same)."""
    slider = _slider(ipywidgets.IntSlider, t, 0, schedule.num_timesteps - 1, 1, "timestep t")
    draw = functools.partial(draw_forward_process, schedule, x0, noise, col_labels=col_labels)
    return _interactive(draw, {"t": slider})


# --- lessons 07 and 08: samples of a class-conditional model ------------------------------------


@functools.lru_cache(maxsize=64)
def _samples(
    model: nn.Module,
    schedule: NoiseSchedule,
    num_steps: int,
    eta: float,
    scale: float,
    clipped: bool,
    seed: int,
    image_shape: tuple[int, ...],
) -> torch.Tensor:
    """One DDIM sample of every class, labels 0 .. K-1: ``[K, *image_shape]`` in [-1, 1] on the
    CPU. The same seed gives the same starting noise, so only the arguments change the picture.

    Cached, so that a slider that comes back to a value redraws at once. The key holds the model
    itself (by identity): a model trained further after a call would get its old samples back.
    """
    labels = torch.arange(model.num_classes)
    return sample_ddim(
        model,
        schedule,
        (len(labels), *image_shape),
        num_steps=num_steps,
        eta=eta,
        condition=Condition(labels, guidance_scale=scale),
        generator=torch.Generator().manual_seed(seed),
        use_clipped_model_output=clipped,
        progress=False,
    ).cpu()


def draw_ddim_samples(
    model: nn.Module,
    schedule: NoiseSchedule,
    num_steps: int,
    eta: float,
    seed: int = 0,
    image_shape: tuple[int, ...] | None = None,
    class_names: Sequence[str] | None = None,
) -> Drawn:
    """One sample of every class from :func:`~course_utils.diffusion.sample_ddim` with
    ``num_steps`` steps (in [1, T]) and ``eta`` (in [0, 1]), from the starting noise of ``seed``.

    model: a class-conditional denoiser (``num_classes``, ``null_class``), e.g. the zoo's
    ``diffusion_fashion``. image_shape: ``(C, H, W)``; by default a shipped model's own (its
    ``config``), else ``(1, 16, 16)``. class_names: the column labels (default 0 .. K-1).
    data: ``samples`` ``[K, *image_shape]`` in [-1, 1], class k in row k.
    """
    _check_range("num_steps", num_steps, 1, schedule.num_timesteps, integer=True)
    _check_range("eta", eta, 0, 1)
    shape = _image_shape(model, image_shape)
    samples = _samples(model, schedule, num_steps, float(eta), 1.0, False, seed, shape)

    fig = Figure(figsize=(11, 2.0), layout="constrained")
    show_grid(
        to01(samples),
        col_labels=list(class_names) if class_names is not None else range(len(samples)),
        ncols=len(samples),
        xlabel="requested class",
        ax=fig.subplots(),
    )
    kind = "deterministic" if eta == 0 else "stochastic"
    fig.suptitle(f"DDIM, {num_steps} steps, η = {eta:.2f} ({kind}), seed {seed}")
    return Drawn(fig, {"samples": samples})


def _image_shape(model: nn.Module, image_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The ``(C, H, W)`` to sample: as given, else a shipped model's (its ``config``), else the
    16x16 digits'."""
    if image_shape is not None:
        return tuple(image_shape)
    config = getattr(model, "config", None) or {}
    if "image_size" in config:
        return (config.get("in_channels", 1), config["image_size"], config["image_size"])
    return (1, 16, 16)


def ddim_widget(
    model: nn.Module,
    schedule: NoiseSchedule,
    num_steps: int = 50,
    eta: float = 0.0,
    max_num_steps: int = 100,
    seed: int = 0,
    image_shape: tuple[int, ...] | None = None,
    class_names: Sequence[str] | None = None,
) -> ipywidgets.interactive:
    """Sliders for the number of steps and η of :func:`draw_ddim_samples` (``image_shape`` and
    ``class_names`` as there); it redraws when a slider is released (sampling takes a moment)."""
    sliders = {
        "num_steps": _slider(
            ipywidgets.IntSlider, num_steps, 1, max_num_steps, 1, "DDIM steps", False
        ),
        "eta": _slider(ipywidgets.FloatSlider, eta, 0, 1, 0.1, "η", False),
    }
    draw = functools.partial(
        draw_ddim_samples,
        model,
        schedule,
        seed=seed,
        image_shape=image_shape,
        class_names=class_names,
    )
    return _interactive(draw, sliders)


def draw_guided_samples(
    model: nn.Module,
    schedule: NoiseSchedule,
    scale: float,
    num_steps: int = 20,
    seed: int = 0,
    image_shape: tuple[int, ...] = (1, 16, 16),
) -> Drawn:
    """One digit of every class with classifier-free guidance at ``scale`` (>= 0; 1 is the plain
    conditional model), under the row at scale 1 from the same starting noise.

    Deterministic DDIM with ``num_steps`` steps and ``use_clipped_model_output=True``, as lesson 08's
    sweep. data: ``samples`` at ``scale`` and ``reference`` at scale 1, each ``[K,
    *image_shape]`` in [-1, 1].
    """
    _check_range("scale", scale, 0, float("inf"))
    _check_range("num_steps", num_steps, 1, schedule.num_timesteps, integer=True)
    shape = tuple(image_shape)
    reference = _samples(model, schedule, num_steps, 0.0, 1.0, True, seed, shape)
    samples = _samples(model, schedule, num_steps, 0.0, float(scale), True, seed, shape)

    fig = Figure(figsize=(11, 2.8), layout="constrained")
    show_grid(
        to01(torch.stack([reference, samples])),
        row_labels=["s = 1", f"s = {scale:g}"],
        col_labels=range(len(samples)),
        xlabel="requested digit",
        ax=fig.subplots(),
    )
    fig.suptitle(
        f"classifier-free guidance: scale {scale:g} under scale 1 (DDIM-{num_steps}, seed {seed})"
    )
    return Drawn(fig, {"samples": samples, "reference": reference})


def guidance_widget(
    model: nn.Module,
    schedule: NoiseSchedule,
    scale: float = 3.0,
    num_steps: int = 20,
    max_scale: float = 10.0,
    seed: int = 0,
) -> ipywidgets.interactive:
    """A slider for the scale of :func:`draw_guided_samples`; it redraws when released."""
    slider = _slider(ipywidgets.FloatSlider, scale, 0, max_scale, 0.5, "guidance scale", False)
    draw = functools.partial(draw_guided_samples, model, schedule, num_steps=num_steps, seed=seed)
    return _interactive(draw, {"scale": slider})
