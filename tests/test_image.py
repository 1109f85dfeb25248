"""course_utils.image: parity with OpenCV / scikit-image / SciPy / torchvision, known values,
properties, round trips, and a clear error for every kind of bad input."""

import math
import re

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import color, data
from torchvision.transforms import v2

from course_utils.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    KERNELS,
    channel_stats,
    chw_to_hwc,
    clahe,
    convolve,
    cutmix,
    cutmix_batch,
    denormalize,
    equalize_histogram,
    eval_transforms,
    gaussian_kernel,
    hsv_mask,
    hsv_to_rgb,
    hwc_to_chw,
    mixup,
    mixup_batch,
    normalize,
    rgb_to_gray,
    rgb_to_hsv,
    rgb_to_lab,
    rgb_to_ycrcb,
    sobel,
    to_numpy,
    to_tensor,
    train_transforms,
)
from course_utils.image.mixing import _cutmix_box


@pytest.fixture(scope="module")
def astronaut():
    """A real photo, [128, 128, 3] uint8 (downsized to keep the tests fast)."""
    return cv2.resize(data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)


def random_uint8(seed=0, shape=(40, 50, 3)):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture(params=["astronaut", "random"])
def photo(request, astronaut):
    return astronaut if request.param == "astronaut" else random_uint8()


def white_square():
    """[1, 8, 8]: ones on rows/columns 2..5, zeros elsewhere."""
    x = torch.zeros(1, 8, 8)
    x[:, 2:6, 2:6] = 1
    return x


# ---------------------------------------------------------------------------- conversions


def test_to_tensor_layout_dtype_and_values(astronaut):
    t = to_tensor(astronaut)
    assert t.shape == (3, 128, 128) and t.dtype == torch.float32 and t.is_contiguous()
    assert torch.equal(t, torch.from_numpy(astronaut).permute(2, 0, 1).float() / 255)
    assert torch.equal(to_tensor(Image.fromarray(astronaut)), t)  # PIL gives the same tensor
    grey = to_tensor(astronaut[:, :, 0])
    assert grey.shape == (1, 128, 128)
    assert torch.equal(to_tensor(Image.fromarray(astronaut).convert("RGBA")), t)  # alpha dropped


def test_to_numpy_round_trip_is_exact(photo):
    assert np.array_equal(to_numpy(to_tensor(photo)), photo)
    assert to_numpy(to_tensor(photo[:, :, 1])).shape == photo.shape[:2]  # grey -> [H, W]


def test_hwc_chw_are_views_and_inverse():
    x = torch.rand(2, 5, 6, 3)
    chw = hwc_to_chw(x)
    assert chw.shape == (2, 3, 5, 6) and chw.data_ptr() == x.data_ptr()
    assert torch.equal(chw_to_hwc(chw), x)


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (
            np.zeros((4, 4, 3), np.uint8),
            TypeError,
            "torch.from_numpy(x) (or image.to_tensor(x)",
        ),  # NumPy where a tensor is expected
        (torch.rand(32, 32, 3), ValueError, "looks like HWC"),
        (torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8), TypeError, "float"),
        (torch.rand(3, 8, 8) * 255, ValueError, "use x / 255"),
        (torch.rand(3, 8, 8) - 0.5, ValueError, "denormalize"),
        (torch.rand(2, 8, 8), ValueError, "1 or 3-channel images, got 2 channels"),
        (torch.rand(8, 8), ValueError, "takes images [C, H, W], got shape (8, 8)"),
    ],
)
def test_to_numpy_names_the_mistake(bad, error, words):
    with pytest.raises(error, match=re.escape(words)):
        to_numpy(bad)


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (torch.zeros(3, 4, 4), TypeError, "got a torch.Tensor"),
        (np.zeros((4, 4, 3), np.float32), TypeError, "uint8"),
        (np.zeros((4, 4, 4), np.uint8), ValueError, "alpha"),
        (np.zeros((4, 4, 2), np.uint8), ValueError, r"\[H, W, 3\]"),
        ([[0, 1], [2, 3]], TypeError, "NumPy array or a PIL image"),
    ],
)
def test_to_tensor_errors(bad, error, words):
    with pytest.raises(error, match=words):
        to_tensor(bad)


