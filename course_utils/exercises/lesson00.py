"""Lesson 00: the checkers of the exercises of ``00_start_here``."""

import torch

from .. import data
from ..runtime import device
from . import exercise


@exercise("00.1 count the threes")
def check_count_threes(count_threes) -> None:
    _, labels = data.digits()
    expected = int((labels == 3).sum())
    answer = count_threes()
    assert isinstance(answer, int), (
        f"return a Python int (got {type(answer).__name__}); try int(...)"
    )
    assert answer == expected, f"{answer} is not right: compare the labels with 3 and sum"


@exercise("00.2 first digits on the device")
def check_first_digits_on_device(first_digits_on_device) -> None:
    for n, size in [(5, 8), (3, 28)]:
        batch = first_digits_on_device(n, size)
        assert isinstance(batch, torch.Tensor), "return a torch.Tensor"
        assert tuple(batch.shape) == (n, 1, size, size), (
            f"shape {tuple(batch.shape)}, expected {(n, 1, size, size)}"
        )
        assert batch.device.type == device().type, (
            f"the batch is on {batch.device}, not on device()"
        )
        expected, _ = data.digits(size=size)
        assert torch.allclose(batch.cpu(), expected[:n]), "these are not the first n digits"
