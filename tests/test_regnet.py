"""course_utils.models.regnet: the RegNet rule against hand values, against torchvision's
BlockParams on every RegNet it ships (and random settings), and against the built networks."""

import random

import pytest
import torchvision
from torchvision.models.regnet import BlockParams

from course_utils.models import RegNetStages, regnet_block_widths, regnet_stages
from course_utils.models.regnet import _REGNET_QUANTUM

# torchvision's RegNets: (depth, w0, wa, wm, group_width), as in torchvision.models.regnet
TORCHVISION_REGNETS = {
    "regnet_y_400mf": (16, 48, 27.89, 2.09, 8),
    "regnet_y_800mf": (14, 56, 38.84, 2.4, 16),
    "regnet_y_1_6gf": (27, 48, 20.71, 2.65, 24),
    "regnet_y_3_2gf": (21, 80, 42.63, 2.66, 24),
    "regnet_y_8gf": (17, 192, 76.82, 2.19, 56),
    "regnet_y_16gf": (18, 200, 106.23, 2.48, 112),
    "regnet_y_32gf": (20, 232, 115.89, 2.53, 232),
    "regnet_y_128gf": (27, 456, 160.83, 2.52, 264),
    "regnet_x_400mf": (22, 24, 24.48, 2.54, 16),
    "regnet_x_800mf": (16, 56, 35.73, 2.28, 16),
    "regnet_x_1_6gf": (18, 80, 34.01, 2.25, 24),
    "regnet_x_3_2gf": (25, 88, 26.31, 2.25, 48),
    "regnet_x_8gf": (23, 80, 49.56, 2.88, 120),
    "regnet_x_16gf": (22, 216, 55.59, 2.1, 128),
    "regnet_x_32gf": (23, 320, 69.86, 2.0, 168),
}


def torchvision_stages(depth, w0, wa, wm, group_width, bottleneck_ratio=1.0) -> RegNetStages:
    params = BlockParams.from_init_params(
        depth=depth,
        w_0=w0,
        w_a=wa,
        w_m=wm,
        group_width=group_width,
        bottleneck_multiplier=bottleneck_ratio,
    )
    return RegNetStages(params.widths, params.depths, params.group_widths)


def test_regnet_y_400mf_by_hand():
    # u_j = 48 + 27.89 j: 48, 75.9, 103.8, ...; log(u_j / 48) / log(2.09) rounds to 0 for j = 0,
    # to 1 (48 * 2.09 = 100.3 -> 104) for j = 1..3, to 2 (209.7 -> 208) for j = 4..9, then to 3
    assert regnet_block_widths(48, 27.89, 2.09, 16) == [48] + [104] * 3 + [208] * 6 + [440] * 6
    assert regnet_stages(48, 27.89, 2.09, 16, group_width=8) == RegNetStages(
        widths=[48, 104, 208, 440], depths=[1, 3, 6, 6], group_widths=[8, 8, 8, 8]
    )


@pytest.mark.parametrize("name", TORCHVISION_REGNETS)
def test_same_stages_as_torchvision(name):
    depth, w0, wa, wm, group_width = TORCHVISION_REGNETS[name]
    ours = regnet_stages(w0, wa, wm, depth, group_width)
    assert ours == torchvision_stages(depth, w0, wa, wm, group_width)
    assert sum(ours.depths) == depth


def test_same_stages_as_torchvision_on_random_settings():
    # exact ties (w0 * wm**s / 8 landing on a half) can round either way in float32 and float64:
    # torchvision computes in float32, we in float64; a seeded sample of settings avoids them
    rng = random.Random(0)
    for _ in range(300):
        depth, w0 = rng.randint(1, 30), _REGNET_QUANTUM * rng.randint(1, 40)
        wa, wm = round(rng.uniform(0, 150), 2), round(rng.uniform(1.5, 3.0), 2)
        group_width = rng.choice([1, 2, 8, 16, 24, 48, 64, 128])
        ratio = rng.choice([0.25, 0.5, 1.0, 2.0])
        ours = regnet_stages(w0, wa, wm, depth, group_width, ratio)
        assert ours == torchvision_stages(depth, w0, wa, wm, group_width, ratio), (
            depth,
            w0,
            wa,
            wm,
            group_width,
            ratio,
        )


@pytest.mark.parametrize("name", ["regnet_y_400mf", "regnet_x_400mf", "regnet_y_800mf"])
def test_the_built_torchvision_network_has_our_stages(name):
    depth, w0, wa, wm, group_width = TORCHVISION_REGNETS[name]
    ours = regnet_stages(w0, wa, wm, depth, group_width)
    network = getattr(torchvision.models, name)()
    stages = list(network.trunk_output.children())
    assert [len(stage) for stage in stages] == ours.depths
    for stage, width, group in zip(stages, ours.widths, ours.group_widths):
        grouped = stage[0].f.b[0]  # the 3x3 grouped convolution of the stage's first block
        assert grouped.out_channels == width
        assert grouped.groups == width // group  # bottleneck ratio 1: width / group width groups


def test_properties_of_the_rule():
    widths = regnet_block_widths(24, 36.0, 2.5, 20)
    assert len(widths) == 20
    assert widths == sorted(widths)  # the line only goes up
    assert all(w % _REGNET_QUANTUM == 0 for w in widths)
    ratios = {b / a for a, b in zip(widths, widths[1:]) if b != a}
    assert all(2.0 < r < 3.0 for r in ratios)  # consecutive stages about wm = 2.5 apart


def test_a_flat_line_is_one_stage():
    assert regnet_stages(64, 0.0, 2.0, 5, group_width=16) == RegNetStages([64], [5], [16])


def test_a_group_wider_than_the_bottleneck_shrinks_to_it():
    # bottleneck 48 * 0.25 = 12 channels: one group of 12, not a group of 32
    stages = regnet_stages(48, 0.0, 2.0, 2, group_width=32, bottleneck_ratio=0.25)
    assert stages.group_widths == [12] and stages.widths == [48]


def test_the_bottleneck_is_rounded_to_whole_groups():
    # 104 channels in groups of 24: the bottleneck becomes 96 (4 groups; within 10 %)
    stages = regnet_stages(104, 0.0, 2.0, 1, group_width=24)
    assert stages.widths == [96] and stages.widths[0] % 24 == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"w0": 50}, "multiple of 8"),
        ({"w0": 0}, "multiple of 8"),
        ({"w0": 48.0}, "multiple of 8"),
        ({"wa": -1.0}, "wa"),
        ({"wm": 1.0}, "wm"),
        ({"depth": 0}, "depth"),
        ({"depth": 2.5}, "depth"),
        ({"group_width": 0}, "group_width"),
        ({"bottleneck_ratio": 0.0}, "bottleneck_ratio"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    settings = {"w0": 48, "wa": 27.89, "wm": 2.09, "depth": 16, "group_width": 8} | kwargs
    with pytest.raises(ValueError, match=match):
        regnet_stages(**settings)


def test_block_widths_check_their_input_too():
    with pytest.raises(ValueError, match="multiple of 8"):
        regnet_block_widths(12, 1.0, 2.0, 3)
    # u = 8, 16, 24, 32: powers of 2 at 0, 1, 1.58 and 2 steps, rounded to 0, 1, 2, 2
    assert regnet_block_widths(8, 8.0, 2.0, 4) == [8, 16, 32, 32]