def test_to_numpy_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_numpy(torch.rand(3, 4, 4) * 2)


# ---------------------------------------------------------------------------- colour


def test_gray_matches_torchvision_and_opencv(photo):
    t = to_tensor(photo)
    gray = rgb_to_gray(t)
    assert gray.shape == (1, *photo.shape[:2])
    # torchvision rounds the red weight to 0.2989
    assert torch.allclose(gray, TF.rgb_to_grayscale(t), atol=1e-3)
    ref = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(int)
    assert np.abs(to_numpy(gray).astype(int) - ref).max() <= 1


def test_gray_works_on_batches():
    x = torch.rand(4, 3, 5, 5)
    assert torch.equal(rgb_to_gray(x)[2], rgb_to_gray(x[2]))


def hue_distance(a, b):
    d = np.abs(a - b)
    return np.minimum(d, 1 - d)  # hue is an angle: 0.999 and 0.001 are neighbours


def test_hsv_matches_skimage(photo):
    ours = chw_to_hwc(rgb_to_hsv(to_tensor(photo))).numpy()
    ref = color.rgb2hsv(photo)
    assert hue_distance(ours[..., 0], ref[..., 0]).max() < 1e-5
    assert np.abs(ours[..., 1:] - ref[..., 1:]).max() < 1e-5
    assert ours[..., 0].min() >= 0 and ours[..., 0].max() < 1


