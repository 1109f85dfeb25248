"""distributed.fit under torchrun, and the helpers of course_utils.distributed.

The main test launches this very file with ``torchrun`` (2 CPU processes, Gloo backend): run as a
script, it is the worker at the bottom, which trains a small model with ``fit`` and writes what
each rank ends with; the test then compares the ranks with each other and with one process
training on the same data order with a twice larger batch.
"""

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from course_utils import distributed
from course_utils.runtime import device, seed_everything
from course_utils.train import evaluate, fit

CPU = torch.device("cpu")
BATCH_PER_RANK, WORLD = 8, 2


def datasets():
    """96 training and 30 validation points in 8-D, 4 classes (30 is odd: uneven val shards)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(126, 8, generator=g), torch.randint(0, 4, (126,), generator=g)
    return TensorDataset(x[:96], y[:96]), TensorDataset(x[96:], y[96:])


def mlp():
    """No dropout and no batch norm: then the gradient of a batch split over ranks and averaged
    is exactly the gradient of the whole batch."""
    seed_everything(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))


def train(model, train_loader, val_loader):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.5)
    return distributed.fit(
        model, train_loader, val_loader, epochs=3, optimizer=optimizer, device=CPU, progress=False
    )


def worker(out: Path) -> None:
    """Each rank: the learner's code (a plain model, a loader on a DistributedSampler), then
    its results."""
    distributed.setup()
    train_set, val_set = datasets()
    model = mlp()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    history = train(
        model,
        DataLoader(train_set, batch_size=BATCH_PER_RANK, sampler=DistributedSampler(train_set)),
        DataLoader(val_set, batch_size=4),
    )
    wrote = distributed.save_checkpoint(model, out / "checkpoint.pt")
    torch.save(
        {"state": model.state_dict(), "initial": initial, "history": history, "wrote": wrote},
        out / f"rank{distributed.rank()}.pt",
    )
    distributed.cleanup()


@pytest.mark.slow  # two processes that import torch: about 10-20 s on a busy 2-core machine
def test_two_gloo_ranks_end_equal_and_match_one_process_with_the_whole_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_DEVICE": "cpu"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={WORLD}",
        __file__,
        str(tmp_path),
    ]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]

    # both copies end with identical weights, and they did train
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
        assert not torch.equal(value, ranks[0]["initial"][key]), key
    # the History is the whole data set's, the same on every rank
    h0, h1 = ranks[0]["history"], ranks[1]["history"]
    assert (h0.train_loss, h0.val_loss, h0.val_metric) == (
        h1.train_loss,
        h1.val_loss,
        h1.val_metric,
    )
    # only rank 0 wrote the checkpoint, which holds the plain model's keys ("0.weight", ...)
    assert [r["wrote"] for r in ranks] == [True, False]
    checkpoint = torch.load(tmp_path / "checkpoint.pt")
    assert checkpoint.keys() == ranks[0]["state"].keys()
    assert all(torch.equal(checkpoint[k], v) for k, v in ranks[0]["state"].items())

    # One process, batch 2 x 8, in the order the ranks shared: in step k rank r took positions
    # 16k + r, 16k + r + 2, ... of the epoch's permutation, so together the two ranks' step k saw
    # exactly this process's batch k, and DDP's averaged gradient is that batch's gradient.
    train_set, val_set = datasets()
    order = DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True)  # same permutation
    reference = mlp()
    history = train(
        reference,
        DataLoader(train_set, batch_size=WORLD * BATCH_PER_RANK, sampler=order),
        DataLoader(val_set, batch_size=30),
    )
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-5, atol=1e-6)
    for mine, theirs in [
        (h0.train_loss, history.train_loss),
        (h0.val_loss, history.val_loss),
        (h0.val_metric, history.val_metric),
    ]:
        assert mine == pytest.approx(theirs, rel=1e-5)


@contextmanager
def group_of_one(tmp_path):
    """A real Gloo process group with a single rank, in this process: fit's distributed path."""
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def one_rank_loader(dataset, batch_size, shuffle=False):
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=shuffle),
    )


