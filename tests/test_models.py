"""Tests for course_utils.models: shapes, input errors, gradients, torchvision parity, tools."""

import math

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models.convnext import CNBlock

from course_utils.models import (
    EFFICIENTNET_SCALING,
    TORCHVISION_ALEXNET_WIDTHS,
    VGG16,
    AlexNet,
    BottleneckBlock,
    ConvNeXtBlock,
    EfficientNetB0,
    InceptionModule,
    LeNet5,
    MBConvBlock,
    MiniVGG,
    ResidualBlock,
    ResNet,
    SEBlock,
    StochasticDepth,
    VGGBlock,
    compound_scaling,
    count_by_type,
    count_flops,
    count_parameters,
    efficientnet,
    format_table,
    receptive_field,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet_small,
    trace_shapes,
)

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def vgg16():
    return VGG16()


@pytest.fixture(scope="module")
def alexnet():
    return AlexNet()


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


# ---------------------------------------------------------------------------------- shapes ---

# (factory, input shape, output shape): every model and block at its documented input size.
SMALL_CASES = {
    "lenet5": (lambda: LeNet5(), (2, 1, 32, 32), (2, 10)),
    "lenet5_rgb": (lambda: LeNet5(num_classes=5, in_channels=3), (2, 3, 32, 32), (2, 5)),
    "minivgg_8": (lambda: MiniVGG(), (2, 1, 8, 8), (2, 10)),
    "minivgg_cifar": (
        lambda: MiniVGG(in_channels=3, widths=(64, 128, 256)),
        (2, 3, 32, 32),
        (2, 10),
    ),
    "resnet_small_8": (lambda: resnet_small(), (2, 1, 8, 8), (2, 10)),
    "resnet_small_32": (lambda: resnet_small(num_classes=4, in_channels=3), (2, 3, 32, 32), (2, 4)),
    "resnet18": (lambda: resnet18(num_classes=7), (2, 3, 64, 64), (2, 7)),
    "resnet50_1ch": (lambda: resnet50(num_classes=3, in_channels=1), (2, 1, 64, 64), (2, 3)),
    "efficientnet_b0": (lambda: EfficientNetB0(num_classes=5), (2, 3, 64, 64), (2, 5)),
    "vgg_block": (lambda: VGGBlock(3, 8, 2), (2, 3, 16, 16), (2, 8, 8, 8)),
    "inception_3a": (
        lambda: InceptionModule(192, 64, 96, 128, 16, 32, 32),
        (2, 192, 28, 28),
        (2, 256, 28, 28),
    ),
    "residual_stride2": (lambda: ResidualBlock(16, 32, stride=2), (2, 16, 9, 9), (2, 32, 5, 5)),
    "residual_identity": (lambda: ResidualBlock(16, 16), (2, 16, 8, 8), (2, 16, 8, 8)),
    "bottleneck": (lambda: BottleneckBlock(64, 16, stride=2), (2, 64, 8, 8), (2, 64, 4, 4)),
    "se": (lambda: SEBlock(24, 6), (2, 24, 5, 5), (2, 24, 5, 5)),
    "mbconv_stride2": (lambda: MBConvBlock(16, 24, 6, 3, 2), (2, 16, 8, 8), (2, 24, 4, 4)),
    "mbconv_residual": (lambda: MBConvBlock(24, 24, 6, 5, 1), (2, 24, 8, 8), (2, 24, 8, 8)),
    "convnext": (lambda: ConvNeXtBlock(32), (2, 32, 7, 7), (2, 32, 7, 7)),
}


@pytest.mark.parametrize("case", SMALL_CASES)
def test_output_shape_and_gradient_reaches_first_conv(case):
    torch.manual_seed(0)
    factory, in_shape, out_shape = SMALL_CASES[case]
    model = factory()
    out = model(torch.randn(in_shape))
    assert out.shape == out_shape
    out.square().sum().backward()
    grad = first_conv(model).weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.slow
def test_alexnet_shape_and_gradient(alexnet):
    out = alexnet(torch.randn(1, 3, 227, 227))
    assert out.shape == (1, 1000)
    out.square().sum().backward()
    assert alexnet.features[0].weight.grad.abs().sum() > 0
    alexnet.zero_grad(set_to_none=True)