@pytest.mark.parametrize(
    "rgb, hsv",
    [
        ((1, 0, 0), (0, 1, 1)),
        ((0, 1, 0), (1 / 3, 1, 1)),
        ((0, 0, 1), (2 / 3, 1, 1)),
        ((1, 1, 0), (1 / 6, 1, 1)),
        ((0.5, 0.5, 0.5), (0, 0, 0.5)),  # grey: no hue, no saturation
        ((0, 0, 0), (0, 0, 0)),
    ],
)
def test_hsv_known_values(rgb, hsv):
    pixel = torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1)
    hsv = torch.tensor(hsv, dtype=torch.float32)
    assert torch.allclose(rgb_to_hsv(pixel).flatten(), hsv, atol=1e-6)
    assert torch.allclose(hsv_to_rgb(hsv.view(3, 1, 1)).flatten(), pixel.flatten(), atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_hsv_round_trip(seed):
    x = torch.rand(2, 3, 6, 7, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)


def test_ycrcb_matches_opencv(photo):
    ours = chw_to_hwc(rgb_to_ycrcb(to_tensor(photo))).numpy()
    # float input: identical formulas (Cr, Cb centred on 0.5)
    ref_float = cv2.cvtColor(photo.astype(np.float32) / 255, cv2.COLOR_RGB2YCrCb)
    assert np.abs(ours - ref_float).max() < 1e-5
    # uint8: OpenCV centres Cr, Cb on 128 (not 0.5 * 255 = 127.5) and rounds Y before Cr, Cb
    ref_uint8 = cv2.cvtColor(photo, cv2.COLOR_RGB2YCrCb).astype(np.float64)
    scaled = ours * 255 + np.array([0, 0.5, 0.5])
    assert np.abs(scaled - ref_uint8).max() <= 1


def test_lab_matches_skimage(photo):
    ours = chw_to_hwc(rgb_to_lab(to_tensor(photo))).numpy()
    assert np.allclose(ours, color.rgb2lab(photo), rtol=1e-3, atol=1e-3)


def test_lab_known_values():
    white, black = torch.ones(3, 1, 1), torch.zeros(3, 1, 1)
    # white is (100, 0, 0) up to the rounding of the published sRGB matrix
    assert torch.allclose(rgb_to_lab(white).flatten(), torch.tensor([100.0, 0, 0]), atol=1e-2)
    assert torch.allclose(rgb_to_lab(black).flatten(), torch.zeros(3), atol=1e-4)


def colour_row(hues_deg, sat=1.0, val=1.0):
    """[3, 1, N] RGB pixels with the given hues."""
    hue = torch.tensor(hues_deg, dtype=torch.float32) / 360
    hsv = torch.stack([hue, torch.full_like(hue, sat), torch.full_like(hue, val)]).view(3, 1, -1)
    return hsv_to_rgb(hsv)


def test_hsv_mask_wraps_around_red():
    img = colour_row([0, 10, 25, 120, 200, 335, 350])
    assert hsv_mask(img, (340, 20)).flatten().tolist() == [1, 1, 0, 0, 0, 0, 1]
    assert hsv_mask(img, (100, 210)).flatten().tolist() == [0, 0, 0, 1, 1, 0, 0]
    assert hsv_mask(img, (0, 360)).all()


def test_hsv_mask_thresholds_saturation_and_value():
    img = torch.cat([colour_row([0]), colour_row([0], sat=0.2), colour_row([0], val=0.1)], dim=-1)
    assert hsv_mask(img, (340, 20), sat_min=0.5, val_min=0.3).flatten().tolist() == [1, 0, 0]
    assert hsv_mask(img.unsqueeze(0), (340, 20)).shape == (1, 1, 3)  # batches: [B, H, W]


def test_hsv_mask_matches_opencv_inrange(astronaut):
    """Away from the bin edges our mask equals OpenCV's (H in 0-179, S and V in 0-255)."""
    ours = hsv_mask(to_tensor(astronaut), (340, 20), sat_min=0.4, val_min=0.3).numpy()
    hsv = cv2.cvtColor(astronaut, cv2.COLOR_RGB2HSV)
    ref = cv2.inRange(hsv, (0, 102, 77), (10, 255, 255)) | cv2.inRange(
        hsv, (170, 102, 77), (180, 255, 255)
    )
    assert (ours != (ref > 0)).mean() < 0.01 and ours.sum() > 100


def test_colour_errors():
    with pytest.raises(ValueError, match="3-channel images, got 1 channels"):
        rgb_to_hsv(torch.rand(1, 4, 4))
    with pytest.raises(ValueError, match="looks like HWC"):
        rgb_to_lab(torch.rand(4, 4, 3))
    with pytest.raises(TypeError, match="to_tensor"):
        rgb_to_gray(np.zeros((4, 4, 3), np.float32))  # checked before it is used
    with pytest.raises(ValueError, match="hue_range"):
        hsv_mask(torch.rand(3, 4, 4), (-20, 20))


# ---------------------------------------------------------------------------- filtering


def test_kernels_on_a_white_square():
    x = white_square()

    def at(name, r, c):
        return convolve(x, KERNELS[name])[0, r, c].item()

    assert torch.equal(convolve(x, KERNELS["identity"]), x)
    assert at("box_blur", 2, 2) == pytest.approx(4 / 9)  # corner: 4 of its 9 neighbours are white
    assert at("box_blur", 3, 3) == pytest.approx(1)  # inside: all white
    assert at("gaussian", 2, 2) == pytest.approx(9 / 16)
    assert at("sharpen", 3, 3) == pytest.approx(1)  # flat regions unchanged
    assert at("sharpen", 2, 2) == pytest.approx(3)  # corners overshoot: crisper edge
    for name in ("laplacian", "edge"):
        assert at(name, 3, 3) == 0 and at(name, 0, 0) == 0  # flat: nothing
        assert at(name, 2, 2) != 0  # boundary: response
    assert at("sobel_x", 3, 1) == pytest.approx(4) and at("sobel_x", 3, 6) == pytest.approx(-4)
    assert at("sobel_y", 1, 3) == pytest.approx(4) and at("sobel_y", 6, 3) == pytest.approx(-4)
    assert at("sobel_x", 3, 3) == 0
    assert at("emboss", 1, 1) == pytest.approx(2) and at("emboss", 6, 6) == pytest.approx(-2)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_convolve_matches_opencv_filter2d(name, astronaut):
    """cv2.filter2D also computes cross-correlation, and mirrors borders (BORDER_REFLECT_101)."""
    ours = convolve(to_tensor(astronaut), KERNELS[name], border="reflect")
    ref = cv2.filter2D(astronaut.astype(np.float32) / 255, -1, KERNELS[name].numpy())
    assert np.abs(chw_to_hwc(ours).numpy() - ref).max() < 1e-5


def test_convolution_flips_the_kernel(astronaut):
    img = to_tensor(astronaut)[:1]
    kernel = torch.arange(9.0).view(3, 3)  # asymmetric
    corr = convolve(img, kernel)
    conv = convolve(img, kernel, mode="convolution")
    gray = img[0].double().numpy()
    assert np.allclose(
        corr[0].numpy(), ndi.correlate(gray, kernel.double().numpy(), mode="constant"), atol=1e-4
    )
    assert np.allclose(
        conv[0].numpy(), ndi.convolve(gray, kernel.double().numpy(), mode="constant"), atol=1e-4
    )
    assert not torch.allclose(corr, conv)
    assert torch.allclose(conv, convolve(img, kernel.flip(0, 1)))
    blur = KERNELS["gaussian"]  # symmetric: both modes agree
    assert torch.allclose(convolve(img, blur), convolve(img, blur, mode="convolution"))


def test_convolve_equals_f_conv2d_with_zero_padding():
    x = torch.rand(2, 3, 9, 9)
    k = torch.randn(3, 3)
    ref = F.conv2d(x, k.expand(3, 1, 3, 3), padding=1, groups=3)
    assert torch.allclose(convolve(x, k), ref, atol=1e-6)


def test_convolve_shapes_and_borders():
    x = torch.rand(2, 4, 10, 12)  # any channel count, batches
    assert convolve(x, torch.ones(3, 5), padding="valid").shape == (2, 4, 8, 8)
    assert convolve(x, torch.ones(3, 5)).shape == x.shape
    assert torch.equal(convolve(x, torch.ones(3, 3))[1], convolve(x[1], torch.ones(3, 3)))
    ones = torch.ones(1, 5, 5)
    box = KERNELS["box_blur"]
    assert convolve(ones, box)[0, 0, 0] == pytest.approx(4 / 9)  # zeros outside darken the frame
    for border in ("reflect", "replicate"):
        assert torch.allclose(convolve(ones, box, border=border), ones)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"kernel": torch.ones(2, 2)}, "odd kernel"),
        ({"kernel": torch.ones(1, 3, 3)}, "2-D kernel"),
        ({"mode": "conv"}, "mode"),
        ({"padding": "full"}, "padding"),
        ({"border": "wrap"}, "border"),
    ],
)
def test_convolve_errors(kwargs, words):
    args = {"img": torch.rand(3, 6, 6), "kernel": torch.ones(3, 3)} | kwargs
    with pytest.raises(ValueError, match=words):
        convolve(**args)


