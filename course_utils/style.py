"""Lesson 06: neural style transfer (Gatys, Ecker and Bethge, 2016) -- paint a photo in the style
of another.

A convolutional network describes an image at many layers. Gatys et al. split that description
in two:

* **content**: the feature maps of one deep layer, ``[B, C, H, W]``. They keep *where* things
  are (the cat's outline) but forget the exact colours and textures;
* **style**: the Gram matrix ``[B, C, C]`` of the feature maps of several layers, the
  correlation of every pair of channels averaged over all positions (:func:`gram_matrix`). The
  average throws away *where*, so what remains is *what* co-occurs: colours, strokes, textures.

Style transfer starts from the content photo and changes its **pixels** (the network stays fixed)
by gradient descent on ``content_weight * content loss + style_weight * style loss``: the MSE to
the content photo's features plus the MSE to the style image's Gram matrices
(:func:`style_transfer`). The two images may have different sizes, since a Gram matrix is
``C x C`` whatever the image size.

Which network? :class:`FeatureExtractor` reads the activations of chosen layers of any
``nn.Sequential``. Two networks come with the course, symmetric in use: :func:`style_extractor`
builds the extractor of either, with its standard layers and style weight:

* ``"vgg19"``: VGG19 trained on ImageNet, the network of the paper (a 548 MB download);
* ``"random"``: a small network with *random, untrained* filters, available offline.
  Gram matrices of random multi-scale filters are already good texture statistics (Ustyuzhaninov
  et al. 2016, "Texture synthesis using shallow convolutional networks with random filters"; He,
  Wang and Hopcroft 2016): the colours and textures transfer visibly, the strokes are less
  "painterly" than with VGG19.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import runtime
from .checks import check_images
from .image import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "WeightsUnavailable",
    "gram_matrix",
    "FeatureExtractor",
    "style_extractor",
    "style_transfer",
]


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be loaded or downloaded; the message says what to do instead."""


# --------------------------------------------------------------------------------------------
# Gram matrix
# --------------------------------------------------------------------------------------------


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Channel-by-channel correlations of feature maps, averaged over all positions.

    features: ``[B, C, H, W]``  ->  ``[B, C, C]`` with ``G[b, i, j] = sum_p F[b, i, p] F[b, j, p]
    / (C * H * W)``, where ``F = features.reshape(B, C, H * W)`` and ``p`` runs over the pixels.

    Summing over the pixels forgets where a feature fired, so shuffling the pixels does not change
    the Gram matrix: it describes texture, not layout. Dividing by ``H * W`` makes images of
    different sizes comparable; dividing also by ``C`` keeps wide layers from dominating the loss.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ValueError(f"expected feature maps [B, C, H, W], got {shape}")
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


# --------------------------------------------------------------------------------------------
# Feature extractor
# --------------------------------------------------------------------------------------------


