"""Tests for course_utils.data: embedded digits and photos, image folders, digit scenes, loaders."""

from __future__ import annotations

import functools
import socket
import struct
import threading
import time
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.svm import SVC
from torch.utils.data import DataLoader

from course_utils import data, runtime
from course_utils.data import (
    IMAGE_FOLDER,
    PHOTO_NAMES,
    DatasetUnavailable,
    DigitScenes,
    FolderDataset,
    detection_collate,
    digits,
    digits_split,
    digits_split_indices,
    make_image_folder,
    photo,
    photo_pil,
)

# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 16, 28, 32])
def test_digits_shapes_dtypes_range(size):
    images, labels = digits(size)
    assert images.shape == (1797, 1, size, size) and images.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.99
    assert sorted(labels.unique().tolist()) == list(range(10))


def test_digits_are_sklearn_digits_over_16():
    images, labels = digits(8)
    reference = load_digits()
    np.testing.assert_array_equal(images[:, 0].numpy(), (reference.images / 16).astype(np.float32))
    np.testing.assert_array_equal(labels.numpy(), reference.target)


@pytest.mark.parametrize("size", [16, 28, 32])
def test_digits_resize_matches_pil_bilinear(size):
    # When upscaling, torch's bilinear (align_corners=False) and Pillow's bilinear filter sample
    # the same half-pixel-centred grid, so an independent implementation must agree.
    small, _ = digits(8)
    big, _ = digits(size)
    for i in (0, 1, 500, 1796):
        pil = Image.fromarray(small[i, 0].numpy(), mode="F")
        expected = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
        np.testing.assert_allclose(big[i, 0].numpy(), expected, atol=1e-5)


def test_digits_cache_cannot_be_corrupted():
    images, labels = digits(16)
    images.zero_()
    labels.fill_(3)
    images_again, labels_again = digits(16)
    assert images_again.max() > 0.99
    assert sorted(labels_again.unique().tolist()) == list(range(10))


def test_digits_split_is_stratified_disjoint_and_deterministic():
    train_idx, test_idx = digits_split_indices()
    assert len(train_idx) == 1347 and len(test_idx) == 450
    assert sorted(torch.cat([train_idx, test_idx]).tolist()) == list(range(1797))  # disjoint

    x_train, x_test, y_train, y_test = digits_split()
    images, labels = digits()
    assert torch.equal(x_train, images[train_idx]) and torch.equal(y_test, labels[test_idx])
    # Stratified: each class's test count is its share of the whole, within one sample.
    all_counts = torch.bincount(labels, minlength=10).double()
    test_counts = torch.bincount(y_test, minlength=10).double()
    assert torch.all((test_counts - all_counts * 450 / 1797).abs() <= 1)
    assert torch.equal(
        torch.bincount(y_train, minlength=10) + test_counts.long(), all_counts.long()
    )

    again = digits_split()
    assert all(torch.equal(a, b) for a, b in zip(again, (x_train, x_test, y_train, y_test)))
    assert not torch.equal(digits_split_indices(seed=1)[1], test_idx)
    assert digits_split(size=28)[0].shape == (1347, 1, 28, 28)


def test_svc_baseline_on_the_fixed_split():
    # The lessons compare CNNs with this classic baseline. gamma=0.001 is tuned for the original
    # 0..16 pixel values, so the [0, 1] tensors are scaled back by 16 (an RBF kernel is not
    # scale-free: on [0, 1] values the same gamma would need to be 256 times larger).
    x_train, x_test, y_train, y_test = digits_split()
    svc = SVC(gamma=0.001).fit(x_train.flatten(1).numpy() * 16, y_train.numpy())
    accuracy = svc.score(x_test.flatten(1).numpy() * 16, y_test.numpy())
    assert accuracy >= 0.985


# --------------------------------------------------------------------------------------------
# photos
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_photo_loads_offline_as_uint8_rgb(name):
    image = photo(name)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= 256
    assert image.std() > 10  # a real picture, not a blank array


def test_photo_size_sets_the_short_side_and_keeps_aspect():
    original = photo("chelsea")  # 300 x 451
    small = photo("chelsea", size=64)
    assert small.shape == (64, round(451 * 64 / 300), 3) and small.dtype == np.uint8
    # Antialiased shrinking keeps the average colour.
    np.testing.assert_allclose(small.mean((0, 1)), original.mean((0, 1)), atol=2)
    tall = photo("astronaut", size=100)  # square photo stays square
    assert tall.shape == (100, 100, 3)