def test_gaussian_kernel_matches_opencv():
    for size, sigma in [(3, 0.8), (5, 1.2), (7, 2.0)]:
        g = cv2.getGaussianKernel(size, sigma)
        assert np.allclose(gaussian_kernel(size, sigma).numpy(), g @ g.T, atol=1e-7)
    assert gaussian_kernel(5, 1.0).sum().item() == pytest.approx(1)
    with pytest.raises(ValueError, match="odd size"):
        gaussian_kernel(4, 1.0)


def test_sobel_matches_opencv_and_scipy(astronaut):
    img = to_tensor(astronaut)
    magnitude, direction, gx, gy = sobel(img)
    gray = rgb_to_gray(img)[0].double().numpy()
    # OpenCV mirrors the border the same way: equal everywhere
    assert np.abs(gx[0].numpy() - cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3)).max() < 1e-5
    assert np.abs(gy[0].numpy() - cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)).max() < 1e-5
    # SciPy's default border ("reflect" = repeat the edge pixel) differs only on the frame
    interior = (slice(1, -1), slice(1, -1))
    assert np.abs(gx[0].numpy() - ndi.sobel(gray, axis=1))[interior].max() < 1e-5
    assert np.abs(gy[0].numpy() - ndi.sobel(gray, axis=0))[interior].max() < 1e-5
    assert torch.allclose(magnitude, torch.sqrt(gx**2 + gy**2), atol=1e-6)
    assert torch.allclose(direction, torch.atan2(gy, gx))
    assert torch.allclose(sobel(rgb_to_gray(img))[0], magnitude)  # grey input: same result


