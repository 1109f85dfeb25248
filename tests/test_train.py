"""Tests for course_utils.train: fit, evaluate, predict."""

import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils.runtime import seed_everything
from course_utils.train import History, evaluate, evaluating, fit, fit_one_cycle, predict

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    """sklearn's 8x8 digits as ([N, 64] float in [0, 1], [N] int64), split 1500 / 297."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.int64)
    return TensorDataset(x[:1500], y[:1500]), TensorDataset(x[1500:], y[1500:])


def mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10))


def loaders(digits, batch_size=64):
    train, val = digits
    g = torch.Generator().manual_seed(0)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True, generator=g),
        DataLoader(val, batch_size=batch_size),
    )


def test_fit_learns_digits_and_records_history(digits):
    seed_everything(0)
    model = mlp()
    train_loader, val_loader = loaders(digits)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    history = fit(model, train_loader, val_loader, epochs=3, optimizer=optimizer, device=CPU)
    assert isinstance(history, History)
    assert history.metric_name == "accuracy"
    for values in (history.train_loss, history.val_loss, history.val_metric, history.epoch_time):
        assert len(values) == 3
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_metric[-1] > 0.85  # a linear-ish model gets ~0.9 on digits in 3 epochs
    assert not model.training  # left in eval mode
    # the recorded numbers are exactly what evaluate() reports for the final model
    scores = evaluate(model, val_loader, device=CPU)
    assert scores["accuracy"] == pytest.approx(history.val_metric[-1])
    assert scores["loss"] == pytest.approx(history.val_loss[-1])
    assert history.as_dict()["val_metric"] == history.val_metric


def test_fit_is_deterministic(digits):
    runs = []
    for _ in range(2):
        seed_everything(0)
        model = mlp()
        fit(model, loaders(digits)[0], epochs=1, max_steps_per_epoch=5, device=CPU, progress=False)
        runs.append(model[0].weight.clone())
    assert torch.equal(*runs)


def test_fit_without_validation_or_metric(digits):
    history = fit(mlp(), loaders(digits)[0], epochs=2, device=CPU, metric=None, progress=False)
    assert len(history.train_loss) == 2
    assert history.val_loss == history.val_metric == []
    assert history.metric_name is None


class CountingLoader:
    """A loader that counts how many batches were taken from it."""

    def __init__(self, loader):
        self.loader, self.taken = loader, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.taken += 1
            yield batch


def test_max_steps_per_epoch_and_scheduler_step_per_optimizer_step(digits):
    model = mlp()
    loader = CountingLoader(loaders(digits)[0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    fit(
        model,
        loader,
        epochs=2,
        optimizer=optimizer,
        scheduler=scheduler,
        max_steps_per_epoch=3,
        device=CPU,
        progress=False,
    )
    assert loader.taken == 2 * 3  # no batch is loaded beyond the last step
    assert scheduler.last_epoch == 6  # stepped once per optimizer step
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**6)


def test_fit_one_cycle_plans_the_schedule_over_all_steps(digits):
    seed_everything(0)
    model = mlp()
    train, val = loaders(digits)
    history = fit_one_cycle(
        model,
        train,
        val,
        epochs=3,
        lr=0.05,
        pct_start=0.25,
        max_steps_per_epoch=8,
        device=CPU,
        progress=False,
    )
    assert len(history.train_loss) == 3 and history.val_metric[-1] > 0.5
    # the same model trained by fit() with the optimizer and schedule built by hand
    seed_everything(0)
    reference = mlp()
    optimizer = torch.optim.AdamW(reference.parameters(), lr=0.05, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.05, total_steps=24, pct_start=0.25
    )
    fit(
        reference,
        *loaders(digits),
        epochs=3,
        optimizer=optimizer,
        scheduler=scheduler,
        max_steps_per_epoch=8,
        device=CPU,
        progress=False,
    )
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="length"):
        fit_one_cycle(model, (b for b in train), epochs=1, lr=0.01, device=CPU, progress=False)


def test_custom_train_step_gets_model_batch_device(digits):
    calls = []

    def train_step(model, batch, device):
        x, y = batch
        calls.append((model.training, device))
        return nn.functional.cross_entropy(model(x.to(device)), y.to(device)) * 0  # loss 0

    history = fit(
        mlp(),
        loaders(digits)[0],
        epochs=1,
        max_steps_per_epoch=2,
        device=CPU,
        train_step=train_step,
        progress=False,
    )
    assert calls == [(True, CPU)] * 2
    assert history.train_loss == [0.0]


def test_fit_one_cycle_grad_clip_limits_every_gradient_before_the_step():
    seen = []

    class Probe(nn.Linear):  # records the gradient norm the optimizer steps with
        def forward(self, x):
            if self.weight.grad is not None:
                seen.append(self.weight.grad.norm().item())
            return super().forward(x)

    x, y = torch.full((8, 4), 100.0), torch.zeros(8, 1)
    fit_one_cycle(
        Probe(4, 1, bias=False),
        [(x, y)] * 3,
        epochs=1,
        lr=0.1,
        grad_clip=0.5,
        loss_fn=nn.MSELoss(),
        metric=None,
        device=CPU,
        progress=False,
    )
    assert len(seen) == 2 and seen == pytest.approx([0.5, 0.5], rel=1e-4)  # unclipped: ~1e4


def test_nan_loss_raises_naming_epoch_and_step():
    x, y = torch.ones(4, 2), torch.zeros(4, 1)
    batches = [(x, y), (x * math.nan, y)]
    with pytest.raises(FloatingPointError, match="epoch 1, step 2"):
        fit(nn.Linear(2, 1), batches, loss_fn=nn.MSELoss(), metric=None, device=CPU, progress=False)


def test_fit_rejects_bad_input(digits):
    with pytest.raises(ValueError, match="empty loader"):
        fit(mlp(), [], device=CPU, progress=False)
    with pytest.raises(TypeError, match="one-shot iterator"):  # a generator lasts one epoch
        fit(mlp(), (b for b in loaders(digits)[0]), epochs=2, device=CPU, progress=False)
    with pytest.raises(ValueError, match="at least 1"):
        fit(mlp(), loaders(digits)[0], max_steps_per_epoch=0, device=CPU, progress=False)
    with pytest.raises(ValueError, match="metric must be"):
        fit(mlp(), loaders(digits)[0], metric="f1", device=CPU, progress=False)
    with pytest.raises(ValueError, match=r"\(inputs, targets\)"):
        fit(mlp(), [torch.zeros(2, 64)], device=CPU, progress=False)


def test_evaluate_known_values_and_sample_weighting():
    """A fixed 'model' whose predictions we know: accuracy counts samples, not batches."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    targets = torch.tensor([0, 0, 0])  # right, wrong, right
    model = nn.Identity()
    loader = [(logits[:2], targets[:2]), (logits[2:], targets[2:])]  # batches of 2 and 1
    scores = evaluate(model, loader, device=CPU)
    assert scores["accuracy"] == pytest.approx(2 / 3)  # a batch mean would say (1/2 + 1) / 2
    assert scores["loss"] == pytest.approx(nn.functional.cross_entropy(logits, targets).item())


