"""Lessons 01-13: pictures every lesson needs: image grids, boxes, masks and training curves (matplotlib).

Every function returns the matplotlib ``Figure`` or ``Axes`` it drew on and never calls
``plt.show()``: a notebook displays the figure at the end of the cell, and you can still add to it
(``ax.set_title(...)``) or save it (``fig.savefig("grid.png")``). Tip: end the line with ``;``
(``show_images(batch);``) so that Jupyter does not also display the returned object.

They accept images in any of the course's layouts (see :func:`to_display`), except
:func:`show_grid`, which takes a batch tensor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torchvision.utils import make_grid

from .checks import check_images
from .detection.boxes import check_boxes
from .train import History

__all__ = ["to_display", "show_images", "show_grid", "draw_boxes", "overlay_masks", "plot_history"]


def to_display(image) -> np.ndarray:
    """Convert an image to what ``plt.imshow`` expects: ``[H, W, C]`` float in [0, 1], or ``[H, W]``.

    Accepted inputs, following the course's conventions (PyTorch is channels-first, NumPy and
    PIL are channels-last):

    - torch tensor ``[C, H, W]`` (C = 1, 3 or 4) or ``[H, W]``, float in [0, 1] or uint8;
    - NumPy array ``[H, W, C]`` or ``[H, W]``, float in [0, 1] or uint8;
    - PIL image.

    One-channel images come back as ``[H, W]`` (show them with ``cmap="gray"``). Anything else --
    a batch, a channels-last tensor, floats outside [0, 1] -- raises a ``ValueError`` saying how
    to fix it, rather than drawing a silently wrong picture.
    """
    if isinstance(image, Image.Image):
        # palette ("P"), CMYK, 16-bit ... images become RGB; grey, RGB and RGBA stay as they are
        image = np.asarray(
            image if image.mode in ("1", "L", "RGB", "RGBA") else image.convert("RGB")
        )
    if isinstance(image, np.ndarray):  # channels last: brought to the tensor layout, then checked
        if image.ndim == 3 and image.shape[-1] not in (1, 3, 4):
            hint = (
                "; it looks like CHW: use .transpose(1, 2, 0)"
                if image.shape[0] in (1, 3, 4)
                else ""
            )
            raise ValueError(
                f"expected an HWC array with 1, 3 or 4 channels, got shape {image.shape}{hint}"
            )
        image = torch.from_numpy(np.array(image))  # a writable copy
        image = image.movedim(-1, 0) if image.ndim == 3 else image
    elif not isinstance(image, torch.Tensor):
        raise TypeError(
            f"expected a torch tensor, NumPy array or PIL image, got {type(image).__name__}"
        )
    image = image.detach().cpu()
    if image.ndim == 4:
        raise ValueError(f"got a batch of shape {tuple(image.shape)}: use show_images for a batch")
    if image.dtype == torch.bool:
        image = image.float()
    if not (image.is_floating_point() or image.dtype == torch.uint8):
        raise ValueError(f"expected a uint8 or float image, got dtype {image.dtype}")
    image = image.float() if image.is_floating_point() else image.float() / 255  # no bfloat16
    image = image[None] if image.ndim == 2 else image
    check_images(image, what="to_display", layout="CHW", channels=(1, 3, 4), value_range=(0, 1))
    image = image.clamp(0, 1).permute(1, 2, 0).numpy()  # CHW -> HWC, the layout imshow wants
    return image[..., 0] if image.shape[-1] == 1 else image


def _imshow(ax: Axes, image: np.ndarray, cmap: str | None = None) -> None:
    """Show a ``to_display`` image so that pixel (row i, column j) covers [j, j+1] x [i, i+1].

    That is the coordinate system of box coordinates (xyxy), so boxes land on the right pixels;
    matplotlib's default would centre pixel j on x = j, half a pixel off.
    """
    h, w = image.shape[:2]
    grey = image.ndim == 2
    # vmin/vmax pin grey levels: otherwise imshow stretches a dark image to full contrast
    ax.imshow(
        image,
        cmap=cmap or ("gray" if grey else None),
        vmin=0 if grey else None,
        vmax=1 if grey else None,
        extent=(0, w, h, 0),
        interpolation="nearest",
    )
    ax.set_axis_off()


def _new_axes(ax: Axes | None) -> Axes:
    return plt.subplots(figsize=(5, 5))[1] if ax is None else ax


def show_images(
    images,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    cmap: str | None = None,
    figsize: tuple[float, float] | None = None,
    suptitle: str | None = None,
) -> Figure:
    """A grid of images: a batch tensor ``[B, C, H, W]``, or a list of any :func:`to_display` input.

    Grey images use ``cmap`` (default ``"gray"``); ``titles`` has one string per image. The figure
    has exactly one Axes per image.
    """
    if isinstance(images, torch.Tensor) and images.ndim != 4:
        raise ValueError(
            f"expected a batch tensor [B, C, H, W] or a list of images, got shape {tuple(images.shape)}"
        )
    images = [to_display(im) for im in images]
    if not images:
        raise ValueError("show_images got no images")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images")
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=figsize or (1.6 * ncols, 1.6 * nrows + 0.4), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        if i >= len(images):
            ax.remove()  # the empty cells of the last row
            continue
        _imshow(ax, images[i], cmap)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle is not None:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_grid(
    images: torch.Tensor,
    row_labels: Sequence | None = None,
    col_labels: Sequence | None = None,
    ncols: int | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Many small images as *one* picture on one Axes, with labelled rows and columns: how the
    diffusion lessons lay out samples (a row per digit, a column per timestep, step count ...).

    ``images`` are floats in [0, 1], either ``[N, C, H, W]``, laid out ``ncols`` per row (default
    8, like ``make_grid``), or ``[rows, cols, C, H, W]``, laid out as given. C = 1 is drawn in grey,
    C = 3 in colour. ``row_labels`` / ``col_labels`` (one per row / column, shown with ``str``)
    become tick labels at the tile centres. The picture is exactly torchvision's
    ``make_grid(images, nrow=ncols, padding=1, pad_value=1.0)``: tiles separated by 1-pixel white
    lines. Unlike :func:`show_images` it is a single image, so a 10 x 12 grid stays fast to draw.
    """
    if not isinstance(images, torch.Tensor) or images.ndim not in (4, 5):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected a tensor [N, C, H, W] or [rows, cols, C, H, W], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype}")
    if images.ndim == 5:
        if ncols is not None:
            raise ValueError("ncols is for [N, C, H, W] images: [rows, cols, ...] sets it already")
        ncols = images.shape[1]
        images = images.flatten(0, 1)
    n, c, h, w = images.shape
    if c not in (1, 3) or n == 0:
        raise ValueError(
            f"expected at least one image with 1 or 3 channels, got {tuple(images.shape)}"
        )
    ncols = min(8 if ncols is None else ncols, n)
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    nrows = math.ceil(n / ncols)
    for labels, count, what in ((row_labels, nrows, "row"), (col_labels, ncols, "column")):
        if labels is not None and len(labels) != count:
            raise ValueError(f"got {len(labels)} {what} labels for {count} {what}s")

    grid = make_grid(images.detach().cpu().float(), nrow=ncols, padding=1, pad_value=1.0)
    ax = _new_axes(ax)
    # make_grid repeats a single channel three times: draw one of them, with the grey colormap.
    # to_display checks the range, so [-1, 1] samples fail here with the fix in the message.
    _imshow(ax, to_display(grid[0] if c == 1 else grid))
    ax.set_axis_on()  # for the tick labels; the frame stays hidden
    ax.spines[:].set_visible(False)
    ax.tick_params(length=0)

    def centres(count: int, size: int) -> list[float]:
        # with _imshow's extent, tile k covers pixels [1 + k (size + 1), 1 + k (size + 1) + size)
        return [1 + k * (size + 1) + size / 2 for k in range(count)]

    col_labels = [] if col_labels is None else [str(v) for v in col_labels]
    row_labels = [] if row_labels is None else [str(v) for v in row_labels]
    ax.set_xticks(centres(len(col_labels), w), col_labels, fontsize=8)
    ax.set_yticks(centres(len(row_labels), h), row_labels, fontsize=8)
    if title is not None:
        ax.set_title(title)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    return ax


