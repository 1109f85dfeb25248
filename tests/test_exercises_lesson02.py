import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed
from torch import nn

from course_utils import models
from course_utils.exercises import lesson02

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def vgg_block(c_in, c_out, num_convs, bias=False, pad=1, pool=True, bn=True, relu_first=False):
    layers = []
    for i in range(num_convs):
        layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=pad, bias=bias))
        norm_act = [nn.BatchNorm2d(c_out)] if bn else []
        norm_act = [nn.ReLU(), *norm_act] if relu_first else [*norm_act, nn.ReLU()]
        layers += norm_act
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def mini_vgg(bias=False, head_in=None):
    blocks = [vgg_block(3, 64, 2, bias), vgg_block(64, 128, 2, bias)]
    blocks.append(vgg_block(128, 256, 2, bias, pool=False))
    if head_in is None:
        return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(head_in, 10))


def receptive_field_size(layers):
    rf, jump = 1, 1
    for k, s, d in layers:
        rf += d * (k - 1) * jump
        jump *= s
    return rf


def count_by_type(model):
    counts = {}
    for m in model.modules():
        if next(m.children(), None) is None:
            layers, params = counts.get(type(m).__name__, (0, 0))
            counts[type(m).__name__] = (layers + 1, params + models.count_parameters(m))
    return counts


def bottleneck_macs(h, w, c_in, c_mid, c_out, k):
    return h * w * c_out * c_in * k * k, h * w * (c_in * c_mid + c_mid * c_out * k * k)


CHECKS = {
    "02.1 a VGG block": (lesson02.check_vgg_block, vgg_block),
    "02.2 the mini-VGG of the CIFAR-10 exercise": (lesson02.check_mini_vgg, mini_vgg),
    "02.3 a receptive field calculator": (lesson02.check_receptive_field, receptive_field_size),
    "02.4 parameters by layer type": (lesson02.check_count_by_type, count_by_type),
    "02.5 what a 1x1 bottleneck saves": (lesson02.check_bottleneck_macs, bottleneck_macs),
}


def test_right_answers_pass_and_are_recorded():
    assert_right_answers_pass(CHECKS)


def test_other_right_answers_pass():
    """The course's own building blocks are right answers too."""
    assert lesson02.check_vgg_block(
        lambda c_in, c_out, n: models.VGGBlock(c_in, c_out, n, batch_norm=True)
    ).passed
    assert lesson02.check_mini_vgg(lambda: models.MiniVGG(10, 3, widths=(64, 128, 256))).passed
    assert lesson02.check_receptive_field(
        lambda layers: models.receptive_field(layers)[-1]["rf"]
    ).passed


@pytest.mark.parametrize("name", list(CHECKS))
def test_stubs_are_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


# ------------------------------------------------------------------ wrong answers and their hints


def test_vgg_block_hints():
    check = lesson02.check_vgg_block
    failed(check(lambda *a: vgg_block(*a, bias=True)), "bias=False")
    failed(check(lambda *a: vgg_block(*a, pad=0)), "padding=1")
    failed(check(lambda *a: vgg_block(*a, pool=False)), "MaxPool2d(2)")
    failed(check(lambda *a: vgg_block(*a, bn=False)), "BatchNorm2d")
    failed(check(lambda *a: vgg_block(*a, relu_first=True)), "ReLU after each BatchNorm")
    failed(check(lambda c_in, c_out, n: vgg_block(c_in, c_in, n)), "output channels")
    failed(check(lambda c_in, c_out, n: "a block"), "nn.Module")

    def wrong_inputs(c_in, c_out, n):  # every conv takes in_channels
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False) for _ in range(n)]
        return nn.Sequential(*layers, nn.MaxPool2d(2))

    failed(check(wrong_inputs), "every later one out_channels")


