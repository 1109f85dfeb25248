"""Neural style transfer: Gram matrices, feature extractors and the pixel optimisation."""

import socket
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import VGG19_Weights, vgg19

from course_utils import runtime, style
from course_utils.style import (
    _VGG19_CONTENT_LAYERS,
    _VGG19_LAYERS,
    _VGG19_STYLE_LAYERS,
    FeatureExtractor,
    WeightsUnavailable,
    _random_features,
    _vgg19_features,
    gram_matrix,
    style_extractor,
    style_transfer,
)

pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # small models: see conftest.py


@pytest.fixture(scope="module")
def extractor():
    return style_extractor("random")


def _image(seed: int, h: int = 32, w: int = 32) -> torch.Tensor:
    # A smooth, structured picture (not white noise): a content loss has something to keep.
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")


# --------------------------------------------------------------------------------------------
# gram_matrix
# --------------------------------------------------------------------------------------------


def test_gram_matrix_matches_a_hand_computation():
    # One image, C=2 channels, 1x2 pixels: F = [[1, 2], [3, 4]].
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    # F F^T = [[1+4, 3+8], [3+8, 9+16]], divided by C*H*W = 2*1*2 = 4.
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(features), expected)


def test_gram_matrix_shape_symmetry_and_normalisation():
    x = torch.randn(2, 5, 6, 7)
    g = gram_matrix(x)
    assert g.shape == (2, 5, 5)
    torch.testing.assert_close(g, g.transpose(1, 2))
    # The diagonal holds each channel's mean square, divided by C.
    torch.testing.assert_close(torch.diagonal(g, dim1=1, dim2=2), x.pow(2).mean((2, 3)) / 5)
    # Normalised by the pixel count: a tiled (2x larger) image has the same Gram matrix.
    torch.testing.assert_close(gram_matrix(x.repeat(1, 1, 2, 1)), g)


def test_gram_matrix_ignores_where_features_are():
    x = torch.randn(1, 4, 8, 8)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    shuffled = x.flatten(2)[:, :, perm].reshape(x.shape)
    torch.testing.assert_close(gram_matrix(shuffled), gram_matrix(x))


@pytest.mark.parametrize("shape", [(4, 8, 8), (1, 1, 4, 8, 8), (64,)])
def test_gram_matrix_rejects_non_4d_input(shape):
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        gram_matrix(torch.zeros(shape))


# --------------------------------------------------------------------------------------------
# Feature extractors
# --------------------------------------------------------------------------------------------


def test_extractor_returns_requested_layers_and_is_frozen(extractor):
    out = extractor(torch.rand(2, 3, 32, 48))
    assert set(out) == {"content", "style"}
    assert len(out["content"]) == len(style._RANDOM_CONTENT_LAYERS)
    assert len(out["style"]) == len(style._RANDOM_STYLE_LAYERS)
    # relu{k} comes before pool{k}: stage k sees an image pooled k - 1 times.
    for k, (f, width) in enumerate(zip(out["style"], (64, 128, 256, 256))):
        assert f.shape == (2, width, 32 >> k, 48 >> k)
    assert all(not p.requires_grad for p in extractor.parameters())
    assert not extractor.training


def test_extractor_accepts_indices_and_stops_at_the_deepest_layer():
    net = _random_features(widths=(8, 16, 16))  # 9 modules: conv, relu, pool per stage
    ex = FeatureExtractor(net, content_layers=[4], style_layers=["relu1", 1])
    assert len(ex.features) == 5  # nothing after relu2 (index 4) is kept
    out = ex(torch.rand(1, 3, 16, 16))
    assert out["content"][0].shape == (1, 16, 8, 8)
    torch.testing.assert_close(out["style"][0], out["style"][1])  # "relu1" is index 1