def _numpy(x) -> np.ndarray:
    """A tensor (on any device) or array-like as a NumPy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def draw_boxes(
    image,
    boxes,
    labels=None,
    scores=None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    ax: Axes | None = None,
    color: str | None = None,
    title: str | None = None,
) -> Axes:
    """Draw boxes ``[K, 4]`` (xyxy pixel coordinates) on an image, with "name 0.93" captions.

    ``labels: [K]`` int class ids are looked up in ``class_names`` (a list or a dict) and pick the
    box colour (one tab10 colour per class) unless ``color`` is given; ``scores: [K]`` in [0, 1].
    """
    image = to_display(image)
    boxes = _numpy(boxes).astype(float)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)  # no detections is a valid answer
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected boxes of shape [K, 4] (xyxy), got {boxes.shape}")
    check_boxes(torch.from_numpy(boxes), "draw_boxes: boxes")  # xyxy, finite
    k = len(boxes)
    labels = None if labels is None else [int(v) for v in _numpy(labels).reshape(-1)]
    scores = None if scores is None else [float(v) for v in _numpy(scores).reshape(-1)]
    for name, values in (("labels", labels), ("scores", scores)):
        if values is not None and len(values) != k:
            raise ValueError(f"got {len(values)} {name} for {k} boxes")

    ax = _new_axes(ax)
    _imshow(ax, image)
    palette = plt.get_cmap("tab10").colors
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        label = None if labels is None else labels[i]
        box_color = color or palette[(label or 0) % len(palette)]
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=box_color, linewidth=2)
        )
        caption = []
        if label is not None:
            caption.append(_class_name(label, class_names))
        if scores is not None:
            caption.append(f"{scores[i]:.2f}")
        if caption:
            ax.text(
                x1,
                y1,
                " ".join(caption),
                color="white",
                fontsize=8,
                va="bottom",
                bbox={"facecolor": box_color, "alpha": 0.8, "pad": 1, "edgecolor": "none"},
            )
    if title is not None:
        ax.set_title(title)
    return ax


def _class_name(label: int, class_names) -> str:
    if class_names is None:
        return str(label)
    try:
        return class_names[label]
    except (IndexError, KeyError):
        raise ValueError(
            f"label {label} has no entry in class_names ({len(class_names)} names)"
        ) from None


def _palette(n: int) -> tuple:
    """``n`` distinct colours if possible: tab10 up to 10, tab20 beyond (then colours repeat)."""
    return plt.get_cmap("tab10" if n <= 10 else "tab20").colors


def overlay_masks(
    image, masks, alpha: float = 0.5, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Colour masks over an image, one colour per instance or per class.

    ``masks`` is either ``[K, H, W]`` bool/uint8 instance masks (instance k gets colour k) or an
    ``[H, W]`` integer label map (class c > 0 gets colour c; 0 is background and stays uncoloured).
    Where a mask is on, the pixel becomes ``(1 - alpha) * pixel + alpha * colour``.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = to_display(image)
    image = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]  # RGB to blend in
    masks = _numpy(masks)
    if masks.ndim not in (2, 3) or masks.shape[-2:] != image.shape[:2]:
        raise ValueError(
            f"expected masks [K, H, W] or a label map [H, W] with H, W = {image.shape[:2]}, "
            f"got shape {masks.shape}"
        )
    if masks.ndim == 3:
        if masks.dtype not in (np.bool_, np.uint8):
            raise ValueError(
                f"instance masks must be bool or uint8, got {masks.dtype}: threshold soft masks "
                "first (masks > 0.5)"
            )
        palette = _palette(len(masks))
        layers = [(palette[k % len(palette)], m.astype(bool)) for k, m in enumerate(masks)]
    else:
        if not (np.issubdtype(masks.dtype, np.integer) or masks.dtype == np.bool_):
            raise ValueError(f"a label map must hold integer class ids, got dtype {masks.dtype}")
        classes = [int(c) for c in np.unique(masks) if c != 0]
        palette = _palette(max(classes, default=0))
        layers = [(palette[(c - 1) % len(palette)], masks == c) for c in classes]

    blended = image.copy()
    for colour, on in layers:
        blended[on] = (1 - alpha) * blended[on] + alpha * np.asarray(colour)
    ax = _new_axes(ax)
    _imshow(ax, blended)
    if title is not None:
        ax.set_title(title)
    return ax


def _as_history(history: History | Mapping) -> History:
    if isinstance(history, Mapping):
        known = set(History.__dataclass_fields__)
        history = History(**{k: v for k, v in history.items() if k in known})
    if not isinstance(history, History) or not history.train_loss:
        raise ValueError("expected a History (or its as_dict()) with at least one train_loss entry")
    return history


def plot_history(
    history: History | Mapping, axes: Sequence[Axes] | None = None, title: str | None = None
) -> Figure:
    """Learning curves from :func:`~course_utils.train.fit`: loss per epoch (train and validation)
    on the first panel, the validation metric on a second one (if it was measured).

    ``axes``: draw into these (1 or 2, as needed) instead of a new figure.
    """
    history = _as_history(history)
    n_panels = 2 if history.val_metric else 1
    fig_is_new = axes is None
    if fig_is_new:
        fig, grid = plt.subplots(1, n_panels, figsize=(5 * n_panels, 3.5), squeeze=False)
        axes = list(grid.flat)
    else:
        axes = list(np.atleast_1d(axes))
        if len(axes) < n_panels:
            raise ValueError(
                f"this history needs {n_panels} axes (loss and metric), got {len(axes)}"
            )
        fig = axes[0].figure

    def epochs(values):
        return range(1, len(values) + 1)  # epochs count from 1: the value after the first epoch

    loss_ax = axes[0]
    loss_ax.plot(epochs(history.train_loss), history.train_loss, "o-", label="train")
    if history.val_loss:
        loss_ax.plot(epochs(history.val_loss), history.val_loss, "o-", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_ax.legend()
    if history.val_metric:
        name = history.metric_name or "metric"
        metric_ax = axes[1]
        metric_ax.plot(
            epochs(history.val_metric),
            history.val_metric,
            "o-",
            color="C2",
            label=f"validation {name}",
        )
        metric_ax.set(xlabel="epoch", ylabel=name, title=f"validation {name}")
        metric_ax.legend()
    for ax in axes[:n_panels]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.5" ticks
    if title is not None:
        fig.suptitle(title)
    if fig_is_new:
        fig.tight_layout()
    return fig