def test_photo_returns_copies_and_pil_version():
    photo("coffee")[:] = 0
    photo("coffee", size=32)[:] = 0  # resized photos are ordinary writable arrays too
    assert photo("coffee").max() > 0
    pil = photo_pil("rocket", size=50)
    assert pil.mode == "RGB" and pil.size == (round(640 * 50 / 427), 50)
    np.testing.assert_array_equal(np.asarray(pil), photo("rocket", size=50))


# --------------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------------


def test_shipped_image_folder_is_small_and_complete():
    files = sorted(IMAGE_FOLDER.rglob("*.jpg"))
    assert len(files) == 32
    assert sum(f.stat().st_size for f in files) < 150_000
    assert {f.parent.name for f in files} == {"astronaut", "cat", "coffee", "rocket"}
    with Image.open(files[0]) as image:
        assert image.size == (64, 64) and image.mode == "RGB"


def test_folder_dataset_matches_torchvision_image_folder():
    ours = FolderDataset(IMAGE_FOLDER)
    reference = torchvision.datasets.ImageFolder(str(IMAGE_FOLDER))
    assert ours.classes == reference.classes == ["astronaut", "cat", "coffee", "rocket"]
    assert ours.class_to_idx == reference.class_to_idx
    assert [(str(p), i) for p, i in ours.samples] == reference.samples
    for i in (0, 13, 31):
        (image, label), (ref_image, ref_label) = ours[i], reference[i]
        assert label == ref_label and image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), np.asarray(ref_image))
    with_transform = FolderDataset(IMAGE_FOLDER, transform=torchvision.transforms.ToTensor())
    assert with_transform[5][0].shape == (3, 64, 64)


def test_make_image_folder_is_deterministic_and_reproduces_the_shipped_files(tmp_path):
    first = make_image_folder(tmp_path / "a", seed=0)
    second = make_image_folder(tmp_path / "b", seed=0)
    other = make_image_folder(tmp_path / "c", per_class=2, seed=1)
    relative = sorted(p.relative_to(first) for p in first.rglob("*.jpg"))
    assert relative == sorted(p.relative_to(IMAGE_FOLDER) for p in IMAGE_FOLDER.rglob("*.jpg"))
    for path in relative:
        assert (first / path).read_bytes() == (second / path).read_bytes()
        # The shipped files came from this code (pixel tolerance for other JPEG encoder builds).
        regenerated = np.asarray(Image.open(first / path), dtype=np.float32)
        shipped = np.asarray(Image.open(IMAGE_FOLDER / path), dtype=np.float32)
        assert np.abs(regenerated - shipped).mean() < 1.0
    assert (other / "cat" / "cat_0.jpg").read_bytes() != (first / "cat" / "cat_0.jpg").read_bytes()
    # Writing again with fewer images per class leaves no stale files behind.
    make_image_folder(first, per_class=3)
    assert len(FolderDataset(first)) == 4 * 3


