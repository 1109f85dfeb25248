"""Tests for course_utils.plot: what is drawn, not just that drawing runs."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.patches import Rectangle
from PIL import Image
from torchvision.utils import make_grid

from course_utils.plot import (
    draw_boxes,
    overlay_masks,
    plot_history,
    show_grid,
    show_images,
    to_display,
)
from course_utils.train import History

matplotlib.use("Agg")  # draw into memory: no window, works on CI (switches pyplot if imported)

TAB10 = plt.get_cmap("tab10").colors


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------- to_display


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    c=st.sampled_from([1, 3, 4]),
    seed=st.integers(0, 2**16),
)
def test_to_display_tensor_and_array_layouts_agree(h, w, c, seed):
    hwc = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    expected = hwc.astype(np.float32) / 255
    expected = expected[..., 0] if c == 1 else expected
    for image in (hwc, chw, chw.float() / 255, hwc / 255.0):
        out = to_display(image)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, atol=1e-6)


def test_to_display_grey_pil_and_half():
    grey = torch.tensor([[0.0, 0.5], [1.0, 0.25]])
    np.testing.assert_array_equal(to_display(grey), grey.numpy())
    np.testing.assert_array_equal(to_display(grey.half()), grey.numpy())  # no float16 surprises
    np.testing.assert_array_equal(to_display(grey.bfloat16()), grey.numpy())
    rgb = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    np.testing.assert_allclose(to_display(Image.fromarray(rgb)), rgb / 255)
    np.testing.assert_allclose(to_display(Image.fromarray(rgb[..., 0])), rgb[..., 0] / 255)
    assert to_display(Image.fromarray(rgb).convert("P")).shape == (2, 4, 3)
    assert to_display(grey.numpy() + 1e-4).max() == 1.0  # rounding overshoot is clipped


@pytest.mark.parametrize(
    "image, message",
    [
        (torch.rand(2, 3, 8, 8), "use show_images for a batch"),
        (np.random.rand(2, 8, 8, 3), "use show_images for a batch"),
        (torch.rand(8, 8, 3), r"looks like HWC \(channels last\); use x\.permute\(2, 0, 1\)"),
        (np.random.rand(3, 8, 8), r"looks like CHW: use \.transpose\(1, 2, 0\)"),
        (torch.rand(5, 8, 8), "takes 1, 3 or 4-channel images, got 5 channels"),
        (torch.rand(8), r"takes images \[C, H, W\], got shape \(8,\)"),
        (torch.zeros(3, 0, 4), "got an empty tensor"),
        (torch.rand(3, 4, 4) * 2 - 1, r"\(x \+ 1\) / 2"),
        (np.full((4, 4), 255.0), "x / 255"),
        (np.zeros((4, 4), dtype=np.int64), "uint8 or float"),
    ],
)
def test_to_display_rejects_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        to_display(image)


def test_to_display_rejects_other_types():
    with pytest.raises(TypeError, match="torch tensor, NumPy array or PIL image"):
        to_display([[0.0, 1.0]])


# ---------------------------------------------------------------- show_images


def test_show_images_batch_grid_titles_and_grey_cmap():
    batch = torch.rand(10, 1, 6, 6)
    fig = show_images(batch, titles=[str(i) for i in range(10)], ncols=4, suptitle="digits")
    assert len(fig.axes) == 10  # the 2 empty cells of the 3x4 grid are removed
    assert [ax.get_title() for ax in fig.axes] == [str(i) for i in range(10)]
    assert fig._suptitle.get_text() == "digits"
    image = fig.axes[3].images[0]
    np.testing.assert_allclose(image.get_array(), batch[3, 0].numpy())
    assert image.get_cmap().name == "gray"
    assert image.get_clim() == (0, 1)  # true grey levels, not stretched
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (3, 4)


def test_show_images_mixed_list_and_custom_cmap():
    images = [np.zeros((4, 4, 3), np.uint8), torch.ones(3, 5, 5), torch.rand(4, 4)]
    fig = show_images(images, cmap="viridis")
    assert len(fig.axes) == 3
    assert fig.axes[0].images[0].get_array().shape == (4, 4, 3)
    assert fig.axes[2].images[0].get_cmap().name == "viridis"


def test_show_images_rejects_bad_input():
    with pytest.raises(ValueError, match="no images"):
        show_images([])
    with pytest.raises(ValueError, match="2 titles for 3 images"):
        show_images(torch.rand(3, 3, 4, 4), titles=["a", "b"])
    with pytest.raises(ValueError, match=r"batch tensor \[B, C, H, W\]"):
        show_images(torch.rand(3, 4, 4))


# ---------------------------------------------------------------- show_grid


def test_show_grid_rows_and_columns_grey_with_labels_at_tile_centres():
    images = torch.rand(2, 3, 1, 4, 5, generator=torch.Generator().manual_seed(0))
    _, ax = plt.subplots()
    out = show_grid(images, ["a", "b"], range(3), title="t", xlabel="x", ylabel="y", ax=ax)
    assert out is ax and len(ax.images) == 1  # one picture, however many tiles
    drawn = ax.images[0]
    expected = make_grid(images.flatten(0, 1), nrow=3, padding=1, pad_value=1.0)
    np.testing.assert_array_equal(drawn.get_array(), expected[0].numpy())
    assert drawn.get_cmap().name == "gray" and drawn.get_clim() == (0, 1)
    grid_h, grid_w = expected.shape[1:]
    assert drawn.get_extent() == [0, grid_w, grid_h, 0]  # x, y in pixels, as below
    # tile (i, j) is images[i, j]: its pixels start after i + 1 (j + 1) white separator lines
    for i in range(2):
        for j in range(3):
            top, left = 1 + i * (4 + 1), 1 + j * (5 + 1)
            tile = expected[0, top : top + 4, left : left + 5]
            torch.testing.assert_close(tile, images[i, j, 0])
    np.testing.assert_allclose(ax.get_xticks(), [1 + j * 6 + 2.5 for j in range(3)])
    np.testing.assert_allclose(ax.get_yticks(), [1 + i * 5 + 2.0 for i in range(2)])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("t", "x", "y")


def test_show_grid_batch_in_colour_ncols_per_row_and_no_labels():
    images = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ax = show_grid(images, ncols=2)  # 3 rows, the last one half empty
    expected = make_grid(images, nrow=2, padding=1, pad_value=1.0)
    assert expected.shape[1:] == (3 * 5 + 1, 2 * 5 + 1)
    np.testing.assert_array_equal(ax.images[0].get_array(), expected.permute(1, 2, 0).numpy())
    assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
    # the default: 8 per row, as make_grid does
    ax = show_grid(torch.rand(10, 1, 2, 2), col_labels=range(8), row_labels=["", ""])
    assert ax.images[0].get_array().shape == (2 * 3 + 1, 8 * 3 + 1)


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        (torch.rand(3, 4, 4), {}, r"\[N, C, H, W\] or \[rows, cols, C, H, W\], got \(3, 4, 4\)"),
        (np.random.rand(2, 1, 4, 4), {}, "got ndarray"),
        (torch.rand(2, 2, 4, 4), {}, "1 or 3 channels"),
        (torch.rand(0, 1, 4, 4), {}, "at least one image"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), {}, "float images"),
        (torch.rand(2, 1, 4, 4) * 2 - 1, {}, r"\(x \+ 1\) / 2"),  # samples not yet through to01
        (torch.rand(2, 3, 1, 4, 4), {"row_labels": ["a"]}, "1 row labels for 2 rows"),
        (torch.rand(5, 1, 4, 4), {"ncols": 2, "col_labels": "abc"}, "3 column labels for 2"),
        (torch.rand(2, 3, 1, 4, 4), {"ncols": 3}, "ncols is for"),
        (torch.rand(2, 1, 4, 4), {"ncols": 0}, "at least 1"),
    ],
)
def test_show_grid_rejects_bad_input(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        show_grid(images, **kwargs)


# ---------------------------------------------------------------- draw_boxes


def test_draw_boxes_rectangles_captions_and_colours():
    image = torch.zeros(3, 40, 60)
    boxes = torch.tensor([[5.0, 10.0, 25.0, 30.0], [30.0, 2.0, 58.0, 20.0]])
    ax = draw_boxes(
        image,
        boxes,
        labels=torch.tensor([1, 3]),
        scores=[0.934, 0.5],
        class_names=["bg", "cat", "dog", "bird"],
        title="detections",
    )
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(rects) == 2
    for rect, (x1, y1, x2, y2) in zip(rects, boxes.tolist()):
        assert rect.get_xy() == (x1, y1)
        assert (rect.get_width(), rect.get_height()) == (x2 - x1, y2 - y1)
        assert not rect.get_fill()
    assert rects[0].get_edgecolor()[:3] == pytest.approx(TAB10[1])  # colour follows the class
    assert rects[1].get_edgecolor()[:3] == pytest.approx(TAB10[3])
    assert [t.get_text() for t in ax.texts] == ["cat 0.93", "bird 0.50"]
    assert ax.texts[0].get_position() == (5.0, 10.0)
    assert ax.get_title() == "detections"
    # pixel (row i, col j) covers [j, j+1] x [i, i+1]: the image spans exactly [0, W] x [H, 0]
    assert ax.images[0].get_extent() == [0, 60, 40, 0]


def test_draw_boxes_scores_only_dict_names_fixed_colour_and_empty():
    image = np.zeros((20, 20), np.uint8)
    ax = draw_boxes(image, [[1, 1, 5, 5]], scores=torch.tensor([0.25]), color="red")
    assert [t.get_text() for t in ax.texts] == ["0.25"]
    assert ax.patches[0].get_edgecolor() == pytest.approx((1, 0, 0, 1))
    ax = draw_boxes(image, [[1, 1, 5, 5]], labels=[7], class_names={7: "seven"})
    assert ax.texts[0].get_text() == "seven"
    ax = draw_boxes(image, torch.zeros(0, 4))
    assert len(ax.patches) == 0 and len(ax.images) == 1
    _, given_ax = plt.subplots()
    assert draw_boxes(image, [[0, 0, 1, 1]], ax=given_ax) is given_ax


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"boxes": [1, 2, 3, 4]}, r"shape \[K, 4\]"),
        ({"boxes": [[10, 10, 5, 20]]}, "x1 <= x2"),
        ({"boxes": [[0, 0, 5, 5]], "labels": [1, 2]}, "2 labels for 1 boxes"),
        ({"boxes": [[0, 0, 5, 5]], "scores": []}, "0 scores for 1 boxes"),
        ({"boxes": [[0, 0, 5, 5]], "labels": [4], "class_names": ["a"]}, "label 4 has no entry"),
    ],
)
def test_draw_boxes_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        draw_boxes(np.zeros((8, 8)), **kwargs)


# ---------------------------------------------------------------- overlay_masks


def test_overlay_instance_masks_colours_only_masked_pixels():
    image = np.full((6, 8, 3), 0.2, np.float32)
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, :2, :3] = True
    masks[1, 4:, 5:] = True
    ax = overlay_masks(image, masks, alpha=0.5, title="instances")
    out = ax.images[0].get_array()
    np.testing.assert_allclose(out[0, 0], 0.5 * 0.2 + 0.5 * np.array(TAB10[0]), atol=1e-6)
    np.testing.assert_allclose(out[5, 7], 0.5 * 0.2 + 0.5 * np.array(TAB10[1]), atol=1e-6)
    untouched = ~(masks[0] | masks[1]).numpy()
    np.testing.assert_array_equal(out[untouched], image[untouched])
    assert ax.get_title() == "instances"


def test_overlay_label_map_leaves_background_and_colours_per_class():
    grey = np.full((4, 4), 128, np.uint8)  # grey images are blended as RGB
    labels = np.zeros((4, 4), np.int64)
    labels[0, 0], labels[3, 3], labels[1, 1] = 1, 3, 3
    out = overlay_masks(grey, labels, alpha=1.0).images[0].get_array()
    np.testing.assert_allclose(out[0, 0], TAB10[0])  # class c gets colour c - 1 of tab10
    np.testing.assert_allclose(out[3, 3], TAB10[2])
    np.testing.assert_allclose(out[1, 1], TAB10[2])
    np.testing.assert_allclose(out[0, 1], [128 / 255] * 3)  # 0 = background: unchanged
    many = np.arange(16).reshape(4, 4)  # 15 classes: tab20 so that they stay distinct
    out = overlay_masks(grey, many, alpha=1.0).images[0].get_array()
    assert len({tuple(c) for c in out.reshape(-1, 3)[1:]}) == 15


def test_overlay_masks_rejects_bad_input():
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"H, W = \(4, 4\)"):
        overlay_masks(image, np.zeros((1, 5, 4), bool))
    with pytest.raises(ValueError, match="masks > 0.5"):
        overlay_masks(image, torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match="integer class ids"):
        overlay_masks(image, np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="alpha"):
        overlay_masks(image, np.zeros((4, 4), np.int64), alpha=1.5)


# ---------------------------------------------------------------- plot_history


def test_plot_history_lines_equal_the_history():
    history = History([1.0, 0.6, 0.4], [1.1, 0.8, 0.7], [0.5, 0.7, 0.8], [1, 1, 1], "accuracy")
    fig = plot_history(history, title="MLP on digits")
    loss_ax, metric_ax = fig.axes
    (train, val), (acc,) = loss_ax.get_lines(), metric_ax.get_lines()
    assert list(train.get_xdata()) == [1, 2, 3]
    assert list(train.get_ydata()) == history.train_loss
    assert list(val.get_ydata()) == history.val_loss
    assert list(acc.get_ydata()) == history.val_metric
    assert (loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("epoch", "loss")
    assert (metric_ax.get_xlabel(), metric_ax.get_ylabel()) == ("epoch", "accuracy")
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["train", "validation"]
    assert fig._suptitle.get_text() == "MLP on digits"


def test_plot_history_from_dict_without_validation_and_into_given_axes():
    fig = plot_history({"train_loss": [0.9, 0.5], "epoch_time": [2.0, 2.0]})
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 1
    fig, axes = plt.subplots(1, 2)
    history = History([1.0], [1.0], [0.3], [1.0], None).as_dict()
    assert plot_history(history, axes=axes) is fig
    assert axes[1].get_ylabel() == "metric"


def test_plot_history_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one train_loss"):
        plot_history({"loss": [1.0]})
    with pytest.raises(ValueError, match="at least one train_loss"):
        plot_history(History())
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="needs 2 axes"):
        plot_history(History([1.0], [1.0], [0.5], [1.0], "accuracy"), axes=ax)