@pytest.mark.slow
def test_vgg16_shape_and_gradient(vgg16):
    out = vgg16(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    out.square().sum().backward()
    assert vgg16.features[0][0].weight.grad.abs().sum() > 0
    vgg16.zero_grad(set_to_none=True)


def test_small_resnet_keeps_resolution_until_the_stages():
    model = resnet_small(widths=(8, 16), blocks=(2, 1))
    rows = trace_shapes(model, (1, 1, 8, 8))
    shapes = {row["name"]: row["output_shape"] for row in rows}
    assert shapes["maxpool"] == (1, 8, 8, 8)
    assert shapes["layer2.0.bn2"] == (1, 16, 4, 4)
    assert not hasattr(model, "layer3")
    assert len(model.layer1) == 2


# ------------------------------------------------------------------------------ bad inputs ---


@pytest.mark.parametrize(
    ("factory", "shape", "message"),
    [
        (LeNet5, (1, 1, 28, 28), r"LeNet5 takes 32x32 images, got 28x28"),
        (LeNet5, (1, 3, 32, 32), r"LeNet5 takes 1-channel images, got 3 channels"),
        (LeNet5, (1, 32, 32), r"images \[B, C, H, W\].*unsqueeze"),
        (MiniVGG, (1, 1, 1, 1), r"at least 2x2"),
        (MiniVGG, (1, 3, 8, 8), r"MiniVGG takes 1-channel images, got 3 channels"),
        (resnet_small, (1, 3, 8, 8), r"ResNet takes 1-channel images"),
        (
            lambda: InceptionModule(8, 4, 4, 4, 4, 4, 4),
            (1, 6, 5, 5),
            r"InceptionModule takes 8-channel images",
        ),
        (lambda: ResidualBlock(8, 8), (1, 4, 5, 5), r"ResidualBlock takes 8-channel images"),
        (lambda: BottleneckBlock(8, 2), (1, 4, 5, 5), r"BottleneckBlock takes 8-channel images"),
        (lambda: MBConvBlock(8, 8, 6, 3, 1), (1, 4, 5, 5), r"MBConvBlock takes 8-channel images"),
        (lambda: SEBlock(8, 2), (1, 4, 5, 5), r"SEBlock takes 8-channel images"),
        (lambda: ConvNeXtBlock(8), (1, 4, 5, 5), r"ConvNeXtBlock takes 8-channel images"),
        (lambda: VGGBlock(3, 8, 1), (1, 1, 5, 5), r"VGGBlock takes 3-channel images"),
        (EfficientNetB0, (1, 1, 32, 32), r"EfficientNet takes 3-channel images"),
    ],
)
def test_wrong_input_raises_a_clear_error(factory, shape, message):
    with pytest.raises(ValueError, match=message):
        factory()(torch.zeros(shape))


def test_alexnet_rejects_224(alexnet):
    with pytest.raises(
        ValueError, match=r"AlexNet takes 227x227 images, got 224x224.*size=\(227, 227\)"
    ):
        alexnet(torch.zeros(1, 3, 224, 224))


def test_vgg16_rejects_other_sizes(vgg16):
    with pytest.raises(ValueError, match=r"VGG16 takes 224x224 images, got 32x32"):
        vgg16(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ResNet(ResidualBlock, [1, 1], stem="cifar"), "stem must be"),
        (lambda: ResNet(ResidualBlock, [1, 1], widths=(8, 16, 32)), "one width per stage"),
        (lambda: ResNet(ResidualBlock, [1, 0], widths=(8, 16)), "at least one block"),
        (lambda: AlexNet(widths=(64, 192, 384)), "5 conv layers"),
        (lambda: MiniVGG(widths=()), "at least one block"),
        (lambda: MBConvBlock(8, 8, 6, 3, stride=3), "stride must be 1 or 2"),
        (lambda: efficientnet("b9"), "variant must be one of"),
        (lambda: StochasticDepth(1.0), r"\[0, 1\)"),
    ],
)
def test_bad_constructor_arguments_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# ---------------------------------------------------------------------- torchvision parity ---


