"""Lesson 02: the checkers of the exercises of ``02_cnn_architectures``.

Each checker builds or calls the learner's answer on a few cases and compares it with what the
course's :mod:`course_utils.models` computes; a wrong answer fails with a hint about the most
likely mistake (a redundant bias, a forgotten stride, a double-counted parameter...).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import models
from ..train import evaluating
from . import exercise


def _module(answer, what: str) -> nn.Module:
    assert isinstance(answer, nn.Module), (
        f"{what} should be an nn.Module (e.g. nn.Sequential(...)), got {type(answer).__name__}"
    )
    return answer


def _run(model: nn.Module, x: torch.Tensor, hint: str) -> torch.Tensor:
    """``model(x)`` in eval mode without gradients; a shape error becomes a hint."""
    try:
        with evaluating(model), torch.no_grad():
            return model(x)
    except (RuntimeError, ValueError) as err:  # mismatched channels or sizes
        raise AssertionError(f"{hint} (PyTorch says: {str(err).splitlines()[0]})") from None


def _count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def _vgg_block_params(c_in: int, c_out: int, num_convs: int) -> int:
    """3x3 convs without bias + BatchNorm (weight and bias per channel)."""
    convs = 9 * c_in * c_out + 9 * c_out * c_out * (num_convs - 1)
    return convs + 2 * c_out * num_convs


@exercise("02.1 a VGG block")
def check_vgg_block(vgg_block) -> None:
    """``vgg_block(in_channels, out_channels, num_convs) -> nn.Module``: ``num_convs`` x
    (3x3 conv, padding 1, no bias -> BatchNorm2d -> ReLU), then a 2x2 max-pool."""
    for c_in, c_out, num_convs in [(3, 16, 2), (16, 24, 3), (8, 8, 1)]:
        block = _module(vgg_block(c_in, c_out, num_convs), "the block")
        x = torch.randn(2, c_in, 12, 12, generator=torch.Generator().manual_seed(0))
        out = _run(
            block,
            x,
            f"vgg_block({c_in}, {c_out}, {num_convs}) fails on a [2, {c_in}, 12, 12] input: the "
            f"first conv takes in_channels, every later one out_channels",
        )
        where = f"vgg_block({c_in}, {c_out}, {num_convs})"
        assert out.ndim == 4 and out.shape[1] == c_out, (
            f"{where} gives {tuple(out.shape)}: expected {c_out} output channels"
        )
        size = tuple(out.shape[2:])
        if size == (12, 12):
            raise AssertionError(f"{where} keeps 12x12: end the block with nn.MaxPool2d(2)")
        if size != (6, 6):
            raise AssertionError(
                f"{where} turns 12x12 into {size[0]}x{size[1]}, expected 6x6: pad every 3x3 conv "
                "by 1 (padding=1) so that only the pool changes the size"
            )
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == num_convs, f"{where} has {len(convs)} Conv2d layers, not {num_convs}"
        assert all(c.kernel_size == (3, 3) for c in convs), "every conv of a VGG block is 3x3"
        assert _count(block, nn.BatchNorm2d) == num_convs, (
            f"{where} needs one BatchNorm2d after each conv ({num_convs}), "
            f"found {_count(block, nn.BatchNorm2d)}"
        )
        block.train()  # in training mode BatchNorm really normalises: a last BatchNorm shows
        with torch.no_grad():
            negative = (block(x) < 0).any() or (out < 0).any()
        assert _count(block, nn.ReLU) >= 1 and not negative, (
            f"{where} gives negative values: put a ReLU after each BatchNorm"
        )
        params = models.count_parameters(block)
        want = _vgg_block_params(c_in, c_out, num_convs)
        if params == want + c_out * num_convs:
            raise AssertionError(
                f"{where} has {params:,} parameters, {c_out * num_convs} too many: a conv "
                "followed by BatchNorm needs no bias (BatchNorm subtracts the mean, then adds its "
                "own beta), so use bias=False"
            )
        assert params == want, (
            f"{where} has {params:,} parameters, expected {want:,} = 9 * in * out for the first "
            "conv, 9 * out * out for each later one, 2 * out per BatchNorm"
        )


@exercise("02.2 the mini-VGG of the CIFAR-10 exercise")
def check_mini_vgg(mini_vgg) -> None:
    """``mini_vgg() -> nn.Module``: [B, 3, 32, 32] -> [B, 10]; 3 VGG blocks of two convs
    (3 -> 64 -> 128 -> 256), global average pooling, one Linear layer."""
    model = _module(mini_vgg(), "mini_vgg()")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = _run(model, x, "the network fails on a [2, 3, 32, 32] batch")
    assert tuple(out.shape) == (2, 10), f"output {tuple(out.shape)}, expected (2, 10) logits"
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    widths = [c.out_channels for c in convs]
    assert widths == [64, 64, 128, 128, 256, 256], (
        f"conv widths {widths}, expected two convs per block: 64, 64, 128, 128, 256, 256"
    )
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1, f"use a single Linear head, found {len(linears)} Linear layers"
    if linears[0].in_features != 256:
        raise AssertionError(
            f"the Linear layer takes {linears[0].in_features:,} features: average each of the "
            "256 final maps to one number (nn.AdaptiveAvgPool2d(1), then flatten), so the head "
            "needs only 256 inputs and the network accepts any image size"
        )
    bigger = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    _run(model, bigger, "with global average pooling a 48x48 image must work too")
    want = models.count_parameters(models.MiniVGG(10, 3, widths=(64, 128, 256)))
    params = models.count_parameters(model)
    if params == want + sum(widths):
        raise AssertionError(
            f"{params:,} parameters, {sum(widths):,} too many: the convs are followed by "
            "BatchNorm, so they need no bias (bias=False)"
        )
    assert params == want, f"{params:,} parameters, expected {want:,}"


def _rf(layers, *, stride: bool = True, dilation: bool = True, late_jump: bool = False) -> int:
    """The right receptive field, or one of the usual wrong ones (for the hints)."""
    rf, jump = 1, 1
    for k, s, d in layers:
        k_eff = (d if dilation else 1) * (k - 1) + 1
        if late_jump:
            jump *= s if stride else 1
        rf += (k_eff - 1) * jump
        if not late_jump:
            jump *= s if stride else 1
    return rf


@exercise("02.3 a receptive field calculator")
def check_receptive_field(receptive_field_size) -> None:
    """``receptive_field_size(layers) -> int`` for ``layers`` = [(kernel, stride, dilation), ...]."""
    cases = [
        [(3, 1, 1), (3, 1, 1)],  # two 3x3: 5
        [(3, 1, 1)] * 3,  # three 3x3: 7
        [(3, 2, 1), (3, 2, 1), (3, 1, 1)],  # strides: 15
        [(3, 1, 1), (3, 1, 2), (3, 1, 4)],  # dilations 1, 2, 4: 15
        [(11, 4, 1), (3, 2, 1), (5, 1, 1)],  # AlexNet's start: 51
        [(7, 2, 1), (3, 2, 1), (3, 1, 1), (3, 1, 2)],  # ResNet stem, then a dilated pair
    ]
    for layers in cases:
        got = receptive_field_size(list(layers))
        assert isinstance(got, (int, float)) and not isinstance(got, bool), (
            f"return a number (the side of the window), got {type(got).__name__}"
        )
        want = models.receptive_field(layers)[-1]["rf"]
        assert want == _rf(layers)
        if got == want:
            continue
        if got == _rf(layers, dilation=False):
            raise AssertionError(
                f"{layers}: got {got}, expected {want}. A kernel k with dilation d spans "
                "d * (k - 1) + 1 pixels: use that effective size"
            )
        if got == _rf(layers, stride=False) or got == _rf(layers, stride=False, dilation=False):
            raise AssertionError(
                f"{layers}: got {got}, expected {want}. The strides are missing: after a layer "
                "of stride s, neighbouring outputs are s input pixels apart, so every later "
                "kernel step covers jump = product of the earlier strides input pixels"
            )
        if got == _rf(layers, late_jump=True):
            raise AssertionError(
                f"{layers}: got {got}, expected {want}. A layer's stride affects the layers "
                "after it, not itself: add (k_eff - 1) * jump first, then jump *= stride"
            )
        raise AssertionError(
            f"{layers}: got {got}, expected {want}: start with rf = 1, jump = 1; per layer "
            "rf += (d * (k - 1)) * jump, then jump *= s"
        )


@exercise("02.4 parameters by layer type")
def check_count_by_type(count_by_type) -> None:
    """``count_by_type(model) -> {type name: (number of layers, number of parameters)}`` over
    the leaf modules (those without children), parameter-free layers included."""
    small_resnet = models.resnet_small(widths=(8, 16), blocks=(1, 2))
    for model in [models.MiniVGG(widths=(8, 16, 32)), small_resnet]:
        name = type(model).__name__
        got = count_by_type(model)
        assert isinstance(got, dict), f"return a dict, got {type(got).__name__}"
        leaves = [m for m in model.modules() if next(m.children(), None) is None]
        want: dict[str, tuple[int, int]] = {}
        for m in leaves:
            layers, params = want.get(type(m).__name__, (0, 0))
            want[type(m).__name__] = (layers + 1, params + models.count_parameters(m))
        containers = sorted(set(got) - set(want))
        if containers:
            raise AssertionError(
                f"{name}: {containers} are containers, not layers: skip modules that have "
                "children (next(m.children(), None) is not None), or their parameters count twice"
            )
        for key, value in got.items():
            assert isinstance(value, (tuple, list)) and len(value) == 2, (
                f"{name}: the value for {key!r} is {value!r}; expected a pair (layers, parameters)"
            )
        missing = sorted(set(want) - set(got))
        if missing:
            raise AssertionError(
                f"{name}: {missing} are missing: count the layers without parameters too "
                "(with 0 parameters)"
            )
        total = sum(value[1] for value in got.values())
        assert total == models.count_parameters(model), (
            f"{name}: the parameters add up to {total:,}, but the model has "
            f"{models.count_parameters(model):,}: count each leaf's own parameters once"
        )
        for key, (layers, params) in want.items():
            assert tuple(got[key]) == (layers, params), (
                f"{name}: {key} should be ({layers}, {params:,}), got {tuple(got[key])}"
            )


@exercise("02.5 what a 1x1 bottleneck saves")
def check_bottleneck_macs(bottleneck_macs) -> None:
    """``bottleneck_macs(h, w, c_in, c_mid, c_out, k) -> (direct, with_bottleneck)``:
    multiply-accumulates of a k x k conv c_in -> c_out ("same" padding, stride 1) on an h x w
    map, and of a 1x1 conv c_in -> c_mid followed by the k x k conv c_mid -> c_out."""
    for h, w, c_in, c_mid, c_out, k in [
        (28, 28, 192, 16, 32, 5),  # GoogLeNet 3a, 5x5 branch
        (14, 14, 256, 64, 256, 5),
        (7, 9, 64, 8, 16, 3),
    ]:
        got = bottleneck_macs(h, w, c_in, c_mid, c_out, k)
        assert isinstance(got, (tuple, list)) and len(got) == 2, (
            f"return a pair (direct, with_bottleneck), got {got!r}"
        )
        shape = (1, c_in, h, w)
        direct = models.count_flops(nn.Conv2d(c_in, c_out, k, padding=k // 2), shape)
        reduced = models.count_flops(
            nn.Sequential(nn.Conv2d(c_in, c_mid, 1), nn.Conv2d(c_mid, c_out, k, padding=k // 2)),
            shape,
        )
        case = f"bottleneck_macs({h}, {w}, {c_in}, {c_mid}, {c_out}, {k})"
        if tuple(got) == (direct // (h * w), reduced // (h * w)):
            raise AssertionError(
                f"{case}: those are the costs of one output pixel; multiply by the h * w pixels"
            )
        assert got[0] == direct, (
            f"{case}: direct = {got[0]:,}, expected {direct:,} = h * w * c_out * (c_in * k * k)"
        )
        if got[1] == reduced - h * w * c_in * c_mid:
            raise AssertionError(
                f"{case}: the 1x1 conv is not free: add its h * w * c_in * c_mid multiply-adds"
            )
        assert got[1] == reduced, (
            f"{case}: with_bottleneck = {got[1]:,}, expected {reduced:,} "
            "(1x1 conv c_in -> c_mid, then k x k conv c_mid -> c_out, each on h * w pixels)"
        )
