"""Lesson 02: measuring a model -- parameters (in total and per layer type), the shape of every
layer's output, receptive fields, and multiply-accumulates, measured on the model rather than copied
from papers (and ``format_table`` to print the rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..train import evaluating

__all__ = [
    "count_parameters",
    "count_by_type",
    "trace_shapes",
    "format_table",
    "receptive_field",
    "count_flops",
]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (a shared parameter counts once).

    ``trainable_only=True`` counts only those with ``requires_grad`` (e.g. after freezing).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_by_type(model: nn.Module) -> dict[str, int]:
    """Parameters per module type, e.g. ``{"Conv2d": 1044, "BatchNorm2d": 48, "Linear": 27}``.

    Each parameter counts once, for the module that owns it directly (a ``ConvNeXtBlock``'s
    ``gamma`` counts as "ConvNeXtBlock"), so the values add up to ``count_parameters(model)``.
    Sorted from the largest to the smallest; types without parameters are left out.
    """
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            name = type(module).__name__
            counts[name] = counts.get(name, 0) + sum(p.numel() for p in own)
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _run_with_hooks(
    model: nn.Module,
    example: torch.Tensor | Sequence[int],
    modules: Iterable[tuple[str, nn.Module]],
    hook: Callable[[str, nn.Module, object], None],
) -> None:
    """Run ``model`` once in eval mode without gradients, calling ``hook(name, module, output)``
    after each of ``modules``; removes the hooks and restores every module's mode afterwards."""
    if not isinstance(example, torch.Tensor):
        param = next(model.parameters(), None)
        example = torch.zeros(tuple(example), device=param.device if param is not None else "cpu")
    handles = [
        m.register_forward_hook(lambda mod, inp, out, name=name: hook(name, mod, out))
        for name, m in modules
    ]
    try:  # eval: BatchNorm must not update its statistics (and works on a batch of 1)
        with evaluating(model), torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()


def _shape(output: object) -> tuple | None:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)):
        return tuple(_shape(o) for o in output)
    return None


def trace_shapes(model: nn.Module, example: torch.Tensor | Sequence[int]) -> list[dict]:
    """Run ``model`` once and list every leaf layer it calls, in order.

    example: an input tensor, or its full shape including the batch, e.g. ``(1, 1, 32, 32)``
    (zeros are used). Returns one dict per call::

        {"name": "features.c1", "type": "Conv2d", "output_shape": (1, 6, 28, 28), "params": 156}

    A module called several times (torchvision-style blocks reuse one ReLU) gets one row per
    call, with its parameters on the first row only, so the column adds up to the parameters
    used. Runs in eval mode without gradients; hooks and train/eval modes are restored after.
    Show it with ``print(format_table(rows))``.
    """
    rows: list[dict] = []
    counted: set[int] = set()

    def record(name: str, module: nn.Module, output: object) -> None:
        params = 0 if id(module) in counted else count_parameters(module)
        counted.add(id(module))
        rows.append(
            {
                "name": name or type(module).__name__,
                "type": type(module).__name__,
                "output_shape": _shape(output),
                "params": params,
            }
        )

    leaves = [(name, m) for name, m in model.named_modules() if next(m.children(), None) is None]
    _run_with_hooks(model, example, leaves, record)
    return rows


def format_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """Render a list of dicts (``trace_shapes``, ``receptive_field``...) as an aligned text table.

    ``columns`` defaults to every key, in order of first appearance. Integers get thousands
    separators and, like all numbers, are right-aligned.
    """
    if not rows:
        return ""
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))

    def is_number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def cell(v: object) -> str:
        if v is None:
            return ""
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    right = [all(is_number(row.get(c)) for row in rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


# Layers that act on each pixel separately: they do not change the receptive field.
_POINTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.LocalResponseNorm,
)


def _square(value: int | tuple, what: str, where: str) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"receptive_field handles square layers only; {where} has {what}={value}")
    return value[0]


