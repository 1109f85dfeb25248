"""The shipped MNIST digits: the file, the three splits, and what a damaged copy does."""

import gzip
import shutil

import pytest
import torch

from course_utils import data
from course_utils.data import mnist_digits


def test_splits_have_their_sizes_balanced_classes_and_the_model_format():
    sizes = {"train": 3500, "val": 500, "test": 1000}
    for split, n in sizes.items():
        x, y = data.mnist_5k(split)
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
        assert 0 <= x.min() and x.max() == 1
        assert torch.bincount(y, minlength=10).tolist() == [n // 10] * 10
    # MNIST's look: bright ink on a black background, as Fashion-MNIST's garments
    x, _ = data.mnist_5k("test")
    assert x[:, :, 0, :].max() == 0 and x.mean() < 0.2


def test_splits_are_disjoint_cover_the_file_and_are_fixed():
    raw, _ = mnist_digits._read(mnist_digits.MNIST_5K_FILE)
    indices = mnist_digits._split_indices()
    together = torch.cat(list(indices.values()))
    assert sorted(together.tolist()) == list(range(5000))  # disjoint, and nothing left out
    x8, _ = data.mnist_5k("val", dtype="uint8")
    assert torch.equal(x8, raw[indices["val"]])
    first = indices["train"][:5].tolist()
    mnist_digits._split_indices.cache_clear()
    assert mnist_digits._split_indices()["train"][:5].tolist() == first  # the same draw


def test_uint8_and_float_are_the_same_pixels_and_copies():
    x8, y = data.mnist_5k("test", dtype="uint8")
    xf, _ = data.mnist_5k("test")
    assert x8.dtype == torch.uint8 and torch.equal(x8.float() / 255, xf)
    label = int(y[0])
    x8[0] = 0
    y[0] = label + 1
    again, y_again = data.mnist_5k("test", dtype="uint8")
    assert again[0].sum() > 0 and y_again[0] == label  # the caller's edit did not reach the cache


@pytest.fixture
def copy_of_the_file(tmp_path, monkeypatch):
    path = tmp_path / "mnist_5k.csv.gz"
    shutil.copy(mnist_digits.MNIST_5K_FILE, path)
    monkeypatch.setattr(mnist_digits, "MNIST_5K_FILE", path)
    mnist_digits._split_indices.cache_clear()
    yield path
    mnist_digits._split_indices.cache_clear()


def test_a_truncated_file_is_refused_by_name(copy_of_the_file):
    copy_of_the_file.write_bytes(copy_of_the_file.read_bytes()[:100_000])
    with pytest.raises(OSError, match="mnist_5k.csv.gz is damaged or truncated.*git checkout"):
        data.mnist_5k("test")


def test_an_edited_file_is_refused_even_when_it_still_decompresses(copy_of_the_file):
    lines = gzip.decompress(copy_of_the_file.read_bytes()).splitlines()
    lines[0] = lines[0][:-1] + b"7"  # one wrong label: a plausible file, a wrong data set
    copy_of_the_file.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    with pytest.raises(OSError, match="mnist_5k.csv.gz is damaged"):
        data.mnist_5k("train")


def test_a_missing_file_names_the_folder_and_the_fix(copy_of_the_file):
    copy_of_the_file.unlink()
    with pytest.raises(FileNotFoundError, match="mnist_5k.csv.gz is missing.*git checkout"):
        data.mnist_5k("train")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "validation"}, "split must be one of"),
        ({"split": "train", "dtype": "float16"}, 'dtype must be "float" or "uint8"'),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.mnist_5k(**kwargs)