def test_extractor_errors():
    net = _random_features(widths=(8,))
    with pytest.raises(ValueError, match="no layer named"):
        FeatureExtractor(net, ["relu9"], [])
    with pytest.raises(ValueError, match="index"):
        FeatureExtractor(net, [3], [])
    with pytest.raises(TypeError, match="nn.Sequential"):
        FeatureExtractor(nn.Conv2d(3, 8, 3), [0], [])
    ex = FeatureExtractor(net, [1], [1])
    with pytest.raises(ValueError, match="channels last"):
        ex(torch.rand(1, 16, 16, 3))
    with pytest.raises(ValueError, match=r"\[0, 255\]: use x / 255"):
        ex(torch.rand(1, 3, 16, 16) * 255)


def test_random_features_is_deterministic():
    a, b, c = _random_features(seed=3), _random_features(seed=3), _random_features(seed=4)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name


def test_vgg19_layer_names_point_at_the_right_modules():
    net = _vgg19_features(weights=None)  # the bare architecture: no download
    assert [name for name, _ in net.named_children()] == list(_VGG19_LAYERS)
    for name in ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1"):
        index = _VGG19_LAYERS.index(name)
        assert isinstance(net[index], nn.Conv2d), name
        assert isinstance(net[index + 1], nn.ReLU), name
        assert _VGG19_LAYERS[index + 1] == name.replace("conv", "relu")
    assert _VGG19_LAYERS.index("conv4_2") == 21  # torchvision's vgg19().features[21]
    assert set(_VGG19_STYLE_LAYERS + _VGG19_CONTENT_LAYERS) <= set(_VGG19_LAYERS)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net)  # pool="avg" by default
    assert isinstance(_vgg19_features(weights=None, pool="max")[4], nn.MaxPool2d)