def test_evaluate_custom_metric_and_max_steps():
    def top2(outputs, targets):
        return (outputs.topk(2, dim=1).indices == targets[:, None]).any(1).float().mean().item()

    logits = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    loader = [(logits, torch.tensor([1, 2])), (logits, torch.tensor([0, 0]))]
    scores = evaluate(nn.Identity(), loader, metric=top2, device=CPU, max_steps=1)
    assert set(scores) == {"loss", "top2"}
    assert scores["top2"] == pytest.approx(0.5)


def test_evaluate_uses_eval_mode_and_no_grad():
    seen = []

    class Probe(nn.Linear):
        def forward(self, x):
            seen.append((self.training, torch.is_grad_enabled()))
            return super().forward(x)

    model = Probe(3, 2).train()
    evaluate(model, [(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64))], device=CPU)
    assert seen == [(False, False)]


def test_evaluate_rejects_empty_loader_and_bad_batches():
    with pytest.raises(ValueError, match="empty"):
        evaluate(nn.Identity(), [], device=CPU)
    with pytest.raises(ValueError, match="metric must be"):
        evaluate(nn.Identity(), [(torch.zeros(1, 2), torch.zeros(1))], metric=3, device=CPU)
    with pytest.raises(ValueError, match=r"\(inputs, targets\)"):
        evaluate(nn.Identity(), [torch.zeros(2, 2)], device=CPU)


def test_predict_tensor_and_loader_match_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), nn.Dropout(0.5))
    x = torch.randn(10, 5)
    expected = model.eval()(x).detach()
    model.train()
    out = predict(model, x, batch_size=4, device=CPU)  # chunks of 4, 4, 2
    assert out.shape == (10, 3) and out.device.type == "cpu" and not out.requires_grad
    assert torch.allclose(out, expected)  # eval mode: dropout off
    loader = DataLoader(TensorDataset(x, torch.zeros(10)), batch_size=3)  # (x, y): y is ignored
    assert torch.allclose(predict(model, loader, device=CPU), expected)
    assert torch.allclose(predict(model, [x[:6], x[6:]], device=CPU), expected)
    with pytest.raises(ValueError, match="empty loader"):
        predict(model, [], device=CPU)


def test_predict_gives_the_model_back_in_the_mode_it_came_in():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), nn.Dropout(0.5))
    x = torch.randn(4, 5)
    for training in (True, False):
        model.train(training)
        predict(model, x, device=CPU)
        assert all(m.training is training for m in model.modules())
    model.train()  # predicting in the middle of training: dropout must still be on afterwards
    first, again = predict(model, x, device=CPU), predict(model, x, device=CPU)
    assert torch.equal(first, again)  # eval mode inside: no dropout, the same outputs
    assert not torch.equal(model(x), model(x))  # train mode after: dropout is back

    def broken_batches():
        yield x
        raise RuntimeError("the loader broke")

    with pytest.raises(RuntimeError, match="the loader broke"):
        predict(model, broken_batches(), device=CPU)
    assert model.training  # restored even when a batch fails