def test_sobel_directions_of_edges():
    dark_left = torch.zeros(1, 6, 6)
    dark_left[:, :, 3:] = 1  # vertical edge, brighter to the right
    magnitude, direction, gx, gy = sobel(dark_left)
    edge = magnitude[0] > 0
    assert edge[:, 2:4].all() and not edge[:, [0, 1, 4, 5]].any()  # no fake edge at the frame
    assert torch.all(direction[0][edge] == 0)
    assert torch.allclose(sobel(1 - dark_left)[1][0][edge].abs(), torch.tensor(math.pi))
    dark_top = dark_left.transpose(-1, -2)  # horizontal edge, brighter downwards
    _, direction, _, _ = sobel(dark_top)
    assert torch.allclose(direction[0][edge.T], torch.tensor(math.pi / 2))


# ---------------------------------------------------------------------------- preprocessing


def test_normalize_matches_torchvision(astronaut):
    t = to_tensor(astronaut)
    ref = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(t)
    assert torch.allclose(normalize(t), ref, atol=1e-6)
    assert torch.allclose(denormalize(normalize(t)), t, atol=1e-6)
    batch = torch.rand(2, 1, 4, 4)
    assert torch.allclose(normalize(batch, (0.5,), (0.25,)), (batch - 0.5) / 0.25)


def test_normalize_errors():
    with pytest.raises(ValueError, match="3 values but the image has 1 channels"):
        normalize(torch.rand(1, 4, 4))
    with pytest.raises(ValueError, match="denormalize"):
        normalize(normalize(torch.rand(3, 4, 4)))  # normalising twice


def test_channel_stats_tensor_and_loader():
    x = torch.rand(20, 3, 6, 5) * torch.tensor([1.0, 0.5, 0.2]).view(3, 1, 1)
    mean, std = channel_stats(x)
    assert torch.allclose(mean, x.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(std, x.std(dim=(0, 2, 3), unbiased=False), atol=1e-6)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.zeros(20)), batch_size=6
    )
    mean2, std2 = channel_stats(loader)  # batches of (images, labels), uneven last batch
    assert torch.allclose(mean, mean2, atol=1e-6) and torch.allclose(std, std2, atol=1e-6)
    z = normalize(x, mean, std)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    with pytest.raises(ValueError, match="no images"):
        channel_stats([])
    with pytest.raises(ValueError, match=re.escape("[B, C, H, W]")):
        channel_stats(x[0])


def test_train_transforms_accept_numpy_pil_and_tensor(astronaut):
    pipeline = train_transforms(64)
    torch.manual_seed(0)
    for source in (
        astronaut,
        Image.fromarray(astronaut),
        torch.from_numpy(astronaut).permute(2, 0, 1),
    ):
        out = pipeline(source)
        assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    assert not torch.equal(pipeline(astronaut), pipeline(astronaut))  # random views
    names = [type(t).__name__ for t in pipeline.transforms]
    assert names.index("Normalize") < names.index("RandomErasing")


