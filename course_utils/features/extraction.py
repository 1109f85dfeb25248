"""Lesson 06: a trained CNN as a feature extractor -- one vector per image, read from any layer.

The lesson hooks a layer by hand once (a forward hook, section 2); here the same job is done by
torchvision's ``create_feature_extractor``, which traces the model with ``torch.fx`` and returns a
new module whose output is the chosen node.
"""

from __future__ import annotations

import difflib
import math

import torch
import torchvision
from torch import fx, nn
from torchvision.models.feature_extraction import NodePathTracer, create_feature_extractor

from .. import checks, runtime
from ..checks import check_images
from ..train import evaluating

__all__ = ["extract_features"]

#: Attribute names under which models keep their final classifier: torchvision's ResNet uses
#: ``fc``, VGG / EfficientNet / ConvNeXt and this course's models ``classifier``, timm ``head``,
#: torchvision's ViT ``heads``.
_HEAD_NAMES = ("fc", "classifier", "head", "heads")


# The course's models check their input first (course_utils.checks). torch.fx records each check
# as one opaque call (autowrap_modules below) and must keep it in the extractor although its
# result is unused, since it may raise: like an assert, it is a side effect.
for _name in checks.__all__:
    if _name.startswith("check_"):
        fx.node.has_side_effect(getattr(checks, _name))


def _tracer_kwargs() -> dict:
    return {"autowrap_modules": (math, torchvision.ops, checks)}


def _feature_node(model: nn.Module, layer: str | None) -> str | None:
    """The name (in ``create_feature_extractor``'s naming) of the node whose output are the
    features, or ``None`` for the model's own output."""
    try:
        tracer = NodePathTracer(**_tracer_kwargs())
        graph = tracer.trace(model)
    except (fx.proxy.TraceError, TypeError) as error:
        raise ValueError(
            f"extract_features: torch.fx cannot trace {type(model).__name__} ({error}); its forward "
            f"probably branches on tensor values. Extract by hand with a forward hook instead"
        ) from error
    names = list(tracer.node_to_qualname.values())
    if layer is not None:
        if any(n == layer or n.startswith(layer + ".") for n in names):
            return layer  # a module's name stands for the last node inside it
        close = difflib.get_close_matches(layer, names, n=3)
        hint = f"did you mean {close}? " if close else ""
        raise ValueError(
            f"{type(model).__name__} has no layer {layer!r}: {hint}valid names come from "
            f"torchvision's get_graph_node_names(model), e.g. {names[:8]} ({len(names)} in all)"
        )
    head = next(
        (h for n in _HEAD_NAMES if isinstance(h := getattr(model, n, None), nn.Module)), None
    )
    if head is None:
        return None
    # The input of the head's last Linear: the "penultimate layer" features the classifier reads.
    # (A head without any Linear, e.g. model.fc = nn.Identity(), gives its own input.)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)] or [head]
    target = next(name for name, m in model.named_modules() if m is linears[-1])
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == target]
    if not calls:
        raise ValueError(
            f"extract_features: {target!r} is not used in {type(model).__name__}'s forward"
        )
    return tracer.node_to_qualname[calls[-1].args[0]]


def _pool_flatten(output: object) -> torch.Tensor:
    """Features [B, D] from a node's output: feature maps [B, C, H, W] are averaged over space."""
    if not isinstance(output, torch.Tensor) or output.dim() < 2:
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"extract_features: the features must be a tensor [B, ...], got {got}")
    if output.dim() == 4:
        # Global average pooling: one number per channel, whatever the image size. Flattening the
        # map instead would give C * H * W numbers that depend on where things are in the image.
        output = output.mean(dim=(2, 3))
    return output.flatten(1)


def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Run ``model`` over ``images`` [N, C, H, W] and return one feature vector per image, [N, D].

    Which features:

    - ``layer=None`` and the model has a final classifier (an ``fc``, ``classifier``, ``head`` or
      ``heads`` attribute): the *input* of the last ``nn.Linear`` in it -- the "penultimate
      layer" features the classifier reads its decision from. (A head without any Linear, e.g.
      ``model.fc = nn.Identity()``, gives its own input.)
    - ``layer=None`` and no such attribute: the model's own output, so a model that already is a
      feature extractor, e.g. ``nn.Sequential(*list(resnet.children())[:-1])``, works as is.
    - ``layer="layer3"``: the output of that module (the last operation inside it), or of any node
      that ``torchvision.models.feature_extraction.get_graph_node_names(model)`` lists. A module
      called twice in one forward pass (torchvision's blocks reuse their ReLU) has two nodes:
      ``"layer1.0.relu"`` and ``"layer1.0.relu_1"``.

    Feature maps [B, C, H, W] are global-average-pooled to [B, C]; anything else is flattened.

    The model runs in ``eval()`` mode (BatchNorm uses its running statistics, dropout is off) and
    under ``torch.no_grad()`` in batches of ``batch_size``; afterwards every module's train/eval
    mode is restored. ``device=None``: the course's device; the model is moved there (and stays,
    as with ``fit``). The features come back on the CPU.
    """
    images = check_images(images, what="extract_features")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    dev = runtime.device() if device is None else torch.device(device)
    model.to(dev)
    with evaluating(model), torch.no_grad():
        node = _feature_node(model, layer)
        if node is None:
            extractor = model
        else:
            extractor = create_feature_extractor(
                model,
                {node: "features"},
                tracer_kwargs=_tracer_kwargs(),
                suppress_diff_warning=True,
            ).eval()
        chunks = []
        for start in range(0, len(images), batch_size):
            output = extractor(images[start : start + batch_size].to(dev))
            output = output if node is None else output["features"]
            chunks.append(_pool_flatten(output).cpu())
    return torch.cat(chunks)