def test_fit_in_a_group_wraps_the_model_and_matches_plain_fit(tmp_path):
    train_set, val_set = datasets()
    loader = one_rank_loader(train_set, 16)  # sequential: the same order as a plain loader
    seen = []

    def step(model, batch, dev):
        seen.append(type(model))
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    def run(fit_, loader):
        model = mlp()
        val_loader = DataLoader(val_set, batch_size=7)
        history = fit_(
            model, loader, val_loader, epochs=2, device=CPU, train_step=step, progress=False
        )
        return model, history

    reference, expected = run(fit, DataLoader(train_set, batch_size=16))
    assert set(seen) == {nn.Sequential}
    seen.clear()
    with group_of_one(tmp_path):
        model, history = run(distributed.fit, loader)
    assert set(seen) == {DistributedDataParallel}  # gradients are averaged through the wrapper
    assert isinstance(model, nn.Sequential)  # the learner's model, trained in place
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)
    assert history.train_loss == pytest.approx(expected.train_loss)
    assert history.val_metric == pytest.approx(expected.val_metric)


def test_fit_needs_a_distributed_sampler():
    batches = [(torch.randn(4, 8), torch.randint(0, 4, (4,)))] * 2
    with pytest.raises(ValueError, match="sampler=DistributedSampler"):
        distributed.fit(mlp(), batches, device=CPU, progress=False)
    plain = DataLoader(datasets()[0], batch_size=8, shuffle=True)
    with pytest.raises(ValueError, match="its own share"):
        distributed.fit(mlp(), plain, device=CPU, progress=False)


def test_fit_sets_the_epoch_of_the_sampler_and_keeps_the_loader():
    """DistributedSampler seeds its shuffle with the epoch: without set_epoch every epoch would
    see the batches in the same order. The learner's loader is used as given (its generator,
    timeout, workers): nothing is rebuilt."""
    train_set, _ = datasets()
    loader = one_rank_loader(train_set, 16, shuffle=True)
    orders = []

    def record(model, batch, device):
        orders.append(batch[1].clone())  # the labels of the epoch's first batch
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    distributed.fit(
        mlp(),
        loader,
        epochs=3,
        max_steps_per_epoch=1,
        train_step=record,
        device=CPU,
        progress=False,
    )
    assert loader.sampler.epoch == 2
    expected = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        expected.append(next(iter(loader))[1])
    assert all(torch.equal(a, b) for a, b in zip(orders, expected))
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])


def test_helpers_without_torchrun(monkeypatch, tmp_path):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.setup() == device()  # one script serves both: no group is started
    assert not dist.is_initialized()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    model = mlp()
    assert distributed.save_checkpoint(model, tmp_path / "sub" / "m.pt")
    state = torch.load(tmp_path / "sub" / "m.pt")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    distributed.cleanup()  # no group: nothing to do, and no error


def test_example_script_trains_and_saves_a_loadable_checkpoint(tmp_path, monkeypatch):
    from course_utils import data, models  # here: the torchrun workers need neither

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    out = tmp_path / "lenet.pt"
    argv = ["--epochs", "2", "--max-steps", "3", "--eval-images", "200", "--out", str(out)]
    history = distributed.main(argv)  # Fashion-MNIST, padded to LeNet-5's 32x32
    assert len(history["train_loss"]) == len(history["val_metric"]) == 2
    assert json.loads(out.with_suffix(".json").read_text()) == history
    model = models.LeNet5()
    model.load_state_dict(torch.load(out))
    scored_by_split = {"val": history["val_metric"][-1], "test": history["test"]["accuracy"]}
    for split, scored in scored_by_split.items():
        images, labels = data.fashion_mnist(split)
        padded = TensorDataset(nn.functional.pad(images[:200], (2, 2, 2, 2)), labels[:200])
        scores = evaluate(model, DataLoader(padded, batch_size=64), device=CPU)
        assert scores["accuracy"] == pytest.approx(scored), split
    assert history["test"]["images"] == 200


def test_example_script_datasets_are_lenet_sized_and_limited():
    train_set, val_set, test_set = distributed._datasets("fashion", 100, 30)
    assert [len(s) for s in (train_set, val_set, test_set)] == [100, 30, 30]
    x, y = train_set[0]
    assert x.shape == (1, 32, 32) and 0 <= x.min() and x.max() <= 1 and 0 <= int(y) < 10
    assert x[:, :2].abs().sum() == 0 and x[:, :, -2:].abs().sum() == 0  # the black border
    full = distributed._datasets("fashion", None, None)
    assert [len(s) for s in full] == [55_000, 5_000, 10_000]


if __name__ == "__main__":  # run by torchrun from the first test
    worker(Path(sys.argv[1]))