def test_mini_vgg_hints():
    check = lesson02.check_mini_vgg
    failed(check(lambda: mini_vgg(bias=True)), "bias=False")
    failed(check(lambda: mini_vgg(head_in=256 * 8 * 8)), "AdaptiveAvgPool2d(1)")
    failed(check(lambda: models.MiniVGG(10, 3, widths=(32, 64, 128))), "64, 64, 128")
    failed(check(lambda: models.MiniVGG(10, 1, widths=(64, 128, 256))), "fails on")
    failed(check(lambda: nn.Sequential(mini_vgg(), nn.Linear(10, 10))), "single Linear")


def test_receptive_field_hints():
    check = lesson02.check_receptive_field

    def no_stride(layers):
        return 1 + sum(d * (k - 1) for k, s, d in layers)

    def no_dilation(layers):
        return receptive_field_size([(k, s, 1) for k, s, d in layers])

    def late_jump(layers):
        rf, jump = 1, 1
        for k, s, d in layers:
            jump *= s
            rf += d * (k - 1) * jump
        return rf

    failed(check(no_stride), "strides are missing")
    failed(check(lambda layers: sum(k for k, s, d in layers)), "start with rf = 1")
    failed(check(no_dilation), "d * (k - 1) + 1")
    failed(check(late_jump), "then jump *= stride")
    failed(check(lambda layers: receptive_field_size(layers) + 1), "start with rf = 1")
    failed(check(lambda layers: str(receptive_field_size(layers))), "return a number")


def test_count_by_type_hints():
    check = lesson02.check_count_by_type

    def with_containers(model):
        counts = {}
        for m in model.modules():
            layers, params = counts.get(type(m).__name__, (0, 0))
            counts[type(m).__name__] = (layers + 1, params + models.count_parameters(m))
        return counts

    def only_with_params(model):
        return {k: v for k, v in count_by_type(model).items() if v[1] > 0}

    def params_only(model):
        return models.count_by_type(model)

    def double_counted(model):
        counts = count_by_type(model)
        layers, params = counts["Conv2d"]
        return counts | {"Conv2d": (layers, 2 * params)}

    def wrong_layer_count(model):
        counts = count_by_type(model)
        return counts | {"ReLU": (1, 0)}

    failed(check(with_containers), "containers")
    failed(check(only_with_params), "without parameters too")
    failed(check(params_only), "a pair (layers, parameters)")
    failed(check(double_counted), "count each leaf's own parameters once")
    failed(check(wrong_layer_count), "ReLU should be")
    failed(check(lambda model: list(count_by_type(model).items())), "return a dict")


def test_bottleneck_hints():
    check = lesson02.check_bottleneck_macs

    def per_pixel(h, w, c_in, c_mid, c_out, k):
        return c_out * c_in * k * k, c_in * c_mid + c_mid * c_out * k * k

    def free_reduce(h, w, c_in, c_mid, c_out, k):
        return bottleneck_macs(h, w, c_in, c_mid, c_out, k)[0], h * w * c_mid * c_out * k * k

    failed(check(per_pixel), "h * w pixels")
    failed(check(free_reduce), "1x1 conv is not free")
    failed(check(lambda *a: (1, 2)), "direct =")
    failed(check(lambda *a: bottleneck_macs(*a)[0]), "pair")
    failed(
        check(lambda *a: (bottleneck_macs(*a)[0], bottleneck_macs(*a)[1] + 1)), "with_bottleneck"
    )


def test_checked_numbers_match_the_course():
    """The checkers' reference numbers agree with the course's tools on a known case."""
    assert lesson02._vgg_block_params(3, 16, 2) == models.count_parameters(
        models.VGGBlock(3, 16, 2, batch_norm=True)
    )
    assert lesson02._rf([(3, 1, 1)] * 3) == 7
    direct, reduced = bottleneck_macs(28, 28, 192, 16, 32, 5)
    assert direct == 120_422_400 and reduced == 12_443_648
    assert torch.is_tensor(torch.zeros(1))  # (keeps the torch import used for the ruff check)