def test_folder_dataset_errors_and_hidden_entries(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FolderDataset(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no class folders"):
        FolderDataset(tmp_path)
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match="has no image ending in"):
        FolderDataset(tmp_path)
    Image.new("L", (5, 4), color=200).save(tmp_path / "dog" / "a.PNG")  # grey, upper-case suffix
    (tmp_path / "dog" / "._a.png").write_bytes(b"macOS metadata, not a PNG")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    dataset = FolderDataset(tmp_path)
    assert dataset.classes == ["dog"] and len(dataset) == 1
    image, label = dataset[0]
    assert image.mode == "RGB" and image.size == (5, 4) and label == 0


# --------------------------------------------------------------------------------------------
# digit scenes
# --------------------------------------------------------------------------------------------

SMALL = dict(image_size=64, digit_size=(12, 30))


def check_scene(dataset: DigitScenes, index: int) -> None:
    """Everything a scene promises, recomputed independently from its masks."""
    image, target = dataset[index]
    size = dataset.image_size
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
    k = len(labels)
    assert 1 <= k <= dataset.max_digits  # min_digits are tried, crowded scenes skip some
    assert boxes.shape == (k, 4) and boxes.dtype == torch.float32
    assert labels.dtype == torch.int64 and ((labels >= 1) & (labels <= 10)).all()
    assert masks.shape == (k, size, size) and masks.dtype == torch.uint8
    assert target["image_id"].dtype == torch.int64 and target["image_id"].item() == index

    masks_np = masks.numpy()
    assert set(np.unique(masks_np)) <= {0, 1}
    for mask, box in zip(masks_np, boxes.tolist()):
        rows, cols = np.nonzero(mask)
        assert len(rows) > 0
        # Pixel-edge convention: x2, y2 are one past the last mask column, row.
        assert box == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    assert masks_np.sum(0).max() <= 1  # no pixel belongs to two digits
    for a in range(k):  # and every two digits keep the promised 2-pixel gap
        for b in range(a + 1, k):
            (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = boxes[a].tolist(), boxes[b].tolist()
            assert max(bx1 - ax2, ax1 - bx2, by1 - ay2, ay1 - by2) >= 2

    ids = torch.arange(1, k + 1)[:, None, None]
    assert torch.equal(target["instance_map"], (masks.long() * ids).sum(0))
    assert torch.equal(target["semantic_mask"], (masks.long() * labels[:, None, None]).sum(0))
    assert target["semantic_mask"].dtype == target["instance_map"].dtype == torch.int64
    digit_labels = digits()[1]
    assert torch.equal(labels, digit_labels[target["digit_ids"]] + 1)
    assert set(target["digit_ids"].tolist()) <= set(dataset.digit_pool.tolist())


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    index=st.integers(0, 9),
    max_digits=st.integers(1, 6),
    split=st.sampled_from(["train", "test"]),
)
def test_digit_scene_geometry(seed, index, max_digits, split):
    dataset = DigitScenes(10, max_digits=max_digits, split=split, seed=seed, **SMALL)
    check_scene(dataset, index)


def test_default_digit_scenes_are_valid():
    dataset = DigitScenes(num_scenes=3)
    assert len(dataset) == 3 and DigitScenes.CLASSES[0] == "background"
    assert DigitScenes.CLASSES[1:] == tuple("0123456789")
    for index in range(3):
        check_scene(dataset, index)


def test_digit_scenes_are_deterministic_and_order_independent():
    first = DigitScenes(num_scenes=6, seed=3, **SMALL)
    second = DigitScenes(num_scenes=6, seed=3, **SMALL)
    forward = [first[i] for i in range(6)]
    backward = [second[i] for i in reversed(range(6))][::-1]
    for (image_a, target_a), (image_b, target_b) in zip(forward, backward):
        assert torch.equal(image_a, image_b)
        assert target_a.keys() == target_b.keys()
        assert all(torch.equal(target_a[key], target_b[key]) for key in target_a)
    other_seed = DigitScenes(num_scenes=6, seed=4, **SMALL)
    other_split = DigitScenes(num_scenes=6, seed=3, split="test", **SMALL)
    assert not torch.equal(other_seed[0][0], forward[0][0])
    assert not torch.equal(other_split[0][0], forward[0][0])


def test_held_out_scenes_use_only_held_out_digits():
    train_idx, test_idx = (set(i.tolist()) for i in digits_split_indices())
    for split, allowed in (("train", train_idx), ("test", test_idx)):
        dataset = DigitScenes(num_scenes=30, split=split, **SMALL)
        assert set(dataset.digit_pool.tolist()) == allowed
        used = set(torch.cat([dataset[i][1]["digit_ids"] for i in range(30)]).tolist())
        assert len(used) > 30 and used <= allowed


def test_crowded_scenes_skip_digits_but_keep_one():
    # 40-pixel digits in a 48-pixel image: only one fits, whatever was asked for.
    dataset = DigitScenes(
        num_scenes=5, image_size=48, min_digits=4, max_digits=4, digit_size=(40, 40)
    )
    counts = [len(dataset[i][1]["labels"]) for i in range(5)]
    assert all(1 <= c < 4 for c in counts)


def test_crowded_scenes_keep_digits_apart():
    # 20 small digits asked for in a 64x64 image: many are placed edge to edge, the rest skipped.
    dataset = DigitScenes(5, image_size=64, min_digits=20, max_digits=20, digit_size=(8, 14))
    for index in range(5):
        check_scene(dataset, index)


def test_masks_are_the_digit_intensity_above_0_3():
    # At digit_size 8 the digits are pasted unscaled, so each mask, cut to its box, must be
    # exactly the original 8x8 digit thresholded at 0.3 and cut to its own tight box.
    dataset = DigitScenes(5, image_size=32, max_digits=3, digit_size=(8, 8), split="test")
    images = digits(8)[0][:, 0]
    for index in range(5):
        _, target = dataset[index]
        for mask, box, digit_id in zip(
            target["masks"], target["boxes"].long(), target["digit_ids"]
        ):
            x1, y1, x2, y2 = box.tolist()
            expected = images[digit_id] > 0.3
            rows, cols = expected.any(1).nonzero()[:, 0], expected.any(0).nonzero()[:, 0]
            expected = expected[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            assert torch.equal(mask[y1:y2, x1:x2].bool(), expected)


@pytest.mark.parametrize(
    "builder",
    [
        torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn,
        torchvision.models.detection.maskrcnn_resnet50_fpn,
    ],
)
def test_digit_scenes_train_torchvision_detectors(builder):
    torch.manual_seed(0)
    loader = DataLoader(
        DigitScenes(num_scenes=2, **SMALL), batch_size=2, collate_fn=detection_collate
    )
    images, targets = next(iter(loader))
    assert isinstance(images, list) and len(images) == len(targets) == 2
    model = builder(weights=None, weights_backbone=None, num_classes=11, min_size=64, max_size=64)
    losses = model.train()(images, targets)
    assert len(losses) >= 4 and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()  # the targets give gradients to the whole model


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(min_digits=3, max_digits=2), "min_digits"),
        (dict(min_digits=0), "min_digits"),
        (dict(split="val"), "split must be 'train' or 'test'"),
        (dict(image_size=32, digit_size=(20, 44)), "image_size"),
        (dict(digit_size=(4, 20)), "digit_size"),
        (dict(digit_size=(30, 20)), "digit_size"),
        (dict(digit_size=(30,)), "digit_size"),
        (dict(num_scenes=0), "num_scenes"),
    ],
)
def test_digit_scenes_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DigitScenes(**kwargs)