class FeatureExtractor(nn.Module):
    """Read the content and style activations of a fixed ``nn.Sequential`` network.

    Args:
        features: the network, e.g. ``torchvision.models.vgg19().features`` or the networks
            of :func:`style_extractor` (:func:`_vgg19_features`, :func:`_random_features`). The
            activation recorded for a layer is the *output* of that module of the Sequential.
        content_layers, style_layers: the layers to read, as indices into ``features`` or as the
            names of its children (``"relu4_2"``); a layer may appear in both.
        normalize: subtract the ImageNet mean and divide by its std first, so that the input is
            an ordinary image ``[B, 3, H, W]`` in [0, 1] (what VGG19 was trained on; it also
            centres the input of the random network).
        default_style_weight: the ``style_weight`` that :func:`style_transfer` uses when given
            none. It belongs to the network: the size of the Gram matrices, hence of the style
            loss, depends on the scale of its activations.
        kind: a label saying which network this is (``"vgg19"``, ``"random"``), for display.

    ``forward(x [B, 3, H, W])`` returns ``{"content": [...], "style": [...]}``, one ``[B, C_l,
    H_l, W_l]`` tensor per requested layer, in the order requested. The network is cut after the
    deepest requested layer (nothing deeper is ever computed), frozen (``requires_grad=False``:
    style transfer optimises the pixels, not the filters) and put in ``eval()`` mode.
    """

    def __init__(
        self,
        features: nn.Sequential,
        content_layers: Sequence[int | str],
        style_layers: Sequence[int | str],
        normalize: bool = True,
        default_style_weight: float = 1.0,
        kind: str = "custom",
    ):
        super().__init__()
        if not isinstance(features, nn.Sequential):
            raise TypeError(f"features must be an nn.Sequential, got {type(features).__name__}")
        if not content_layers and not style_layers:
            raise ValueError("ask for at least one content or style layer")
        names = [name for name, _ in features.named_children()]
        self.content_layers = [_layer_index(layer, names) for layer in content_layers]
        self.style_layers = [_layer_index(layer, names) for layer in style_layers]
        deepest = max(self.content_layers + self.style_layers)
        self.features = features[: deepest + 1]  # slicing keeps the names of the children
        for module in self.features.modules():
            # An in-place ReLU would overwrite the conv output we just recorded: make it a copy.
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.features.requires_grad_(False)
        self.eval()
        self.normalize = normalize
        self.default_style_weight = default_style_weight
        self.kind = kind
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        check_images(x, what=type(self).__name__, channels=3, value_range=(0, 1))
        if self.normalize:
            x = (x - self.mean) / self.std
        wanted = set(self.content_layers + self.style_layers)
        recorded = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                recorded[index] = x
        return {
            "content": [recorded[i] for i in self.content_layers],
            "style": [recorded[i] for i in self.style_layers],
        }


def _layer_index(layer: int | str, names: list[str]) -> int:
    """The position in the Sequential of ``layer``, given as an index or as a child's name."""
    if isinstance(layer, str):
        if layer not in names:
            raise ValueError(f"no layer named {layer!r}; the network has {', '.join(names)}")
        return names.index(layer)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(names):
        raise ValueError(f"layer must be a name or an index in [0, {len(names)}), got {layer!r}")
    return layer


# --------------------------------------------------------------------------------------------
# VGG19, pretrained (online)
# --------------------------------------------------------------------------------------------


def _vgg19_layer_names() -> tuple[str, ...]:
    names = []
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


#: The names of the 37 modules of torchvision's ``vgg19().features``, in order: position ``i``
#: names ``features[i]`` (``_VGG19_LAYERS.index("conv4_2") == 21``).
_VGG19_LAYERS: tuple[str, ...] = _vgg19_layer_names()

#: The paper's layers. Its Caffe code applied ReLU in place, so what it called "conv4_2" was
#: really the activation after the ReLU: that is what these names read.
_VGG19_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
_VGG19_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)

#: Default ``style_weight`` for VGG19 (as in PyTorch's style-transfer tutorial, which uses the same
#: Gram normalisation): VGG's deep activations are large, so its Gram matrices are too.
_VGG19_STYLE_WEIGHT: float = 1e6


def _vgg19_features(weights: str | None = "DEFAULT", pool: str = "avg") -> nn.Sequential:
    """The convolutional part of VGG19 (Simonyan and Zisserman, 2015), named layer by layer.

    Args:
        weights: ``"DEFAULT"`` / ``"IMAGENET1K_V1"`` (or a ``VGG19_Weights``) for the ImageNet
            weights, downloaded once (548 MB) into ``cache_dir("weights")``; ``None`` for random
            ones (the bare architecture, no download).
        pool: ``"avg"`` replaces each 2x2 max-pool by an average-pool, as Gatys et al. did: the
            gradient then flows to all four pixels instead of one, giving smoother images.
            ``"max"`` keeps the network as trained.

    Returns:
        ``nn.Sequential`` of 37 modules named as in :data:`_VGG19_LAYERS` (``conv1_1``,
        ``relu1_1``, ..., ``pool5``), ready for :class:`FeatureExtractor`.

    Raises:
        WeightsUnavailable: the weights are not cached and cannot be downloaded. Use the offline
            network instead: ``style_extractor("random")``.
    """
    from torchvision.models import VGG19_Weights, vgg19

    _check_choice("pool", pool, ("avg", "max"))
    # Fetch the weights first: when they cannot be had, no 548 MB network is built for nothing.
    state_dict = None if weights is None else _vgg19_state_dict(VGG19_Weights.verify(weights).url)
    model = vgg19()  # the architecture, with random weights
    if state_dict is not None:
        model.load_state_dict(state_dict)  # replaced by the ImageNet ones
    net = model.features
    layers = []
    for name, module in zip(_VGG19_LAYERS, net, strict=True):
        if isinstance(module, nn.MaxPool2d) and pool == "avg":
            module = nn.AvgPool2d(kernel_size=2, stride=2)
        layers.append((name, module))
    return nn.Sequential(OrderedDict(layers))