def test_eval_transforms_resize_then_center_crop(astronaut):
    size = 56
    out = eval_transforms(size)(astronaut)
    assert out.shape == (3, size, size)
    assert torch.equal(out, eval_transforms(size)(astronaut))  # deterministic
    resized = v2.functional.resize(torch.from_numpy(astronaut).permute(2, 0, 1), [64])  # 56*256/224
    ref = normalize(v2.functional.center_crop(resized, [size, size]).float() / 255)
    assert torch.allclose(out, ref, atol=1e-5)
    grey = eval_transforms(size, mean=(0.5,), std=(0.5,))(astronaut[:, :, 0])
    assert grey.shape == (1, size, size)


@pytest.mark.parametrize("kind", ["astronaut", "low_contrast"])
def test_equalize_histogram_matches_opencv(kind, astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    if kind == "low_contrast":
        gray = (gray // 4 + 100).astype(np.uint8)  # levels 100..163 only
    ours = to_numpy(equalize_histogram(to_tensor(gray))).astype(int)
    assert np.abs(ours - cv2.equalizeHist(gray).astype(int)).max() <= 1
    assert ours.min() == 0 and ours.max() == 255  # the full range is used


def test_equalize_histogram_constant_image_and_errors():
    flat = torch.full((1, 4, 4), 0.5)
    assert torch.equal(equalize_histogram(flat), flat)
    with pytest.raises(ValueError, match="1-channel images, got 3 channels"):
        equalize_histogram(torch.rand(3, 4, 4))


def test_clahe_matches_opencv_pipeline(astronaut):
    dull = (astronaut // 3 + 60).astype(np.uint8)  # low contrast
    ours = clahe(to_tensor(dull), clip_limit=2.0, tile_grid=(4, 4))
    lab = cv2.cvtColor(dull, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lab[:, :, 0])
    assert np.array_equal(to_numpy(ours), cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))
    assert rgb_to_gray(ours).std() > rgb_to_gray(to_tensor(dull)).std()  # more contrast
    grey = clahe(to_tensor(dull[:, :, 0]))
    assert grey.shape == (1, 128, 128)


# ---------------------------------------------------------------------------- mixing


def pair(seed=0, classes=5, shape=(3, 16, 20)):
    g = torch.Generator().manual_seed(seed)
    x1, x2 = torch.rand(shape, generator=g), torch.rand(shape, generator=g)
    y1, y2 = (
        F.one_hot(torch.tensor(1), classes).float(),
        F.one_hot(torch.tensor(3), classes).float(),
    )
    return x1, y1, x2, y2


def test_mixup_is_a_convex_combination_and_leaves_inputs_alone():
    x1, y1, x2, y2 = pair()
    before = [t.clone() for t in (x1, y1, x2, y2)]
    x, y, lam = mixup(x1, y1, x2, y2, alpha=0.4, generator=torch.Generator().manual_seed(1))
    assert 0 <= lam <= 1
    assert torch.allclose(x, lam * x1 + (1 - lam) * x2)
    assert y.sum().item() == pytest.approx(1) and y[1] == pytest.approx(lam)
    for t, b in zip((x1, y1, x2, y2), before):
        assert torch.equal(t, b)
    _, y_fixed, lam_fixed = mixup(x1, y1, x2, y2, lam=0.7)
    assert lam_fixed == 0.7 and torch.allclose(y_fixed, 0.7 * y1 + 0.3 * y2)


def test_mixup_lambda_is_beta_distributed_and_reproducible():
    x1, y1, x2, y2 = pair()
    g = torch.Generator().manual_seed(0)
    lams = [mixup(x1, y1, x2, y2, alpha=0.2, generator=g)[2] for _ in range(400)]
    assert scipy.stats.kstest(lams, scipy.stats.beta(0.2, 0.2).cdf).pvalue > 1e-3
    again = [mixup(x1, y1, x2, y2, generator=torch.Generator().manual_seed(5))[2] for _ in range(2)]
    assert again[0] == again[1]


def test_cutmix_label_is_the_exact_pasted_fraction():
    zeros, ones = torch.zeros(3, 16, 20), torch.ones(3, 16, 20)
    _, y1, _, y2 = pair()
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        x, y, lam = cutmix(zeros, y1, ones, y2, alpha=1.0, generator=g)
        pasted = x[0].mean().item()  # fraction of pixels that came from the second image
        assert lam == pytest.approx(1 - pasted)
        assert torch.allclose(y, lam * y1 + (1 - lam) * y2) and y.sum().item() == pytest.approx(1)
    assert zeros.sum() == 0 and ones.min() == 1  # inputs unchanged


def test_cutmix_with_given_box_and_inputs_unchanged():
    x1, y1, x2, y2 = pair()
    before = [t.clone() for t in (x1, y1, x2, y2)]
    x, y, lam = cutmix(x1, y1, x2, y2, box=(2, 10, 5, 15))
    assert lam == pytest.approx(1 - 8 * 10 / (16 * 20))
    assert torch.equal(x[:, 2:10, 5:15], x2[:, 2:10, 5:15])
    x[:, 2:10, 5:15] = x1[:, 2:10, 5:15]
    assert torch.equal(x, x1)  # everything outside the box comes from x1
    for t, b in zip((x1, y1, x2, y2), before):
        assert torch.equal(t, b)
    with pytest.raises(ValueError, match="does not fit"):
        cutmix(x1, y1, x2, y2, box=(0, 17, 0, 5))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.floats(0, 1), st.integers(0, 1000))
def test_cutmix_box_fits_and_has_the_requested_size_before_clipping(h, w, lam, seed):
    top, bottom, left, right = _cutmix_box(h, w, lam, torch.Generator().manual_seed(seed))
    assert 0 <= top <= bottom <= h and 0 <= left <= right <= w
    assert bottom - top <= round(h * math.sqrt(1 - lam))
    assert right - left <= round(w * math.sqrt(1 - lam))


def test_batch_versions_pair_a_batch_with_a_permutation_of_itself():
    x = torch.rand(6, 3, 8, 8)
    y = F.one_hot(torch.arange(6), 6).float()
    x0, y0 = x.clone(), y.clone()
    xm, ym, lam = mixup_batch(x, y, alpha=0.4, generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(xm, lam * x + (1 - lam) * x[perm])
    assert torch.allclose(ym.sum(dim=1), torch.ones(6))
    xc, yc, lam = cutmix_batch(x, y, generator=torch.Generator().manual_seed(0))
    assert xc.shape == x.shape and torch.allclose(yc.sum(dim=1), torch.ones(6))
    from_first = (xc == x).all(dim=1).float().mean(dim=(1, 2))  # per image, pixels kept
    assert torch.allclose(from_first[perm != torch.arange(6)], torch.tensor(lam))
    assert torch.equal(x, x0) and torch.equal(y, y0)


@pytest.mark.parametrize("fn", [mixup, cutmix])
def test_mixing_errors(fn):
    x1, y1, x2, y2 = pair()
    with pytest.raises(TypeError, match="one_hot"):
        fn(x1, torch.tensor(1), x2, torch.tensor(3))  # integer class labels
    with pytest.raises(ValueError, match="same shape"):
        fn(x1, y1, x2[:, :8], y2)
    with pytest.raises(ValueError, match="alpha"):
        fn(x1, y1, x2, y2, alpha=0.0)
    with pytest.raises(ValueError, match="looks like HWC"):
        fn(x1.permute(1, 2, 0), y1, x2.permute(1, 2, 0), y2)