def test_digit_scenes_index_out_of_range():
    with pytest.raises(IndexError, match="out of range"):
        DigitScenes(num_scenes=2, **SMALL)[2]


def test_digit_scenes_and_scene_masks_are_the_dataset_in_memory():
    dataset = DigitScenes(3, split="test", **SMALL)
    boxes = data.digit_scenes(3, "test", **SMALL)
    masks = data.scene_masks(3, "test", **SMALL)
    with_masks = data.digit_scenes(3, "test", keys=("boxes", "labels", "masks"), **SMALL)
    assert len(boxes) == len(masks) == len(with_masks) == 3
    for i in range(3):
        image, target = dataset[i]
        assert torch.equal(boxes[i][0], image) and torch.equal(masks[i][0], image)
        assert set(boxes[i][1]) == {"boxes", "labels"}
        assert set(with_masks[i][1]) == {"boxes", "labels", "masks"}
        assert all(torch.equal(v, target[k]) for k, v in with_masks[i][1].items())
        assert torch.equal(masks[i][1], target["semantic_mask"])


def test_scene_helpers_keep_their_old_import_paths():
    from course_utils import detection, segmentation
    from course_utils.detection import detector

    assert detection.digit_scenes is detector.digit_scenes is data.digit_scenes
    assert segmentation.scene_masks is data.scene_masks


# --------------------------------------------------------------------------------------------
# online loaders, without a network
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Make every socket connection fail, as on a train, and use an empty cache."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.setattr(runtime, "_ONLINE", None)  # forget what an earlier probe found
    return tmp_path


def test_download_without_network_raises_a_helpful_error(no_network):
    with pytest.raises(DatasetUnavailable, match=r"no network.*CIFAR-10.*fallback='digits'"):
        data.cifar10(download=True)
    assert runtime._ONLINE is False  # the network really was probed, and found missing


def test_missing_dataset_without_download_raises(no_network):
    with pytest.raises(DatasetUnavailable, match="MNIST is not in") as error:
        data.mnist(download=False)
    assert str(no_network / "datasets") in str(error.value)
    assert "download=True" in str(error.value)