@pytest.mark.parametrize(
    ("ours", "theirs", "params"),
    [
        (resnet18, torchvision.models.resnet18, 11_689_512),
        (resnet34, torchvision.models.resnet34, 21_797_672),
        (resnet50, torchvision.models.resnet50, 25_557_032),
        (resnet101, torchvision.models.resnet101, 44_549_160),
    ],
)
def test_resnet_matches_torchvision(ours, theirs, params):
    torch.manual_seed(0)
    model, reference = ours(), theirs(weights=None)
    assert count_parameters(model) == count_parameters(reference) == params
    # Give BatchNorm non-trivial running statistics so that the eval-mode comparison tests them.
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


def test_efficientnet_b0_matches_torchvision():
    torch.manual_seed(0)
    model, reference = EfficientNetB0(), torchvision.models.efficientnet_b0(weights=None)
    assert count_parameters(model) == count_parameters(reference) == 5_288_548
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    reference.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["b1", "b2", "b3"])
def test_scaled_efficientnets_have_torchvision_parameter_counts(variant):
    reference = getattr(torchvision.models, f"efficientnet_{variant}")(weights=None)
    model = efficientnet(variant)
    assert count_parameters(model) == count_parameters(reference)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_mbconv_squeezes_from_the_block_input_width():
    block = MBConvBlock(16, 24, expand_ratio=6, kernel_size=3, stride=2)
    se = block.block[2]
    assert isinstance(se, SEBlock)
    assert (se.fc1.in_channels, se.fc1.out_channels) == (96, 4)  # not 96 // 4 = 24
    # Without SE the block loses exactly the SE parameters: 96*4 + 4 + 4*96 + 96.
    no_se = MBConvBlock(16, 24, expand_ratio=6, kernel_size=3, stride=2, se_ratio=0)
    assert count_parameters(block) - count_parameters(no_se) == 96 * 4 + 4 + 4 * 96 + 96
    # expand_ratio = 1 has no expansion conv: depthwise, SE, projection.
    assert len(MBConvBlock(32, 16, expand_ratio=1, kernel_size=3, stride=1).block) == 3


def test_vgg16_has_torchvision_parameter_count(vgg16):
    assert count_parameters(vgg16) == 138_357_544
    assert count_parameters(torchvision.models.vgg16(weights=None)) == 138_357_544


@pytest.mark.slow
def test_vgg16_computes_like_torchvision_with_its_weights(vgg16):
    # Our blocks nest the layers (features.<block>.<layer>) where torchvision's list is flat, and
    # our classifier starts with its Flatten; in order, the tensors are the same one for one.
    torch.manual_seed(0)
    reference = torchvision.models.vgg16(weights=None).eval()
    ours, theirs = vgg16.state_dict(), reference.state_dict()
    assert list(ours)[:4] == [
        "features.0.0.weight",
        "features.0.0.bias",
        "features.0.2.weight",
        "features.0.2.bias",
    ]
    assert list(ours)[-2:] == ["classifier.7.weight", "classifier.7.bias"]
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]
    vgg16.load_state_dict(dict(zip(ours, theirs.values())), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(vgg16.eval()(x), reference(x), atol=1e-5, rtol=1e-5)


def test_alexnet_counts_and_the_torchvision_variant(alexnet):
    assert count_parameters(alexnet) == 62_378_344
    assert count_parameters(AlexNet(lrn=False)) == 62_378_344  # LRN has no parameters
    reference = torchvision.models.alexnet(weights=None)
    variant = AlexNet(widths=TORCHVISION_ALEXNET_WIDTHS, lrn=False)
    assert count_parameters(variant) == count_parameters(reference) == 61_100_840
    variant.load_state_dict(reference.state_dict(), strict=True)  # same layers, same shapes
    ours, theirs = count_by_type(alexnet), count_by_type(reference)
    assert ours["Linear"] == theirs["Linear"] == 58_631_144
    assert ours["Conv2d"] - theirs["Conv2d"] == 62_378_344 - 61_100_840 == 1_277_504


def test_convnext_block_matches_torchvision_cnblock():
    torch.manual_seed(0)
    reference = CNBlock(16, layer_scale=0.5, stochastic_depth_prob=0.0)
    ours = ConvNeXtBlock(16, layer_scale_init=0.5)
    assert count_parameters(ours) == count_parameters(reference)
    renamed = {"block.0": "dwconv", "block.2": "norm", "block.3": "pwconv1", "block.5": "pwconv2"}
    state = {}
    for key, value in reference.state_dict().items():
        if key == "layer_scale":
            state["gamma"] = value.flatten()
        else:
            prefix, leaf = key.rsplit(".", 1)
            state[f"{renamed[prefix]}.{leaf}"] = value
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), atol=1e-5, rtol=1e-5)


