"""The training loop every lesson calls, ``course_utils.train.fit``, against the bare PyTorch loop.

Both sides train the same LeNet-5 on the same digits loader (lesson 02's recipe: 32x32 digits,
batches of 64, AdamW at lr 3e-3) for one epoch, on the course's device. ``fit`` does more per step
than the bare loop -- it checks the first batch (tensors, image range, labels against the model's
classes), reads the loss (``loss.item()``) to check that it is finite and to record the epoch's
mean, and keeps a progress bar's numbers up to date (not drawn with ``progress=False``) -- and all
of that must stay small: the target is at most 5 % overhead.
"""

import copy

import torch
from run import Case
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import data, device
from course_utils.models import LeNet5
from course_utils.train import fit

LR = 3e-3


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=LR)


def bare_loop(model: nn.Module, loader: DataLoader, dev: torch.device) -> None:
    """One epoch the way the PyTorch tutorials write it: forward, zero_grad, backward, step."""
    model.to(dev).train()
    optimizer = adamw(model)  # the same optimiser as fit's side
    loss_fn = nn.CrossEntropyLoss()
    for x, y in loader:
        loss = loss_fn(model(x.to(dev)), y.to(dev))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def benchmarks() -> list[Case]:
    x_train, _, y_train, _ = data.digits_split(size=32)  # [1347, 1, 32, 32]: 22 batches of 64
    shuffle = torch.Generator().manual_seed(0)
    loader = DataLoader(TensorDataset(x_train, y_train), 64, shuffle=True, generator=shuffle)
    dev = device()
    ours, theirs = LeNet5(num_classes=10, in_channels=1), LeNet5(num_classes=10, in_channels=1)
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))  # the same starting weights
    return [
        Case(
            "fit, LeNet-5, one epoch of 1347 digits 32x32 (22 steps of 64)",
            lambda: fit(ours, loader, optimizer=adamw(ours), device=dev, progress=False),
            lambda: bare_loop(theirs, loader, dev),
            "bare PyTorch loop",
            rounds=20,  # ~1.2 s a round on a 2-core CPU; a clear result is decided by then
            target=1.05,
            max_rounds=100,  # a close one measures on, up to ~2 minutes
        )
    ]
