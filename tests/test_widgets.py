"""Tests for course_utils.widgets: move a slider the way a learner would, and check what the
figure shows changed as the lesson says it does."""

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from course_utils import data, image, seed_everything
from course_utils.detection import batched_nms
from course_utils.diffusion import Condition, ConditionalUNet, NoiseSchedule, q_sample, sample_ddim
from course_utils.widgets import (
    Drawn,
    ddim_widget,
    draw_ddim_samples,
    draw_forward_process,
    draw_guided_samples,
    draw_hsv_threshold,
    draw_nms,
    forward_process_widget,
    guidance_widget,
    hsv_threshold_widget,
    nms_widget,
)

matplotlib.use("Agg")


def sliders(widget) -> dict:
    """The widget's sliders by their description."""
    return {c.description: c for c in widget.children if hasattr(c, "value")}


def move(widget, description: str, value) -> Drawn:
    """Set one slider as a learner would drag it; the widget redraws; return what it drew."""
    before = widget.result
    sliders(widget)[description].value = value
    assert widget.result is not before, f"moving {description!r} did not redraw"
    return widget.result


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return image.to_tensor(data.photo("astronaut", size=64))  # [3, 64, 64]


@pytest.fixture(scope="module")
def tiny_model() -> ConditionalUNet:
    seed_everything(0)  # untrained, but its label embedding already changes ε̂
    return ConditionalUNet(1, base=8, num_classes=3).eval()


@pytest.fixture(scope="module")
def short_schedule() -> NoiseSchedule:
    return NoiseSchedule(100, "cosine")


def test_drawn_shows_as_its_figure(photo):
    drawn = draw_hsv_threshold(photo, 12, 35, 0.5, 0.25)
    assert isinstance(drawn.figure, Figure)
    assert drawn._repr_png_().startswith(b"\x89PNG")
    assert repr(drawn) == "Drawn(data keys: mask, area)"


# --- HSV threshold ------------------------------------------------------------------------------


def test_hsv_mask_is_the_image_module_s_mask(photo):
    drawn = draw_hsv_threshold(photo, 340, 12, 0.5, 0.25)  # wraps through 0°
    expected = image.hsv_mask(photo, (340, 12), sat_min=0.5, val_min=0.25)
    assert torch.equal(drawn.data["mask"], expected)
    assert drawn.data["area"] == pytest.approx(expected.float().mean().item())
    shown = drawn.figure.axes[1].images[0].get_array()  # the photo through the mask
    assert (shown[~expected.numpy()] == 0).all()


def test_hsv_mask_area_shrinks_as_the_minimum_saturation_rises(photo):
    widget = hsv_threshold_widget(photo, hue_range=(0, 360), sat_min=0.0, val_min=0.0)
    assert widget.result.data["area"] == 1.0  # every hue, no minimum: every pixel
    areas = [move(widget, "min saturation", s).data["area"] for s in (0.2, 0.4, 0.6, 0.8)]
    assert areas == sorted(areas, reverse=True) and areas[0] > areas[-1]
    assert move(widget, "hue to (°)", 180).data["area"] < areas[-1]  # half the hues


def test_hsv_rejects_thresholds_outside_the_unit_interval(photo):
    with pytest.raises(ValueError, match=r"sat_min must be a number in \[0, 1\]"):
        draw_hsv_threshold(photo, 12, 35, 50, 0.25)  # a percentage instead of a fraction
    with pytest.raises(ValueError, match="val_min"):
        draw_hsv_threshold(photo, 12, 35, 0.5, -0.1)
    with pytest.raises(ValueError, match="hue_range"):
        draw_hsv_threshold(photo, 12, 400, 0.5, 0.25)
    with pytest.raises(ValueError, match=r"one \[3, H, W\] RGB tensor.*image.to_tensor"):
        draw_hsv_threshold(photo[None], 12, 35, 0.5, 0.25)  # a batch of one


# --- NMS ----------------------------------------------------------------------------------------

# box 1 overlaps box 0 (IoU 0.68), box 2 stands alone, box 3 has another label than box 0
DETECTIONS = {
    "boxes": torch.tensor(
        [[10.0, 10, 50, 50], [14, 14, 54, 54], [60, 60, 90, 90], [10, 10, 50, 50]]
    ),
    "scores": torch.tensor([0.9, 0.8, 0.4, 0.2]),
    "labels": torch.tensor([1, 1, 2, 3]),
}
SCENE = torch.zeros(3, 96, 96)


def test_nms_keeps_what_batched_nms_keeps():
    drawn = draw_nms(SCENE, DETECTIONS, score_threshold=0.1, iou_threshold=0.5)
    assert drawn.data["candidates"] == 4
    assert drawn.data["keep"].tolist() == [0, 2, 3]  # box 1 is a duplicate of box 0
    expected = batched_nms(DETECTIONS["boxes"], DETECTIONS["scores"], DETECTIONS["labels"], 0.5)
    assert drawn.data["keep"].tolist() == expected.tolist()
    left, right = drawn.figure.axes
    assert len(left.patches) == 4 and len(right.patches) == 3  # one rectangle per box drawn


def test_fewer_boxes_remain_as_the_score_threshold_rises():
    widget = nms_widget(SCENE, DETECTIONS, score_threshold=0.1, iou_threshold=0.5)
    assert widget.result.data["kept"] == 3
    kept = [move(widget, "score threshold", s).data["kept"] for s in (0.3, 0.5, 0.85, 0.95)]
    assert kept == [2, 1, 1, 0]