def test_convnext_block_starts_near_identity_and_layer_scale_is_optional():
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(ConvNeXtBlock(8)(x), x, atol=1e-4, rtol=0)
    assert ConvNeXtBlock(8, layer_scale_init=0).gamma is None
    assert count_parameters(ConvNeXtBlock(8)) - count_parameters(ConvNeXtBlock(8, 0)) == 8


def test_lenet5_has_the_classic_parameter_count():
    assert count_parameters(LeNet5()) == 61_706
    assert count_parameters(LeNet5(num_classes=10, in_channels=3)) == 61_706 + 2 * 6 * 25


def test_inception_module_parameters_by_hand():
    module = InceptionModule(192, 64, 96, 128, 16, 32, 32)
    by_hand = (
        (192 * 64 + 64)
        + (192 * 96 + 96)
        + (96 * 128 * 9 + 128)
        + (192 * 16 + 16)
        + (16 * 32 * 25 + 32)
        + (192 * 32 + 32)
    )
    assert count_parameters(module) == by_hand == 163_696
    assert module.out_channels == 256


# ------------------------------------------------------------------ stochastic depth ---


def test_stochastic_depth_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    layer = StochasticDepth(0.25)
    x = torch.ones(4000, 3, 2, 2)
    y = layer(x)
    per_sample = y.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 1 / 0.75).all(1)
    assert bool((dropped | kept).all())  # each sample is all dropped or all kept and rescaled
    assert abs(dropped.float().mean().item() - 0.25) < 0.03
    assert abs(y.mean().item() - 1.0) < 0.05
    assert torch.equal(layer.eval()(x), x)


# ----------------------------------------------------------------------- compound scaling ---


def test_compound_scaling():
    assert compound_scaling(0) == (1.0, 1.0, 1.0)
    assert compound_scaling(1) == pytest.approx((1.2, 1.1, 1.15))
    for phi in (1, 2.5, 7):
        d, w, r = compound_scaling(phi)
        assert d * w**2 * r**2 == pytest.approx(1.92027**phi, rel=1e-4)  # ~2 ** phi
    with pytest.raises(ValueError, match="alpha, beta, gamma >= 1"):
        compound_scaling(1, alpha=0.9)
    with pytest.raises(ValueError, match="phi >= 0"):
        compound_scaling(-1)


def test_efficientnet_scaling_table():
    assert list(EFFICIENTNET_SCALING) == [f"b{i}" for i in range(8)]
    assert EFFICIENTNET_SCALING["b0"] == {
        "phi": 0,
        "width": 1.0,
        "depth": 1.0,
        "resolution": 224,
        "dropout": 0.2,
    }
    assert EFFICIENTNET_SCALING["b7"]["resolution"] == 600
    for key in ("width", "depth", "resolution", "dropout"):
        values = [c[key] for c in EFFICIENTNET_SCALING.values()]
        assert values == sorted(values)  # bigger models scale everything up
    assert efficientnet("b3").input_size == (3, 300, 300)


# --------------------------------------------------------------------------- count_by_type ---


def test_count_by_type_by_hand():
    model = MiniVGG(num_classes=3, in_channels=1, widths=(4, 8))
    conv = 1 * 4 * 9 + 4 * 4 * 9 + 4 * 8 * 9 + 8 * 8 * 9  # no bias before BatchNorm
    assert count_by_type(model) == {
        "Conv2d": conv,
        "BatchNorm2d": 2 * (4 + 4 + 8 + 8),
        "Linear": 27,
    }
    assert list(count_by_type(model)) == ["Conv2d", "BatchNorm2d", "Linear"]  # largest first


def test_count_by_type_counts_direct_and_shared_parameters_once():
    block = ConvNeXtBlock(4)
    assert count_by_type(block) == {
        "Linear": (4 * 16 + 16) + (16 * 4 + 4),
        "Conv2d": 4 * 49 + 4,
        "LayerNorm": 8,
        "ConvNeXtBlock": 4,  # gamma belongs to the block itself
    }
    linear = nn.Linear(3, 3)
    tied = nn.Sequential(linear, nn.ReLU(), linear)
    assert count_by_type(tied) == {"Linear": 12} and count_parameters(tied) == 12