def test_progress_bar_shows_epochs_loss_and_val_metric(digits, capsys):
    train_loader, val_loader = loaders(digits)
    fit(mlp(), train_loader, val_loader, epochs=2, max_steps_per_epoch=2, device=CPU)
    bar = capsys.readouterr().err  # tqdm writes to stderr
    assert "epoch 2/2" in bar and "4/4" in bar
    assert "loss=" in bar and "val_accuracy=" in bar
    fit(mlp(), train_loader, epochs=1, max_steps_per_epoch=2, device=CPU, progress=False)
    assert capsys.readouterr().err == ""


def test_evaluating_restores_every_modules_mode_even_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout()).train()
    model[1].eval()  # a frozen batch norm inside a model in training (transfer learning)
    with evaluating(model) as inside:
        assert inside is model and not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, False, True]
    with pytest.raises(KeyError), evaluating(model):
        raise KeyError("a failing block")
    assert [m.training for m in model.modules()] == [True, True, False, True]


def image_batches(x, y):
    return [(x, y)]


class TinyCNN(nn.Module):
    """Any nn.Module of the learner's, built for [B, 1, 8, 8] images: no guard of its own."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))


@pytest.mark.parametrize(
    "x, y, error, message",
    [
        (torch.rand(4, 1, 8, 8).numpy(), torch.zeros(4, dtype=torch.long), TypeError, "from_numpy"),
        ([[0.5] * 64] * 4, torch.zeros(4, dtype=torch.long), TypeError, "Python list"),
        (torch.rand(4, 1, 8, 8), [0, 1, 2, 0], TypeError, "Python list"),
        ((torch.rand(4, 1, 8, 8) * 255).byte(), torch.zeros(4, dtype=torch.long), TypeError, "255"),
        (torch.rand(4, 1, 8, 8) * 255, torch.zeros(4, dtype=torch.long), ValueError, "x / 255"),
        (torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), ValueError, r"\[0, 2\]"),
        (torch.rand(4, 1, 8, 8), torch.tensor([1, 2, 3, 3]), ValueError, "y - 1"),
        (torch.rand(4, 1, 8, 8), torch.tensor([0.0, 1.0, 2.0, 1.0]), TypeError, "y.long()"),
        (torch.rand(4, 1, 8, 8), torch.zeros(3, dtype=torch.long), ValueError, "mismatched"),
        (torch.full((4, 1, 8, 8), math.nan), torch.zeros(4, dtype=torch.long), ValueError, "NaN"),
        (
            torch.rand(4, 1, 16, 16),
            torch.zeros(4, dtype=torch.long),
            ValueError,
            r"\(4, 1, 16, 16\)",
        ),
        (torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long), ValueError, "channel count"),
    ],
    ids=[
        "numpy",
        "list inputs",
        "list labels",
        "uint8",
        "0-255",
        "label out of range",
        "1-based labels",
        "float labels",
        "lengths",
        "nan",
        "image size",
        "channels",
    ],
)
def test_fit_and_evaluate_check_their_first_batch(x, y, error, message):
    for call in (
        lambda: fit(TinyCNN(), image_batches(x, y), device=CPU, progress=False),
        lambda: evaluate(TinyCNN(), image_batches(x, y), device=CPU),
    ):
        with pytest.raises(error, match=message):
            call()


def test_a_shape_error_is_chained_to_the_models_own_error():
    with pytest.raises(ValueError, match="cannot take inputs of shape") as caught:
        predict(TinyCNN(), torch.rand(2, 1, 16, 16), device=CPU)
    assert isinstance(caught.value.__cause__, RuntimeError)  # `raise ... from err`: both shown


def test_predict_checks_a_tensor_like_a_batch():
    with pytest.raises(TypeError, match="x.float\\(\\) / 255"):
        predict(TinyCNN(), torch.zeros(2, 1, 8, 8, dtype=torch.uint8), device=CPU)
    with pytest.raises(ValueError, match="empty inputs"):
        predict(TinyCNN(), torch.zeros(0, 1, 8, 8), device=CPU)
    with pytest.raises(TypeError, match="from_numpy"):
        predict(TinyCNN(), [torch.rand(2, 1, 8, 8).numpy()], device=CPU)


def test_normalised_images_and_regression_targets_pass():
    """Negative values are a normalised batch (not [0, 255]); float targets of a regression
    loss are not class labels: neither is refused."""
    x = torch.randn(4, 1, 8, 8) * 2  # (x - mean) / std
    scores = evaluate(TinyCNN(1), [(x, torch.randn(4, 1))], loss_fn=nn.MSELoss(), metric=None)
    assert set(scores) == {"loss"} and math.isfinite(scores["loss"])


def test_a_package_model_names_the_size_it_takes():
    from course_utils.models import LeNet5

    batch = [(torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))]
    with pytest.raises(ValueError, match="32x32"):
        evaluate(LeNet5(), batch, device=CPU)