def test_failed_download_marks_offline(no_network, monkeypatch):
    monkeypatch.setattr(runtime, "_ONLINE", True)  # the probe said yes, then the network dropped
    with pytest.raises(DatasetUnavailable, match="Downloading CIFAR-10 .* failed"):
        data.cifar10(download=True)
    assert runtime.online() is False


def test_no_network_message_names_the_source_and_the_folder(no_network):
    with pytest.raises(DatasetUnavailable) as error:
        data.mnist(download=True)
    message = str(error.value)
    for mirror in torchvision.datasets.MNIST.mirrors:
        assert mirror in message
    assert f"into {no_network / 'datasets'};" in message
    assert message.endswith("use the embedded digits with mnist(fallback='digits').")


@pytest.fixture
def network_looks_up(monkeypatch, tmp_path):
    """The connection probe said yes (no real network is touched), with an empty cache."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.setattr(runtime, "_ONLINE", True)
    return tmp_path


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (TimeoutError(), "TimeoutError"),  # a stalled connection (socket.timeout is TimeoutError)
        (RuntimeError(), "RuntimeError"),  # an error without a message
        (urllib.error.URLError(TimeoutError()), "TimeoutError"),  # "<urlopen error >"
        (RuntimeError("Error downloading x:\nTried http://a/, got:\nHTTP Error 404"), "got: HTTP"),
    ],
    ids=["stalled", "empty message", "wrapped empty message", "several lines"],
)
def test_failed_download_always_says_why(network_looks_up, monkeypatch, failure, reason):
    timeouts = []

    def download(self):  # CIFAR-10's download, failing after recording the socket timeout
        timeouts.append(socket.getdefaulttimeout())
        raise failure

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", download)
    with pytest.raises(DatasetUnavailable) as error:
        data.cifar10(download=True)
    message = str(error.value)
    source, folder = torchvision.datasets.CIFAR10.url, network_looks_up / "datasets"
    assert message.startswith(f"Downloading CIFAR-10 from {source} into {folder} failed: ")
    after_colon = message.split(" failed: ", 1)[1].split(". Check the connection", 1)[0]
    assert after_colon.strip() and reason in after_colon and "\n" not in after_colon
    assert message.endswith("use the embedded digits with cifar10(fallback='digits').")
    assert error.value.__cause__ is failure
    assert timeouts and 0 < timeouts[0] <= 15  # the download ran under download_timeout()
    assert socket.getdefaulttimeout() is None  # and the timeout was lifted afterwards


def test_a_stalled_mirror_gives_up_instead_of_hanging(network_looks_up, monkeypatch):
    # A local server that accepts connections and never answers, as a stalled mirror does. The
    # real MNIST download runs against it, with a short download timeout so the test is quick.
    for proxy in ("http_proxy", "https_proxy", "all_proxy"):  # talk to it directly
        monkeypatch.delenv(proxy, raising=False)
        monkeypatch.delenv(proxy.upper(), raising=False)
    server = socket.create_server(("127.0.0.1", 0))
    unstall = threading.Timer(20, server.close)  # should the timeout not work: fail, not hang
    unstall.start()
    mirror = f"http://127.0.0.1:{server.getsockname()[1]}/"
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [mirror])
    monkeypatch.setattr(runtime, "download_timeout", functools.partial(runtime.download_timeout, 1))
    start = time.monotonic()
    try:
        with pytest.raises(DatasetUnavailable, match=f"from {mirror} into .* failed: timed out"):
            data.mnist(download=True)
    finally:
        unstall.cancel()
        server.close()
    assert time.monotonic() - start < 10
    assert runtime._ONLINE is False


def test_digits_fallback_is_shaped_like_the_requested_set(no_network, capsys):
    cifar = data.cifar10(download=True, fallback="digits")
    image, label = cifar[0]
    assert len(cifar) == 1347 and image.shape == (3, 32, 32) and label.dtype == torch.int64
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    assert capsys.readouterr().out == ""  # silent unless verbose

    test_set = data.mnist(train=False, fallback="digits", verbose=True)
    assert len(test_set) == 450 and test_set[0][0].shape == (1, 28, 28)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "MNIST" in lines[0] and "digits" in lines[0]


def _write_idx(path, magic, array):
    """Write ``array`` (uint8) in MNIST's IDX format: magic, the sizes, then the bytes."""
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_dataset_already_on_disk_loads_without_network(no_network):
    raw = no_network / "datasets" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 5), ("t10k", 3)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", 2051, rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, np.arange(n) % 10)
    train_set = data.load_dataset("mnist")  # default root = cache_dir("datasets")
    assert len(train_set) == 5 and train_set[4][1] == 4
    assert isinstance(train_set[0][0], Image.Image)
    assert len(data.mnist(train=False, download=True)) == 3  # no download attempted: it is there


