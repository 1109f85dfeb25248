"""The digits classifiers of the zoo: the shared training recipe and the shipped checkpoints."""

import pytest
import torch

from course_utils import data, train, zoo
from course_utils.models import count_parameters, recipes
from course_utils.runtime import seed_everything
from course_utils.train import History

CPU = torch.device("cpu")
DIGITS = ["lenet5_digits", "minivgg_digits", "resnet_small_digits"]


def short_run(name, **overrides):
    """A few steps of entry ``name``'s own recipe (as the lessons run it in FAST mode)."""
    entry = zoo.REGISTRY[name]
    seed_everything(0)
    model = entry.build()
    result = entry.train(model, epochs=2, max_steps_per_epoch=2, **overrides)
    return model, result


def test_short_run_returns_accuracy_and_history():
    model, result = short_run("resnet_small_digits")
    assert result["metric"] == "test_accuracy" and 0 <= result["value"] <= 1
    history = result["history"]
    assert isinstance(history, History)
    assert len(history.train_loss) == len(history.val_metric) == 2  # test accuracy per epoch
    assert not model.training


def test_same_recipe_same_weights():
    first, _ = short_run("minivgg_digits")
    again, _ = short_run("minivgg_digits")
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_cosine_schedule_changes_the_training(monkeypatch):
    seen = {}
    real_fit = train.fit

    def spy(*args, scheduler=None, optimizer=None, **kwargs):
        seen["scheduler"], seen["optimizer"] = scheduler, optimizer
        return real_fit(*args, scheduler=scheduler, optimizer=optimizer, **kwargs)

    monkeypatch.setattr(recipes, "fit", spy)  # the recipe module's own name for train.fit
    short_run("resnet_small_digits")  # its entry says cosine=True
    assert isinstance(seen["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
    assert seen["optimizer"].param_groups[0]["lr"] == pytest.approx(0, abs=1e-12)  # ends at 0
    short_run("lenet5_digits")  # constant lr: a plain AdamW, no schedule
    assert seen["scheduler"] is None and seen["optimizer"].param_groups[0]["lr"] == 3e-3


@pytest.mark.parametrize("name", DIGITS)
def test_shipped_digits_checkpoints(name):
    record = zoo.info(name)
    model = zoo.load(name, device=CPU)
    assert record["params"] == count_parameters(model)
    assert record["recipe"]["size"] in (16, 32)
    _, x_test, _, y_test = data.digits_split(size=record["recipe"]["size"])
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    # float16 weights: the accuracy may move by a test image or two, not more
    assert accuracy == pytest.approx(record["metric"]["value"], abs=2.5 / len(y_test))
    assert record["metric"]["value"] >= 0.97


def test_best_digits_cnn_beats_99_percent():
    assert max(zoo.info(name)["metric"]["value"] for name in DIGITS) >= 0.99