def test_count_parameters_trainable_only():
    model = resnet_small()
    for p in model.conv1.parameters():
        p.requires_grad_(False)
    frozen = model.conv1.weight.numel()
    assert count_parameters(model) - count_parameters(model, trainable_only=True) == frozen


# ---------------------------------------------------------------------------- trace_shapes ---


def test_trace_shapes_on_lenet5():
    model = LeNet5().train()
    model.features.c1.eval()  # a mixed train/eval state must survive the trace
    rows = trace_shapes(model, (1, 1, 32, 32))
    assert [(r["name"], r["output_shape"]) for r in rows] == [
        ("features.c1", (1, 6, 28, 28)),
        ("features.act1", (1, 6, 28, 28)),
        ("features.s2", (1, 6, 14, 14)),
        ("features.c3", (1, 16, 10, 10)),
        ("features.act3", (1, 16, 10, 10)),
        ("features.s4", (1, 16, 5, 5)),
        ("features.c5", (1, 120, 1, 1)),
        ("features.act5", (1, 120, 1, 1)),
        ("classifier.flatten", (1, 120)),
        ("classifier.f6", (1, 84)),
        ("classifier.act6", (1, 84)),
        ("classifier.output", (1, 10)),
    ]
    assert rows[0]["type"] == "Conv2d" and rows[0]["params"] == 6 * 25 + 6
    assert sum(r["params"] for r in rows) == 61_706
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training and not model.features.c1.training and model.features.c3.training


def test_trace_shapes_counts_a_reused_module_once():
    rows = trace_shapes(resnet18(), torch.zeros(1, 3, 32, 32))
    assert sum(r["params"] for r in rows) == 11_689_512
    relu_calls = [r for r in rows if r["name"] == "layer1.0.relu"]
    assert len(relu_calls) == 2  # torchvision-style blocks call one ReLU twice
    linear = nn.Linear(3, 3)
    tied = trace_shapes(nn.Sequential(linear, nn.ReLU(), linear), (2, 3))
    assert [(r["name"], r["params"]) for r in tied] == [("0", 12), ("1", 0), ("0", 0)]


def test_format_table():
    text = format_table([{"name": "conv", "params": 1234}, {"name": "fc", "params": 5}])
    assert text.splitlines() == [
        "name  params",
        "----  ------",
        "conv   1,234",
        "fc         5",
    ]
    assert format_table([]) == ""


# ------------------------------------------------------------------------ receptive_field ---


@pytest.mark.parametrize(
    ("layers", "rf", "jump"),
    [
        ([(3, 1, 1)] * 2, 5, 1),
        ([(3, 1, 1)] * 3, 7, 1),
        ([(3, 1, 2)], 5, 1),
        ([(3, 2, 1), (3, 1, 1)], 7, 2),  # after stride 2, each tap is 2 input pixels apart
        ([(2, 2, 1), (2, 2, 1), (3, 1, 1)], 12, 4),
        ([(3, 1, 1), (3, 1, 2), (3, 1, 4)], 15, 1),  # dilations 1, 2, 4: exponential growth
    ],
)
def test_receptive_field_known_cases(layers, rf, jump):
    last = receptive_field(layers)[-1]
    assert (last["rf"], last["jump"]) == (rf, jump)


def test_receptive_field_of_classic_networks(alexnet, vgg16):
    lenet = receptive_field(LeNet5().features)
    assert [r["rf"] for r in lenet] == [5, 6, 14, 16, 32]  # c5 sees the whole 32x32 input
    assert [r["layer"] for r in lenet] == ["c1", "s2", "c3", "s4", "c5"]
    assert receptive_field(alexnet.features)[-1]["rf"] == 195
    assert receptive_field(vgg16.features)[-1]["rf"] == 212


def empirical_receptive_field(net: nn.Sequential, size: int, index: int) -> tuple[int, float]:
    """Extent and centre of the input pixels that output pixel (index, index) depends on."""
    for m in net.modules():  # positive weights: no accidental cancellation in the gradient
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 1.0)
            nn.init.zeros_(m.bias)
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)  # ReLUs stay open
    net.double()(x)[0, 0, index, index].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero().flatten()
    lo, hi = rows.min().item(), rows.max().item()
    return hi - lo + 1, (lo + hi) / 2