def test_load_dataset_names(no_network):
    digits_test = data.load_dataset("digits", train=False, size=16)
    assert len(digits_test) == 450 and digits_test[0][0].shape == (1, 16, 16)
    assert len(data.load_dataset("mnist", fallback="digits")) == 1347
    fashion_val = data.load_dataset("fashion_mnist", split="val")  # shipped: no network needed
    assert len(fashion_val) == 5000 and fashion_val[0][0].shape == (1, 28, 28)
    with pytest.raises(ValueError, match="cifar10, mnist, fashion_mnist, digits"):
        data.load_dataset("imagenet")


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="one of astronaut, chelsea"):
        photo("lena")
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        photo("astronaut", size=0)
    with pytest.raises(ValueError, match=r"one of \(8, 16, 28, 32\)"):
        digits(10)
    with pytest.raises(ValueError, match="test_size"):
        digits_split(test_size=1.5)
    with pytest.raises(ValueError, match="fallback must be None or 'digits'"):
        data.cifar10(fallback="mnist")
    with pytest.raises(ValueError, match="per_class"):
        make_image_folder(per_class=0)


# ------------------------------------------------------------------------------------- circles


def test_circle_mask_known_case():
    mask = data.circle_mask(5, cx=2.5, cy=2.5, r=1.2)  # only pixel (2, 2) and its 4 neighbours
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[2, 1:4] = expected[1:4, 2] = True
    assert torch.equal(mask, expected)
    # centred on a pixel corner, r = 0.7: the four nearest centres lie 0.707 away, outside
    assert not data.circle_mask(5, 2.0, 2.0, 0.7).any()


def test_circles_are_deterministic_and_consistent():
    images, masks = data.circles(12, size=32, seed=3)
    assert images.shape == (12, 3, 32, 32) and images.dtype == torch.float32
    assert masks.shape == (12, 32, 32) and masks.dtype == torch.int64
    assert 0 <= images.min() and images.max() <= 1
    assert set(masks.unique().tolist()) == {0, 1}
    again, again_masks = data.circles(12, size=32, seed=3)
    assert torch.equal(images, again) and torch.equal(masks, again_masks)
    assert not torch.equal(masks, data.circles(12, size=32, seed=4)[1])
    for image, mask in zip(images, masks):  # the two colours differ by >= 0.5 before noise
        inside = image[:, mask == 1].mean(1)
        outside = image[:, mask == 0].mean(1)
        assert torch.linalg.vector_norm(inside - outside) > 0.35


def test_circles_bad_input():
    with pytest.raises(ValueError, match="size"):
        data.circles(4, size=4)
    with pytest.raises(ValueError, match="num_images"):
        data.circles(0)


def test_coloured_digits_two_domains():
    photo_x, photo_y = data.coloured_digits(12, "train", size=24)
    plain_x, plain_y = data.coloured_digits(12, "train", size=24, background="plain")
    assert photo_x.shape == plain_x.shape == (12, 3, 24, 24)
    assert photo_y.dtype == torch.int64 and 0 <= photo_y.min() and photo_y.max() <= 9

    def largest_flat_share(image):  # the share of pixels having the image's most common colour
        _, counts = image.flatten(1).T.unique(dim=0, return_counts=True)
        return counts.max().item() / image[0].numel()

    assert all(largest_flat_share(x) > 0.3 for x in plain_x)  # one background colour
    assert all(largest_flat_share(x) < 0.1 for x in photo_x)  # a photo's texture
    assert not torch.allclose(photo_x, plain_x)
    again, _ = data.coloured_digits(12, "train", size=24)
    assert torch.equal(photo_x, again)
    with pytest.raises(ValueError, match="background"):
        data.coloured_digits(4, background="noise")