def test_vgg19_without_network_raises_weights_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))  # an empty cache: nothing downloaded before
    monkeypatch.setattr(runtime, "online", lambda *args, **kwargs: False)
    with pytest.raises(WeightsUnavailable, match="offline") as error:
        _vgg19_features()
    assert VGG19_Weights.DEFAULT.url in str(error.value)  # it says what it would have fetched
    assert str(tmp_path / "weights") in str(error.value)  # and where to
    with pytest.raises(WeightsUnavailable):
        style_extractor("vgg19")
    assert style_extractor("auto").kind == "random"  # the fallback, silently


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """torch.hub.load_state_dict_from_url replaced, with an empty COURSE_CACHE and a network that
    looks present: ``calls`` records each call, ``answer`` is what the fake returns or raises."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch's own cache: must stay empty
    monkeypatch.setattr(runtime, "online", lambda *args, **kwargs: True)
    monkeypatch.setattr(runtime, "_ONLINE", runtime._ONLINE)  # a failure calls mark_offline()
    hub = {"calls": [], "answer": None}

    def load_state_dict_from_url(url, **kwargs):
        hub["calls"].append((url, kwargs, socket.getdefaulttimeout()))
        if isinstance(hub["answer"], BaseException):
            raise hub["answer"]
        return hub["answer"]

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", load_state_dict_from_url)
    return hub


def test_vgg19_weights_go_to_the_course_cache(fake_hub, tmp_path):
    reference = vgg19()  # stands for the ImageNet weights: any values will do
    fake_hub["answer"] = reference.state_dict()
    net = _vgg19_features()
    [(url, kwargs, timeout)] = fake_hub["calls"]
    assert url == VGG19_Weights.DEFAULT.url
    assert timeout is not None and timeout <= 15  # a stalled server gives up, never hangs
    assert kwargs["model_dir"] == str(tmp_path / "cache" / "weights")  # where every download goes
    assert kwargs["check_hash"]  # the file name's hash prefix is checked
    assert not (tmp_path / "torch").exists()  # nothing lands in torch's own cache
    for name in ("conv1_1", "conv4_2", "conv5_4"):  # the net is built from those weights
        assert torch.equal(
            net[_VGG19_LAYERS.index(name)].weight,
            reference.features[_VGG19_LAYERS.index(name)].weight,
        )


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (TimeoutError(), "TimeoutError"),  # a stalled server, as the socket timeout reports it
        (RuntimeError(), "RuntimeError"),
        (OSError("  "), "OSError"),
        (ConnectionResetError("Connection reset by peer"), "Connection reset by peer"),
    ],
    ids=["stalled server", "empty message", "blank message", "with a message"],
)
def test_failed_vgg19_download_always_says_why(fake_hub, tmp_path, failure, reason):
    fake_hub["answer"] = failure
    with pytest.raises(WeightsUnavailable) as error:
        _vgg19_features()
    message = str(error.value)
    assert message.startswith(f"Downloading the VGG19 weights from {VGG19_Weights.DEFAULT.url}")
    assert f" into {tmp_path / 'cache' / 'weights'} failed: " in message
    after_colon = message.split(" failed: ", 1)[1].split("; use the offline network", 1)[0]
    assert after_colon.strip() and reason in after_colon  # never "failed: ;"
    assert message.endswith('use the offline network instead: style_extractor("random").')
    assert error.value.__cause__ is failure
    assert runtime._ONLINE is False  # the next loader does not wait on the network again


def test_unreadable_cached_vgg19_weights_say_so(fake_hub, tmp_path, monkeypatch):
    cached = runtime.cache_dir("weights") / Path(VGG19_Weights.DEFAULT.url).name
    cached.write_bytes(b"half a file")
    monkeypatch.setattr(runtime, "online", lambda *args, **kwargs: False)  # cached: no network
    monkeypatch.setattr(runtime, "_ONLINE", None)
    fake_hub["answer"] = RuntimeError()
    with pytest.raises(WeightsUnavailable, match="delete the file to download it again") as error:
        _vgg19_features()
    assert str(error.value).startswith(f"Reading the VGG19 weights from {cached} failed: Runt")
    assert runtime._ONLINE is None  # a bad file says nothing about the network: not marked offline


# --------------------------------------------------------------------------------------------
# style_transfer
# --------------------------------------------------------------------------------------------


def test_style_transfer_reduces_the_loss(extractor):
    content, style_image = _image(0), _image(1, 40, 24)  # the sizes may differ
    out, history = style_transfer(content, style_image, extractor, steps=20, progress=False)
    assert out.shape == content.shape
    assert 0 <= out.min() and out.max() <= 1
    assert set(history) == {"content", "style", "total"}
    assert all(len(v) == 20 for v in history.values())
    assert history["total"][-1] < 0.5 * history["total"][0]
    assert history["style"][-1] < 0.5 * history["style"][0]


def test_content_only_keeps_the_content(extractor):
    content = _image(2)
    out, history = style_transfer(
        content, _image(3), extractor, steps=10, style_weight=0.0, progress=False
    )
    assert history["content"][0] == 0  # init="content": already at the optimum
    assert (out - content).abs().max() < 0.05


def test_style_transfer_lbfgs_noise_and_callback(extractor):
    seen = []
    torch.manual_seed(0)
    out, history = style_transfer(
        _image(4)[0],
        _image(5)[0],
        extractor,
        steps=3,
        init="noise",
        optimizer="lbfgs",
        progress=False,
        callback=lambda step, image: seen.append(step),
    )
    assert out.shape == (1, 3, 32, 32)
    assert seen == [0, 1, 2]
    assert history["total"][-1] < history["total"][0]


def test_style_transfer_rejects_bad_images(extractor):
    good = _image(0)
    with pytest.raises(TypeError, match="float"):
        style_transfer((good * 255).to(torch.uint8), good, extractor, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 255\]: use x / 255"):
        style_transfer(good, good * 255, extractor, steps=1, progress=False)
    with pytest.raises(ValueError, match="channels last"):
        style_transfer(good[0].permute(1, 2, 0), good, extractor, steps=1, progress=False)
    with pytest.raises(ValueError, match="one content image"):
        style_transfer(good.repeat(2, 1, 1, 1), good, extractor, steps=1, progress=False)
    with pytest.raises(ValueError, match="init"):
        style_transfer(good, good, extractor, steps=1, init="style", progress=False)
    with pytest.raises(ValueError, match="layer_weights"):
        style_transfer(good, good, extractor, steps=1, layer_weights=[1.0], progress=False)