def test_more_boxes_remain_as_the_iou_threshold_rises():
    widget = nms_widget(SCENE, DETECTIONS, score_threshold=0.1, iou_threshold=0.5)
    assert move(widget, "NMS IoU threshold", 0.7).data["keep"].tolist() == [0, 1, 2, 3]
    assert move(widget, "NMS IoU threshold", 0.0).data["kept"] == 3  # labels never suppress


def test_nms_rejects_bad_thresholds_and_detections():
    with pytest.raises(ValueError, match=r"score_threshold must be a number in \[0, 1\]"):
        draw_nms(SCENE, DETECTIONS, 30, 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        draw_nms(SCENE, DETECTIONS, 0.3, 1.5)
    with pytest.raises(ValueError, match=r"missing \['labels'\]"):
        draw_nms(SCENE, {k: DETECTIONS[k] for k in ("boxes", "scores")}, 0.3, 0.5)


# --- forward process ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x0 = data.digits(size=16)[0][:3] * 2 - 1  # [3, 1, 16, 16] in [-1, 1]
    return x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))


def test_forward_process_is_q_sample_with_its_signal_fraction(digits, short_schedule):
    x0, noise = digits
    widget = forward_process_widget(short_schedule, x0, noise, t=50)
    for t in (0, 20, 99):
        drawn = move(widget, "timestep t", t)
        a_bar = short_schedule.alphas_cumprod[t]
        assert torch.allclose(
            drawn.data["x_t"], q_sample(short_schedule, x0, torch.full((3,), t), noise)
        )
        assert drawn.data["signal"] == pytest.approx(a_bar.sqrt().item())
        assert f"sqrt(ᾱ_t) = {a_bar.sqrt():.3f}" in drawn.figure.get_suptitle()


def test_forward_process_goes_from_the_clean_image_to_noise(digits, short_schedule):
    x0, noise = digits
    start = draw_forward_process(short_schedule, x0, noise, 0)
    # t = 0 is already the first noising step: x_0 up to that one step's tiny noise
    beta_0 = short_schedule.betas[0].item()
    assert start.data["noise_scale"] == pytest.approx(beta_0**0.5, rel=1e-4)
    assert (start.data["x_t"] - x0).abs().max() < 2 * beta_0**0.5 * noise.abs().max()
    end = draw_forward_process(short_schedule, x0, noise, 99)
    assert end.data["signal"] < 0.01 and torch.allclose(end.data["x_t"], noise, atol=0.02)


def test_forward_process_rejects_timesteps_outside_the_schedule(digits, short_schedule):
    x0, noise = digits
    for t in (-1, 100, 2.5):
        with pytest.raises(ValueError, match=r"t must be an integer in \[0, 99\]"):
            draw_forward_process(short_schedule, x0, noise, t)


# --- DDIM and guidance --------------------------------------------------------------------------


def test_ddim_samples_are_sample_ddim_from_a_fixed_seed(tiny_model, short_schedule):
    drawn = draw_ddim_samples(tiny_model, short_schedule, num_steps=5, eta=0.5, seed=3)
    expected = sample_ddim(
        tiny_model,
        short_schedule,
        (3, 1, 16, 16),
        num_steps=5,
        eta=0.5,
        condition=Condition(torch.arange(3)),
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    assert torch.equal(drawn.data["samples"], expected)
    again = draw_ddim_samples(tiny_model, short_schedule, num_steps=5, eta=0.5, seed=3)
    assert again.data["samples"] is drawn.data["samples"]  # cached: a revisited value is instant


def test_ddim_changes_only_with_its_sliders(tiny_model, short_schedule):
    widget = ddim_widget(tiny_model, short_schedule, num_steps=10, eta=0.0, max_num_steps=20)
    first = widget.result.data["samples"]
    changed_steps = move(widget, "DDIM steps", 4).data["samples"]
    changed_eta = move(widget, "η", 1.0).data["samples"]
    back = move(widget, "η", 0.0)
    back = move(widget, "DDIM steps", 10).data["samples"]
    assert not torch.allclose(first, changed_steps) and not torch.allclose(
        changed_steps, changed_eta
    )
    assert torch.equal(back, first)
    assert "10 steps, η = 0.00 (deterministic)" in widget.result.figure.get_suptitle()


def test_guidance_changes_the_samples_away_from_scale_one(tiny_model, short_schedule):
    widget = guidance_widget(tiny_model, short_schedule, scale=1.0, num_steps=5)
    at_one = widget.result.data
    assert torch.equal(at_one["samples"], at_one["reference"])
    unguided = sample_ddim(
        tiny_model,
        short_schedule,
        (3, 1, 16, 16),
        num_steps=5,
        condition=Condition(torch.arange(3)),
        generator=torch.Generator().manual_seed(0),
        use_clipped_model_output=True,
        progress=False,
    )
    assert torch.equal(at_one["reference"], unguided)  # scale 1 is the plain conditional model
    strong = move(widget, "guidance scale", 5.0).data
    assert torch.equal(strong["reference"], at_one["reference"])  # the reference row stays
    assert (strong["samples"] - strong["reference"]).abs().max() > 0.05


def test_sampling_widgets_reject_bad_values(tiny_model, short_schedule):
    with pytest.raises(ValueError, match=r"num_steps must be an integer in \[1, 100\]"):
        draw_ddim_samples(tiny_model, short_schedule, num_steps=0, eta=0.0)
    with pytest.raises(ValueError, match=r"eta must be a number in \[0, 1\]"):
        draw_ddim_samples(tiny_model, short_schedule, num_steps=5, eta=-0.1)
    with pytest.raises(ValueError, match="scale must be a number"):
        draw_guided_samples(tiny_model, short_schedule, scale=-1.0)
    with pytest.raises(ValueError, match="num_steps"):
        draw_guided_samples(tiny_model, short_schedule, scale=2.0, num_steps=101)