def test_receptive_field_matches_the_gradient_of_one_output_pixel():
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(1, 1, 3, stride=2),
        nn.AvgPool2d(2),
        nn.Conv2d(1, 1, 3, dilation=2, padding=1),
        nn.Conv2d(1, 1, 2, stride=2),
    )
    last = receptive_field(net)[-1]
    assert (last["rf"], last["jump"], last["start"]) == (27, 8, 8.0)
    extent, centre = empirical_receptive_field(net, size=64, index=2)
    assert extent == last["rf"]
    assert centre == last["start"] + 2 * last["jump"]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([1, 2, 3, 5]), st.integers(1, 2), st.integers(1, 3)),
        min_size=1,
        max_size=4,
    )
)
def test_receptive_field_property(layers):
    net = nn.Sequential(*[nn.Conv2d(1, 1, k, stride=s, dilation=d) for k, s, d in layers])
    rows = receptive_field(net)
    assert [(r["kernel"], r["stride"], r["dilation"]) for r in rows] == layers
    assert receptive_field(layers)[-1] == {**rows[-1], "layer": len(layers) - 1}
    last = rows[-1]
    # No padding: output pixel 0 sees input pixels 0 .. rf - 1.
    extent, centre = empirical_receptive_field(net, size=last["rf"], index=0)
    assert (extent, centre) == (last["rf"], last["start"])


def test_receptive_field_rejects_what_it_cannot_follow():
    with pytest.raises(ValueError, match="ResidualBlock.*may branch"):
        receptive_field(resnet18().layer1)
    with pytest.raises(ValueError, match="'1' is a Linear"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="square"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, (3, 5))))
    with pytest.raises(ValueError, match=r"\(kernel, stride, dilation\[, padding\]\)"):
        receptive_field([(3, 1)])
    with pytest.raises(ValueError, match="at least one"):
        receptive_field(nn.Sequential(nn.ReLU()))


# ------------------------------------------------------------------------------ count_flops ---


def test_count_flops_of_single_layers():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)  # 32x32 -> 16x16
    assert count_flops(conv, (1, 3, 32, 32)) == 8 * 16 * 16 * 3 * 3 * 3
    assert count_flops(conv, (2, 3, 32, 32)) == 2 * 8 * 16 * 16 * 3 * 3 * 3
    depthwise = nn.Conv2d(8, 8, kernel_size=5, padding=2, groups=8)
    assert count_flops(depthwise, (1, 8, 10, 10)) == 8 * 10 * 10 * 5 * 5
    assert count_flops(nn.Linear(20, 7), torch.zeros(4, 20)) == 4 * 7 * 20


def test_count_flops_shows_the_inception_bottleneck_saving():
    # The 5x5 branch of a 256-channel module, with and without the 1x1 reduction to 64.
    direct = nn.Conv2d(256, 256, 5, padding=2)
    reduced = nn.Sequential(nn.Conv2d(256, 64, 1), nn.Conv2d(64, 256, 5, padding=2))
    per_pixel = [count_flops(m, (1, 256, 1, 1)) for m in (direct, reduced)]
    assert per_pixel == [1_638_400, 425_984]


@pytest.mark.parametrize(
    ("build", "weights"),
    [
        (resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
        (resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
        (EfficientNetB0, torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1),
    ],
)
def test_count_flops_matches_torchvision_published_gflops(build, weights):
    # torchvision's "_ops" metadata (quoted as GFLOPS) counts multiply-accumulates, like we do.
    macs = count_flops(build(), (1, 3, 224, 224))
    assert round(macs / 1e9, 3) == weights.meta["_ops"]


def test_depthwise_separable_is_cheaper():
    full = nn.Conv2d(64, 128, 3, padding=1, bias=False)
    separable = nn.Sequential(
        nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), nn.Conv2d(64, 128, 1, bias=False)
    )
    ratio = count_flops(full, (1, 64, 8, 8)) / count_flops(separable, (1, 64, 8, 8))
    assert ratio == pytest.approx(9 * 128 / (9 + 128))
    assert math.isclose(count_parameters(full) / count_parameters(separable), ratio)
