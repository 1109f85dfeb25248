"""The shipped Fashion-MNIST: the files, the three splits, and what a damaged copy does."""

import gzip
import shutil

import numpy as np
import pytest
import torch

from course_utils import data
from course_utils.data import fashion


def test_splits_have_the_published_sizes_and_balanced_classes():
    x_train, y_train = data.fashion_mnist("train")
    x_val, y_val = data.fashion_mnist("val")
    x_test, y_test = data.fashion_mnist("test")
    assert x_train.shape == (55_000, 1, 28, 28) and x_val.shape == (5_000, 1, 28, 28)
    assert x_test.shape == (10_000, 1, 28, 28)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert 0 <= x_train.min() and x_train.max() <= 1 and x_train.max() == 1
    # the published data: 6,000 training and 1,000 test images of each class
    assert torch.bincount(y_test).tolist() == [1000] * 10
    assert torch.bincount(y_val).tolist() == [500] * 10
    assert torch.bincount(y_train).tolist() == [5500] * 10
    assert len(data.FASHION_CLASSES) == 10 and data.FASHION_CLASSES[9] == "ankle boot"


def test_validation_is_disjoint_from_training_and_fixed():
    raw = fashion._part("train")[0].flatten(1)
    val = set(fashion._val_indices().tolist())
    assert len(val) == 5000
    x_val, _ = data.fashion_mnist("val", dtype="uint8")
    x_train, _ = data.fashion_mnist("train", dtype="uint8")
    # the two splits together are exactly the original 60,000 training images, in order
    together = torch.empty_like(raw)
    is_val = torch.zeros(60_000, dtype=torch.bool)
    is_val[sorted(val)] = True
    together[is_val], together[~is_val] = x_val.flatten(1), x_train.flatten(1)
    assert torch.equal(together, raw)
    first = fashion._val_indices()[:5].tolist()
    fashion._val_indices.cache_clear()
    assert fashion._val_indices()[:5].tolist() == first  # the same draw every time


def test_uint8_and_float_are_the_same_pixels_and_copies():
    x8, y = data.fashion_mnist("test", dtype="uint8")
    xf, _ = data.fashion_mnist("test")
    assert x8.dtype == torch.uint8 and torch.equal(x8.float() / 255, xf)
    x8[0] = 0
    y[0] = 7
    again, y_again = data.fashion_mnist("test", dtype="uint8")
    assert again[0].sum() > 0 and y_again[0] == 9  # the caller's edit did not reach the cache


def test_files_match_the_published_hashes():
    for name in fashion._FILES:
        path = fashion.FASHION_DIR / name
        assert path.exists(), path
    # the loader checks each file itself; a good file reads with the published shape
    labels = fashion._read_idx(fashion.FASHION_DIR / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10_000,) and labels.dtype == np.uint8


@pytest.fixture
def copy_of_the_data(tmp_path, monkeypatch):
    for name in fashion._FILES:
        shutil.copy(fashion.FASHION_DIR / name, tmp_path / name)
    monkeypatch.setattr(fashion, "FASHION_DIR", tmp_path)
    fashion._part.cache_clear()
    fashion._val_indices.cache_clear()
    yield tmp_path
    fashion._part.cache_clear()
    fashion._val_indices.cache_clear()


def test_a_truncated_file_is_refused_by_name(copy_of_the_data):
    path = copy_of_the_data / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(
        OSError, match="t10k-images-idx3-ubyte.gz is damaged or truncated.*git checkout"
    ):
        data.fashion_mnist("test")


def test_an_edited_file_is_refused_even_when_it_still_decompresses(copy_of_the_data):
    path = copy_of_the_data / "train-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(path.read_bytes()))
    labels[-1] = (labels[-1] + 1) % 10  # one wrong label: a plausible file, a wrong data set
    path.write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(OSError, match="train-labels-idx1-ubyte.gz is damaged"):
        data.fashion_mnist("val")


def test_a_missing_file_names_the_folder_and_the_fix(copy_of_the_data):
    (copy_of_the_data / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(
        FileNotFoundError, match="train-images-idx3-ubyte.gz is missing.*git checkout"
    ):
        data.fashion_mnist("train")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "validation"}, "split must be one of"),
        ({"split": "train", "dtype": "float16"}, 'dtype must be "float" or "uint8"'),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.fashion_mnist(**kwargs)


def test_random_crop_flip_moves_and_mirrors_without_changing_the_pixels():
    from course_utils.models.fashion_recipes import random_crop_flip

    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    out = random_crop_flip(x, 2, torch.Generator().manual_seed(0))
    again = random_crop_flip(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out, again)  # seeded: the same crops every run
    assert not torch.equal(out, x)
    # each output is its image shifted by at most 2 pixels (and maybe mirrored): some shift of the
    # padded image, or of its mirror, matches it exactly
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(8):
        views = [
            p[:, dy : dy + 28, dx : dx + 28]
            for p in (padded[i], padded[i].flip(-1))
            for dy in range(5)
            for dx in range(5)
        ]
        assert any(torch.equal(out[i], v) for v in views)


def test_the_recipe_trains_and_reports_validation_and_test_accuracy():
    from course_utils.models import resnet_small
    from course_utils.models.fashion_recipes import train_fashion_classifier

    torch.manual_seed(0)
    model = resnet_small(num_classes=10, in_channels=1, widths=(8, 8, 8))
    result = train_fashion_classifier(model, epochs=1, lr=3e-3, max_steps_per_epoch=5)
    assert result["metric"] == "test_accuracy" and 0 <= result["value"] <= 1
    assert len(result["history"].val_metric) == 1 and result["train_seconds"] > 0


def test_the_recipe_refuses_a_schedule_too_short_to_warm_up():
    from course_utils.models import resnet_small
    from course_utils.models.fashion_recipes import train_fashion_classifier

    model = resnet_small(num_classes=10, in_channels=1, widths=(8, 8, 8))
    with pytest.raises(ValueError, match="one-step warm-up"):
        train_fashion_classifier(model, epochs=2, lr=3e-3, max_steps_per_epoch=2)


def test_random_crop_flip_refuses_what_it_cannot_shift():
    from course_utils.models.fashion_recipes import random_crop_flip

    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"add a batch dimension with x.unsqueeze\(0\)"):
        random_crop_flip(torch.rand(1, 28, 28), 2, g)
    with pytest.raises(TypeError, match=r"x.float\(\) / 255"):
        random_crop_flip(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 2, g)
    with pytest.raises(ValueError, match="pad must be a whole number"):
        random_crop_flip(torch.rand(2, 1, 28, 28), -1, g)


def test_class_subset_keeps_the_classes_asked_for_relabelled_in_their_order():
    from course_utils.models.fashion_recipes import class_subset

    images = torch.arange(6.0).view(6, 1, 1, 1)
    labels = torch.tensor([7, 2, 0, 2, 9, 7])
    kept, relabelled = class_subset(images, labels, [7, 2])
    assert kept.flatten().tolist() == [0.0, 1.0, 3.0, 5.0]  # the 7s and 2s, in their order
    assert relabelled.tolist() == [0, 1, 1, 0]  # 7 -> 0 and 2 -> 1: the order of `classes`
    assert class_subset(images, labels, None)[1] is labels
    for bad in ([], [2, 2], [3, 10]):
        with pytest.raises(ValueError, match="distinct Fashion-MNIST labels 0-9"):
            class_subset(images, labels, bad)