def _vgg19_state_dict(url: str) -> dict[str, torch.Tensor]:
    """The weights at ``url``, read from ``cache_dir("weights")`` (downloaded there the first
    time, like every download of the course); raise WeightsUnavailable if they cannot be had."""
    folder = runtime.cache_dir("weights")
    file = folder / Path(url).name
    cached = file.exists()  # downloaded before: no network needed
    hint = 'use the offline network instead: style_extractor("random")'
    if not cached and not runtime.online():
        raise WeightsUnavailable(
            f"There is no network to download the VGG19 weights from {url} into {folder}; {hint}."
        )
    try:
        with runtime.download_timeout():  # a server that stops answering fails, never hangs
            # check_hash: the file name ends with the start of its SHA-256, which is checked
            return torch.hub.load_state_dict_from_url(
                url, model_dir=str(folder), progress=True, check_hash=True
            )
    except (OSError, RuntimeError) as err:  # network errors, or a truncated or corrupted file
        if cached:
            raise WeightsUnavailable(
                f"Reading the VGG19 weights from {file} failed: {runtime.failure_reason(err)}; delete "
                f"the file to download it again, or {hint}."
            ) from err
        runtime.mark_offline()  # so that the next loader does not wait on the network again
        raise WeightsUnavailable(
            f"Downloading the VGG19 weights from {url} into {folder} failed: "
            f"{runtime.failure_reason(err)}; {hint}."
        ) from err


# --------------------------------------------------------------------------------------------
# Random multi-scale network (offline)
# --------------------------------------------------------------------------------------------

#: Style is read after every stage of :func:`_random_features`, so textures are described at 4
#: scales; content after stage 3 (1/4 of the resolution), coarse enough to leave texture free.
_RANDOM_STYLE_LAYERS: tuple[str, ...] = ("relu1", "relu2", "relu3", "relu4")
_RANDOM_CONTENT_LAYERS: tuple[str, ...] = ("relu3",)

#: Default ``style_weight`` for :func:`_random_features`, tuned on the course photos at 128 px:
#: the style loss drops by 91-99 % within 40-80 Adam steps while the photo stays recognisable.
_RANDOM_STYLE_WEIGHT: float = 1e4


def _random_features(
    seed: int = 0,
    widths: Sequence[int] = (64, 128, 256, 256),
    kernel_size: int = 3,
    pool: str = "avg",
) -> nn.Sequential:
    """A fixed network with random filters: the offline stand-in for VGG19 in style transfer.

    Stage ``k`` (``k = 1, 2, ...``, one per entry of ``widths``) is ``conv{k}`` (``kernel_size``,
    ``widths[k-1]`` filters) -> ``relu{k}`` -> ``pool{k}`` (2x2, halves the resolution), so the
    receptive field doubles at every stage: multi-scale texture statistics, as VGG19's blocks.

    The filters are drawn with He (Kaiming) initialisation, variance ``2 / fan_in``: a ReLU zeroes
    half of its inputs, and this variance makes up for it, so activations neither vanish nor
    explode with depth. The biases are small random values, so that filters do not all switch
    on at the same threshold. Nothing is trained; the same ``seed`` gives the same network.

    Returns:
        ``nn.Sequential`` named ``conv1, relu1, pool1, conv2, ...``, for :class:`FeatureExtractor`
        with :data:`_RANDOM_CONTENT_LAYERS` and :data:`_RANDOM_STYLE_LAYERS`.
    """
    _check_choice("pool", pool, ("avg", "max"))
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
    generator = torch.Generator().manual_seed(seed)  # private: the global RNG is left alone
    layers, in_channels = [], 3
    for k, width in enumerate(widths, start=1):
        conv = nn.Conv2d(in_channels, width, kernel_size, padding=kernel_size // 2)
        fan_in = in_channels * kernel_size**2
        with torch.no_grad():
            conv.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
            conv.bias.normal_(0.0, 0.1, generator=generator)
        pooling = nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2)
        layers += [(f"conv{k}", conv), (f"relu{k}", nn.ReLU()), (f"pool{k}", pooling)]
        in_channels = width
    return nn.Sequential(OrderedDict(layers))


