"""course_utils.transfer: what each strategy trains, gradual unfreezing and the optimizer,
per-group learning rates under the schedules, augmentation presets, AdaBN, MMD, gradient reversal,
DANN, the two training loops on a tiny problem, and the checks at their door."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from course_utils import data
from course_utils.models import count_parameters, resnet_small
from course_utils.transfer import (
    AUGMENTATIONS,
    DANN,
    STRATEGIES,
    GradualUnfreezing,
    GroupScheduler,
    accuracy,
    adapt_batch_norm,
    adapt_domain,
    augmentation,
    dann_lambda,
    discriminative_groups,
    fine_tune,
    grad_reverse,
    mmd_loss,
    one_cycle,
    replace_head,
    resnet_blocks,
    set_strategy,
    warmup_cosine,
)
from course_utils.zoo import cpu_threads


@pytest.fixture(autouse=True)
def _cpu_threads():
    with cpu_threads():  # tiny models: threads only add overhead on a busy machine
        yield


def model_and_blocks():
    torch.manual_seed(0)
    model = resnet_small(num_classes=10, in_channels=3)
    return model, resnet_blocks(model)


def trainable_names(model) -> set[str]:
    return {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}


def test_resnet_blocks():
    model, blocks = model_and_blocks()
    assert blocks == [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["fc"]]
    with pytest.raises(ValueError, match="not a ResNet"):
        resnet_blocks(torch.nn.Linear(2, 2))


@pytest.mark.parametrize(
    "strategy, expected",
    list(
        zip(
            STRATEGIES,
            [{"fc"}, {"layer3", "fc"}, {"conv1", "bn1", "layer1", "layer2", "layer3", "fc"}],
        )
    ),
)
def test_each_strategy_trains_the_right_parameters(strategy, expected):
    model, blocks = model_and_blocks()
    set_strategy(model, blocks, strategy)
    assert trainable_names(model) == expected
    head = sum(p.numel() for p in model.fc.parameters())
    if strategy == "feature_extraction":
        assert count_parameters(model, trainable_only=True) == head
    set_strategy(model, blocks, "partial", trainable_blocks=2)
    assert trainable_names(model) == {"layer2", "layer3", "fc"}
    with pytest.raises(ValueError, match="strategy"):
        set_strategy(model, blocks, "everything")
    with pytest.raises(ValueError, match="unknown module"):
        set_strategy(model, [["nope"], ["fc"]], "full")


def test_replace_head():
    model, _ = model_and_blocks()
    replace_head(model, 4)
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 4)
    replace_head(model, 3, hidden=8, dropout=0.5)
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
    with pytest.raises(ValueError, match="nn.Linear"):
        replace_head(model, 3)  # the head is now a Sequential


def test_discriminative_groups_decay_from_the_head():
    model, blocks = model_and_blocks()
    groups = discriminative_groups(model, blocks, lr=1e-2, decay=0.5)
    assert [g["block"] for g in groups] == [0, 1, 2, 3, 4]
    assert [g["lr"] for g in groups] == pytest.approx([1e-2 * 0.5**k for k in (4, 3, 2, 1, 0)])
    set_strategy(model, blocks, "partial")
    assert [g["block"] for g in discriminative_groups(model, blocks, 1e-2)] == [3, 4]
    with pytest.raises(ValueError, match="decay"):
        discriminative_groups(model, blocks, 1e-2, decay=0)


def test_gradual_unfreezing_adds_parameters_to_the_optimizer():
    model, blocks = model_and_blocks()
    set_strategy(model, blocks, "feature_extraction")
    optimizer = torch.optim.SGD(discriminative_groups(model, blocks, 0.1, 0.5), lr=0.1)
    unfreezing = GradualUnfreezing(model, blocks, optimizer, lr=0.1, decay=0.5, every=2)

    def in_optimizer() -> int:
        return sum(p.numel() for g in optimizer.param_groups for p in g["params"])

    assert in_optimizer() == count_parameters(model, trainable_only=True) == 650  # the head only
    assert not unfreezing.step(0) and not unfreezing.step(1)  # every=2: nothing yet
    assert unfreezing.step(2)
    assert trainable_names(model) == {"layer3", "fc"}
    assert in_optimizer() == count_parameters(model, trainable_only=True) > 650
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(0.05)  # one block below the head
    for epoch in range(3, 12):
        unfreezing.step(epoch)
    assert (
        in_optimizer()
        == count_parameters(model, trainable_only=True)
        == sum(p.numel() for p in model.parameters())
    )
    assert len(optimizer.param_groups) == len(blocks)  # each block added once
    # the newly added parameters really train: one step changes layer1
    before = model.layer1[0].conv1.weight.clone()
    F.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()
    assert not torch.equal(before, model.layer1[0].conv1.weight)


def test_gradual_unfreezing_needs_the_head_in_the_optimizer():
    model, blocks = model_and_blocks()
    optimizer = torch.optim.SGD(model.layer1.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="head"):
        GradualUnfreezing(model, blocks, optimizer, lr=0.1)


@pytest.mark.parametrize(
    "factor",
    [
        functools.partial(warmup_cosine, total=50, warmup=5),
        functools.partial(one_cycle, total=50, pct_start=0.3),
    ],
)
def test_schedules_keep_per_group_rates_and_match_lambda_lr(factor):
    model, blocks = model_and_blocks()
    groups = discriminative_groups(model, blocks, lr=1e-2, decay=0.3)
    ours = torch.optim.SGD(groups, lr=1e-2)
    reference = torch.optim.SGD(
        [
            {"params": g["params"], "lr": g["lr"]}
            for g in discriminative_groups(model, blocks, 1e-2, 0.3)
        ],
        lr=1e-2,
    )
    scheduler = GroupScheduler(ours, factor)
    lambda_lr = torch.optim.lr_scheduler.LambdaLR(reference, factor)
    base = [g["base_lr"] for g in ours.param_groups]
    for _ in range(50):
        rates = scheduler.get_last_lr()
        assert rates == pytest.approx(lambda_lr.get_last_lr(), rel=1e-12)
        ratios = [r / b for r, b in zip(rates, base)]
        assert max(ratios) - min(ratios) < 1e-12  # discriminative ratios never flatten
        ours.step(), reference.step()
        scheduler.step(), lambda_lr.step()


def test_schedule_shapes():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert one_cycle(0, 100, 0.3) == pytest.approx(1 / 25)
    assert one_cycle(30, 100, 0.3) == pytest.approx(1.0)
    assert one_cycle(100, 100, 0.3) == pytest.approx(0.0, abs=1e-12)


def test_scheduler_also_scales_groups_added_later():
    model, blocks = model_and_blocks()
    set_strategy(model, blocks, "feature_extraction")
    optimizer = torch.optim.SGD(discriminative_groups(model, blocks, 0.1, 0.5), lr=0.1)
    unfreezing = GradualUnfreezing(model, blocks, optimizer, lr=0.1, decay=0.5)
    scheduler = GroupScheduler(optimizer, lambda step: 0.5**step)
    unfreezing.step(1)
    scheduler.step()
    assert scheduler.get_last_lr() == pytest.approx([0.1 * 0.5, 0.05 * 0.5])


@pytest.mark.parametrize("preset", AUGMENTATIONS)
def test_augmentation_presets(preset):
    image = torch.from_numpy(data.photo("chelsea", size=64)).permute(2, 0, 1).contiguous()
    torch.manual_seed(0)
    out = augmentation(preset, 48)(image)
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert image.dtype == torch.uint8  # the input is not modified


def test_minimal_augmentation_without_flip_is_deterministic():
    image = torch.randint(0, 256, (3, 20, 20), dtype=torch.uint8)
    transform = augmentation("minimal", 20, flip=False)
    out = transform(image)
    assert type(out) is torch.Tensor  # a plain tensor, not a tv_tensors.Image
    assert torch.allclose(out, image.float() / 255)
    with pytest.raises(ValueError, match="preset"):
        augmentation("extreme", 20)


def test_mmd_is_zero_for_identical_samples_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    assert mmd_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    same = mmd_loss(x, torch.randn(64, 8, generator=g)).item()
    shifted = mmd_loss(x, torch.randn(64, 8, generator=g) + 1.5).item()
    assert shifted > 5 * same > 0
    y = (torch.randn(32, 8, generator=g) + 1).requires_grad_()
    mmd_loss(x, y).backward()
    assert y.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same D"):
        mmd_loss(x, torch.randn(4, 3))


def test_gradient_reversal_sign_and_scale():
    x = torch.randn(5, 3, requires_grad=True)
    y = grad_reverse(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    assert torch.allclose(x.grad, -0.25 * torch.arange(3.0).expand(5, 3))


def test_dann_shapes_lambda_and_reversed_domain_gradient():
    model, _ = model_and_blocks()
    model.fc = torch.nn.Identity()
    dann = DANN(model, feature_dim=64, num_classes=10)
    logits, domain, features = dann(torch.randn(6, 3, 16, 16), scale=1.0)
    assert logits.shape == (6, 10) and domain.shape == (6,) and features.shape == (6, 64)
    assert dann_lambda(0.0) == 0.0 and 0.99 < dann_lambda(1.0) < 1.0
    # the domain loss's gradient reaches the features with the opposite sign of a plain head
    x = torch.randn(6, 3, 16, 16)
    grads = []
    for scale in (1.0, -1.0):  # -1: reversal of the reversal = an ordinary layer
        dann.zero_grad()
        _, domain, _ = dann(x, scale)
        F.binary_cross_entropy_with_logits(domain, torch.ones(6)).backward()
        grads.append(model.conv1.weight.grad.clone())
    assert torch.allclose(grads[0], -grads[1], atol=1e-6)


def tiny_problem():
    source = data.coloured_digits(64, "train", size=16, background="plain")
    target = data.coloured_digits(64, "train", size=16)
    test = data.coloured_digits(32, "test", size=16)
    return source, target, test


def test_fine_tune_learns_and_is_deterministic():
    source, _, test = tiny_problem()

    def run(strategy):
        model, blocks = model_and_blocks()
        return fine_tune(
            model,
            blocks,
            source,
            source,
            strategy=strategy,
            epochs=3,
            lr=1e-2,
            batch_size=16,
            progress=False,
        )

    a, b = run("full"), run("full")
    assert a == b
    assert a["train_loss"][-1] < a["train_loss"][0]
    assert len(a["held_out_accuracy"]) == 3
    assert a["best_epoch"] == 3 and a["accuracy"] == a["held_out_accuracy"][-1]  # no early stop
    # three epochs of gradual unfreezing: the head, then layer3, then layer2
    model, _ = model_and_blocks()
    expected = sum(
        p.numel() for m in (model.fc, model.layer3, model.layer2) for p in m.parameters()
    )
    assert run("gradual")["trainable"] == expected < a["trainable"]
    with pytest.raises(ValueError, match="labels"):
        fine_tune(
            *model_and_blocks(),
            (source[0], source[1][:3]),
            test,
            strategy="full",
            epochs=1,
            lr=1e-3,
        )


def test_early_stopping_keeps_the_best_checkpoint_and_stops_after_patience(monkeypatch):
    from course_utils.transfer import loops

    source, _, test = tiny_problem()
    scripted = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.95])  # validation accuracy of epochs 1, 2, ...
    saved = {}
    real_fit = loops.fit

    def fit(model, *args, **kwargs):  # the real epoch, then the scripted validation accuracy
        history = real_fit(model, *args, **kwargs)
        history.val_metric = [next(scripted)]
        saved[len(saved) + 1] = {k: v.clone() for k, v in model.state_dict().items()}
        return history

    monkeypatch.setattr(loops, "fit", fit)
    model, blocks = model_and_blocks()
    result = fine_tune(
        model,
        blocks,
        source,
        test,
        strategy="full",
        epochs=6,
        lr=1e-2,
        batch_size=16,
        patience=2,
        progress=False,
    )
    # epoch 2 is the best; epochs 3 and 4 do not beat it, so training stops after epoch 4
    assert result["held_out_accuracy"] == [0.5, 0.7, 0.6, 0.65]
    assert result["best_epoch"] == 2 and result["accuracy"] == 0.7
    state = model.state_dict()
    assert all(torch.equal(state[k], saved[2][k]) for k in state)  # epoch 2's weights are back
    assert not all(torch.equal(saved[4][k], saved[2][k]) for k in state)
    with pytest.raises(ValueError, match="patience is a number of epochs >= 1"):
        fine_tune(
            model,
            blocks,
            source,
            test,
            strategy="full",
            epochs=1,
            lr=1e-3,
            patience=0,
            progress=False,
        )


def test_adapt_domain_runs_every_method_and_checks_it():
    source, target, test = tiny_problem()
    for method in ("none", "adabn", "mmd", "dann"):
        model, _ = model_and_blocks()
        model.fc = torch.nn.Identity()
        result = adapt_domain(
            DANN(model, 64, 10),
            source,
            target[0],
            test,
            method=method,
            epochs=1,
            lr=1e-3,
            batch_size=16,
            progress=False,
        )
        assert 0 <= result["accuracy"] <= 1 and math.isfinite(result["train_loss"][0])
    with pytest.raises(ValueError, match="method"):
        adapt_domain(
            DANN(model, 64, 10), source, target[0], test, method="coral", epochs=1, lr=1e-3
        )


def test_accuracy_of_a_known_model():
    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return F.one_hot((2 * x[:, 0, 0, 0]).long(), 3).float()

    x = torch.zeros(6, 1, 2, 2)  # images in [0, 1]; the pixel (0, 0) says the class
    x[:, 0, 0, 0] = torch.tensor([0, 0.5, 1, 0, 0.5, 1])
    assert accuracy(Oracle(), x, torch.tensor([0, 1, 2, 0, 0, 0])) == pytest.approx(4 / 6)


def test_accuracy_restores_the_mode_and_uses_eval():
    model, _ = model_and_blocks()
    model.train()
    x, y = torch.rand(5, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4])
    before = model.bn1.running_mean.clone()
    accuracy(model, x, y)
    assert model.training  # switched back
    assert torch.equal(model.bn1.running_mean, before)  # eval mode: statistics untouched


def test_adapt_batch_norm_recomputes_the_statistics_on_the_target():
    model, _ = model_and_blocks()
    model.fc = torch.nn.Identity()
    model.eval()
    g = torch.Generator().manual_seed(0)
    target = 0.5 + 0.1 * torch.randn(40, 3, 16, 16, generator=g)
    momentum = model.bn1.momentum
    adapt_batch_norm(model, target, batch_size=40)
    # one batch: the running statistics are exactly the batch statistics of the first BN's input
    with torch.no_grad():
        z = model.conv1(target)
    torch.testing.assert_close(model.bn1.running_mean, z.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(model.bn1.running_var, z.var(dim=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    assert not model.training and model.bn1.momentum == momentum  # back as it was
    # several batches: the plain average of the batch means (momentum=None), not an EMA
    adapt_batch_norm(model, target, batch_size=10)
    with torch.no_grad():
        means = torch.stack([model.conv1(b).mean(dim=(0, 2, 3)) for b in target.split(10)])
    torch.testing.assert_close(model.bn1.running_mean, means.mean(0))
    with pytest.raises(ValueError, match="no batch-norm"):
        adapt_batch_norm(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)), target)


def test_bad_arguments_are_refused_with_the_fix():
    model, blocks = model_and_blocks()
    with pytest.raises(ValueError, match=r"replace_head needs num_classes >= 1"):
        replace_head(model, 0)
    with pytest.raises(ValueError, match="warm-up of 20 steps does not fit in a schedule of 10"):
        warmup_cosine(0, 10, warmup=20)
    with pytest.raises(ValueError, match="total must be a positive"):
        warmup_cosine(0, 0)
    with pytest.raises(ValueError, match="pct_start"):
        one_cycle(0, 10, pct_start=1.5)
    with pytest.raises(ValueError, match="size must be a positive int"):
        augmentation("minimal", 0)
    with pytest.raises(ValueError, match="num_classes"):
        DANN(torch.nn.Identity(), feature_dim=8, num_classes=0)
    dann = DANN(torch.nn.Flatten(), feature_dim=5, num_classes=3)
    with pytest.raises(ValueError, match=r"expected \[B, 5\]"):
        dann(torch.rand(2, 3, 2, 2))
    with pytest.raises(ValueError, match="non-empty"):
        mmd_loss(torch.zeros(0, 4), torch.zeros(3, 4))


def test_the_loops_check_their_data_once_with_the_fix():
    source, target, test = tiny_problem()
    images, labels = source
    model, blocks = model_and_blocks()

    def tune(train, **kwargs):
        return fine_tune(
            model, blocks, train, test, strategy="full", epochs=1, lr=1e-3, progress=False, **kwargs
        )

    with pytest.raises(TypeError, match="torch.from_numpy"):
        tune((images.numpy(), labels))
    with pytest.raises(TypeError, match=r"x.float\(\) / 255"):
        tune(((images * 255).byte(), labels))
    with pytest.raises(TypeError, match=r"y.long\(\)"):
        tune((images, labels.float()))
    with pytest.raises(ValueError, match="got 3 labels"):
        tune((images, labels[:3]))
    with pytest.raises(ValueError, match="got an empty"):
        tune((images[:0], labels[:0]))
    with pytest.raises(ValueError, match="a pair"):
        tune(images)
    with pytest.raises(ValueError, match="warmup is a share"):
        tune(source, warmup=3)
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        accuracy(model, images[0], labels[:1])
    with pytest.raises(TypeError, match="Python list"):
        adapt_domain(
            DANN(torch.nn.Flatten(), 768, 10),
            source,
            list(target[0]),
            test,
            method="none",
            epochs=1,
            lr=1e-3,
            progress=False,
        )