def _layer_geometry(name: str, m: nn.Module) -> tuple[int, int, int, float]:
    """(kernel, stride, dilation, padding) of one Conv2d / MaxPool2d / AvgPool2d."""
    where = f"'{name}' ({type(m).__name__})"
    k = _square(m.kernel_size, "kernel_size", where)
    s = _square(m.stride, "stride", where)
    d = _square(getattr(m, "dilation", 1), "dilation", where)
    if m.padding in ("same", "valid"):  # Conv2d's string forms
        p = (d * (k - 1)) / 2 if m.padding == "same" else 0
    else:
        p = _square(m.padding, "padding", where)
    return k, s, d, p


def receptive_field(layers: nn.Module | Iterable[Sequence[int]]) -> list[dict]:
    """Receptive field after each layer of a chain of convolutions and poolings.

    layers: an ``nn.Sequential`` (nested Sequentials allowed) of Conv2d / MaxPool2d / AvgPool2d
    plus pointwise layers (activations, BatchNorm, dropout), or tuples
    ``(kernel, stride, dilation)`` / ``(kernel, stride, dilation, padding)``.

    Returns one dict per conv/pool layer: ``layer`` (name or index), ``kernel``, ``stride``,
    ``dilation``, ``padding``, then

    - ``rf``: side of the input window one output pixel sees,
      ``rf_out = rf_in + (k_eff - 1) * jump_in`` with ``k_eff = dilation * (k - 1) + 1``;
    - ``jump``: distance in input pixels between neighbouring outputs, ``jump_in * stride``;
    - ``start``: input coordinate of the centre of output pixel 0's window (pixel i's centre is
      at i), ``start_in + ((k_eff - 1) / 2 - padding) * jump_in``; output pixel i sees the
      window centred on ``start + i * jump``.

    The last dict describes the whole stack. Two 3x3 convs give rf 5, three give 7: the VGG
    argument. Only chains have a single receptive field: a block with branches (Inception,
    residual blocks) is rejected.
    """
    if isinstance(layers, nn.Module):
        items = []
        for name, m in layers.named_modules():
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                items.append((name, _layer_geometry(name, m)))
            elif next(m.children(), None) is not None:
                if not isinstance(m, nn.Sequential):
                    raise ValueError(
                        f"receptive_field follows a chain of layers, but '{name or 'model'}' is a "
                        f"{type(m).__name__}, whose forward may branch; pass nn.Sequential parts"
                    )
            elif not isinstance(m, _POINTWISE):
                raise ValueError(
                    f"receptive_field knows Conv2d, MaxPool2d, AvgPool2d and pointwise layers; "
                    f"'{name}' is a {type(m).__name__}"
                )
    else:
        items = []
        for i, spec in enumerate(layers):
            if len(spec) not in (3, 4):
                raise ValueError(
                    f"layer {i}: expected (kernel, stride, dilation[, padding]), got {spec}"
                )
            items.append((i, (*spec, 0) if len(spec) == 3 else tuple(spec)))
    if not items:
        raise ValueError("receptive_field needs at least one conv or pooling layer")

    rows, rf, jump, start = [], 1, 1, 0.0
    for name, (k, s, d, p) in items:
        if min(k, s, d) < 1:
            raise ValueError(f"layer {name}: kernel, stride and dilation must be >= 1")
        k_eff = d * (k - 1) + 1
        rf += (k_eff - 1) * jump
        start += ((k_eff - 1) / 2 - p) * jump
        jump *= s
        rows.append(
            {
                "layer": name,
                "kernel": k,
                "stride": s,
                "dilation": d,
                "padding": p,
                "rf": rf,
                "jump": jump,
                "start": start,
            }
        )
    return rows


def count_flops(model: nn.Module, example: torch.Tensor | Sequence[int]) -> int:
    """Multiply-accumulates (MACs) of the Conv2d and Linear layers for one forward pass.

    example: an input tensor or its full shape including the batch, e.g. ``(1, 3, 224, 224)``;
    the count is for the whole batch, so use a batch of 1 for "per image". A conv costs
    ``(C_in / groups) * k_h * k_w`` MACs per output value, a Linear ``in_features``; biases,
    norms, activations and pooling are ignored (they are a few percent). Papers and torchvision
    usually quote this number as "FLOPs" (ResNet-50: 4.09 G), although a MAC is two
    floating-point operations.
    """
    total = 0

    def add(name: str, module: nn.Module, output: object) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    _run_with_hooks(model, example, layers, add)
    return total