def style_extractor(kind: str = "auto", seed: int = 0) -> FeatureExtractor:
    """A ready :class:`FeatureExtractor` with the standard layers and style weight of a network.

    kind: ``"vgg19"`` (pretrained, may raise :class:`WeightsUnavailable`), ``"random"`` (offline,
    :func:`_random_features` with ``seed``) or ``"auto"``: VGG19 when its weights are cached or can
    be downloaded, else the random network. Prints nothing: ``extractor.kind`` says which one it is.
    """
    _check_choice("kind", kind, ("auto", "vgg19", "random"))
    if kind in ("auto", "vgg19"):
        try:
            net = _vgg19_features()
        except WeightsUnavailable:
            if kind == "vgg19":
                raise
        else:
            return FeatureExtractor(
                net,
                _VGG19_CONTENT_LAYERS,
                _VGG19_STYLE_LAYERS,
                default_style_weight=_VGG19_STYLE_WEIGHT,
                kind="vgg19",
            )
    return FeatureExtractor(
        _random_features(seed),
        _RANDOM_CONTENT_LAYERS,
        _RANDOM_STYLE_LAYERS,
        default_style_weight=_RANDOM_STYLE_WEIGHT,
        kind="random",
    )


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, choices))}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Style transfer
# --------------------------------------------------------------------------------------------


def _as_batch(image: torch.Tensor, name: str) -> torch.Tensor:
    """``[3, H, W]`` or ``[1, 3, H, W]`` float in [0, 1] -> ``[1, 3, H, W]``."""
    check_images(
        image, what=f"style transfer ({name})", layout="*CHW", channels=3, value_range=(0, 1)
    )
    if image.dim() == 4 and image.shape[0] != 1:
        raise ValueError(f"expected one {name} image [1, 3, H, W], got shape {tuple(image.shape)}")
    return image if image.dim() == 4 else image.unsqueeze(0)


def _content_loss(features: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Sum over the content layers of the MSE between feature maps ``[1, C, H, W]``."""
    # Starting the sum from a 0-dim tensor gives a tensor even with no layers; 0-dim tensors
    # act as plain numbers next to tensors of any device.
    return sum((F.mse_loss(f, t) for f, t in zip(features, targets, strict=True)), torch.zeros(()))


def _style_loss(
    features: list[torch.Tensor], target_grams: list[torch.Tensor], weights: Sequence[float]
) -> torch.Tensor:
    """Weighted sum over the style layers of the MSE between Gram matrices ``[1, C, C]``."""
    terms = (
        w * F.mse_loss(gram_matrix(f), g)
        for w, f, g in zip(weights, features, target_grams, strict=True)
    )
    return sum(terms, torch.zeros(()))


def style_transfer(
    content: torch.Tensor,
    style: torch.Tensor,
    extractor: FeatureExtractor,
    *,
    steps: int = 300,
    content_weight: float = 1.0,
    style_weight: float | None = None,
    layer_weights: Sequence[float] | None = None,
    lr: float | None = None,
    init: str = "content",
    optimizer: str = "adam",
    progress: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """Optimise the pixels of an image: the content of ``content``, the style of ``style``.

    Args:
        content: ``[1, 3, H, W]`` (or ``[3, H, W]``) float in [0, 1]; the output has its size.
        style: ``[1, 3, H', W']`` (or ``[3, H', W']``) float in [0, 1], any size.
        extractor: e.g. ``style_extractor()``; the images are moved to ``content``'s device, so
            put the extractor there too.
        steps: optimiser steps (each one forward and backward pass through the network).
        content_weight, style_weight: the loss is ``content_weight * content_loss + style_weight
            * style_loss``; only their ratio matters. ``style_weight=None`` takes
            ``extractor.default_style_weight`` (``_VGG19_STYLE_WEIGHT``, 1e6, or
            ``_RANDOM_STYLE_WEIGHT``, 1e4). Larger = more style, less of the photo.
        layer_weights: one weight per style layer (default: 1 each).
        lr: learning rate; ``None`` = 0.02 for Adam (a change of about 2 % of the pixel range per
            step, whatever the loss scale, since Adam divides by the gradient's size) and 1.0
            for L-BFGS (which finds its step length by a line search).
        init: start from the ``"content"`` photo (fast, keeps its details) or from uniform
            ``"noise"`` (as in the paper: slower, a freer mix; ``runtime.seed_everything`` first
            makes it repeatable).
        optimizer: ``"adam"`` or ``"lbfgs"`` (fewer, costlier steps: several evaluations each).
        progress: show a tqdm bar with the current losses.
        callback: ``callback(step, image)`` after every step, e.g. to keep snapshots.

    Returns:
        ``(image, history)``: the result ``[1, 3, H, W]`` in [0, 1] (detached), and a dict of
        lists with one value per step, measured before that step: ``"content"`` and ``"style"``
        (unweighted losses) and ``"total"`` (the weighted sum that is minimised).

    The pixels are optimised directly and clamped to [0, 1] after every step (a projection back
    onto valid images). The network only ever sees the clamped image, which also keeps L-BFGS's
    line search, which probes points outside [0, 1], from feeding it invalid pixels.
    """
    content, style = _as_batch(content, "content"), _as_batch(style, "style")
    style = style.to(content.device)
    _check_choice("init", init, ("content", "noise"))
    _check_choice("optimizer", optimizer, ("adam", "lbfgs"))
    if style_weight is None:
        style_weight = extractor.default_style_weight
    n_style = len(extractor.style_layers)
    layer_weights = [1.0] * n_style if layer_weights is None else list(layer_weights)
    if len(layer_weights) != n_style:
        raise ValueError(
            f"expected {n_style} layer_weights (one per style layer), got {layer_weights}"
        )

    with torch.no_grad():  # the targets are constants: computed once
        content_targets = extractor(content)["content"]
        style_targets = [gram_matrix(f) for f in extractor(style)["style"]]

    start = content.clone() if init == "content" else torch.rand_like(content)
    image = start.requires_grad_(True)
    if optimizer == "adam":
        opt = torch.optim.Adam([image], lr=0.02 if lr is None else lr)
    else:
        # max_iter=1: one L-BFGS iteration per step (its memory of past steps is kept between
        # calls), so that steps and history mean the same as with Adam.
        opt = torch.optim.LBFGS(
            [image], lr=1.0 if lr is None else lr, max_iter=1, line_search_fn="strong_wolfe"
        )

    evaluations = []  # (content, style, total) of every loss evaluation within the current step

    def closure() -> torch.Tensor:
        opt.zero_grad()
        features = extractor(image.clamp(0, 1))
        content_loss = _content_loss(features["content"], content_targets)
        style_loss = _style_loss(features["style"], style_targets, layer_weights)
        total = content_weight * content_loss + style_weight * style_loss
        total.backward()
        evaluations.append([float(x.detach()) for x in (content_loss, style_loss, total)])
        return total

    history = {"content": [], "style": [], "total": []}
    bar = tqdm(range(steps), desc="style transfer", disable=not progress)
    for step in bar:
        evaluations.clear()
        opt.step(closure)
        with torch.no_grad():
            image.clamp_(0, 1)
        for key, value in zip(history, evaluations[0], strict=True):  # the loss before the step
            history[key].append(value)
        bar.set_postfix(
            content=f"{history['content'][-1]:.3g}", style=f"{history['style'][-1]:.3g}"
        )
        if callback is not None:
            callback(step, image.detach())
    return image.detach(), history
