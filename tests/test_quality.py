"""course_utils.quality: the judge-based sample-quality measurements."""

import pytest
import torch
from torch import nn

from course_utils import data
from course_utils.quality import (
    _check_unit_range,
    frechet_distance,
    judge_distance,
    load_judge,
    memorisation,
    nearest_images,
    recognition_accuracy,
    sample_scores,
    to01,
)


def test_frechet_distance_known_cases():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 3, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # N(0, I) vs N(m, I): |m|^2 (plus sampling noise)
    b = torch.randn(2000, 3, generator=g) + torch.tensor([2.0, 0.0, 0.0])
    assert frechet_distance(a, b) == pytest.approx(4.0, abs=0.3)
    # N(0, I) vs N(0, 4 I): tr(I + 4 I - 2 * 2 I) = 1 per dimension, 3 in all
    c = 2 * torch.randn(2000, 3, generator=g)
    assert frechet_distance(a, c) == pytest.approx(3.0, abs=0.4)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, torch.randn(5, 2))


class BrightnessJudge(nn.Module):
    """Class 1 if the mean pixel is above 0.5, else class 0."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[-10.0], [10.0]]))
            self.fc.bias.copy_(torch.tensor([5.0, -5.0]))

    def forward(self, x):
        return self.fc(x.mean(dim=(1, 2, 3))[:, None])


def test_recognition_accuracy_counts_and_per_class():
    images = torch.stack([torch.full((1, 4, 4), v) for v in (0.1, 0.9, 0.8, 0.2, 0.7)])
    labels = torch.tensor([0, 1, 0, 0, 2])  # right, right, wrong, right, wrong (no class 2)
    judge = BrightnessJudge().train()
    assert recognition_accuracy(judge, images, labels) == pytest.approx(3 / 5)
    assert judge.training  # mode restored
    overall, per_class = recognition_accuracy(judge, images, labels, per_class=True)
    assert overall == pytest.approx(0.6)
    torch.testing.assert_close(per_class, torch.tensor([2 / 3, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        recognition_accuracy(judge, images * 2 - 1, labels)
    with pytest.raises(ValueError, match="one label per image"):
        recognition_accuracy(judge, images, labels[:3])


def test_judge_distance_separates_real_digits_from_noise():
    judge = load_judge()
    x_train, x_test, y_train, y_test = data.digits_split(size=16)
    assert recognition_accuracy(judge, x_test, y_test) > 0.98
    real = judge_distance(judge, x_test, x_train[:450])
    noise = judge_distance(
        judge, x_test, torch.rand(450, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    )
    blurred = judge_distance(judge, x_test, nn.functional.avg_pool2d(x_train[:450], 3, 1, 1))
    assert real < blurred < noise
    assert real < 0.1 * noise
    with pytest.raises(ValueError, match="generated must lie in"):
        judge_distance(judge, x_test, x_train * 2 - 1)


def test_sample_scores_are_the_two_measurements_of_the_converted_samples():
    judge = load_judge()
    x_train, x_test, y_train, _ = data.digits_split(size=16)
    # digits as a sampler returns them: in [-1, 1], some overshooting it (to01 clips those)
    noise = 0.3 * torch.randn(200, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    samples = x_train[:200] * 2 - 1 + noise
    assert samples.min() < -1 and samples.max() > 1
    labels = y_train[:200].roll(1)  # wrong labels for a few: recognised is not trivially 1
    scores = sample_scores(judge, samples, labels, x_test)
    assert scores == {
        "recognised": pytest.approx(recognition_accuracy(judge, to01(samples), labels)),
        "fd": pytest.approx(judge_distance(judge, x_test, to01(samples))),
    }
    assert 0 < scores["recognised"] < 0.9 and scores["fd"] > 0


def test_sample_scores_refuses_range_mix_ups():
    judge = load_judge()
    x_train, x_test, y_train, _ = data.digits_split(size=16)
    samples, labels = x_train[:20] * 2 - 1, y_train[:20]
    with pytest.raises(ValueError, match=r"already in \[0, 1\]"):
        sample_scores(judge, x_train[:20], labels, x_test)  # converted twice
    with pytest.raises(ValueError, match=r"reference must lie in \[0, 1\]"):
        sample_scores(judge, samples, labels, x_test * 2 - 1)
    with pytest.raises(ValueError, match="one label per image"):
        sample_scores(judge, samples, labels[:5], x_test)


def test_nearest_images_brute_force():
    g = torch.Generator().manual_seed(0)
    queries, reference = torch.rand(7, 1, 3, 3, generator=g), torch.rand(11, 1, 3, 3, generator=g)
    indices, distances = nearest_images(queries, reference)
    assert indices.dtype == torch.int64 and distances.dtype == torch.float32
    for q, i, d in zip(queries, indices, distances):
        all_d = torch.stack([(q - r).norm() for r in reference])
        assert i == all_d.argmin() and d == pytest.approx(all_d.min().item(), abs=1e-6)
    indices, distances = nearest_images(reference[[4, 2]], reference)  # exact copies
    assert indices.tolist() == [4, 2] and distances.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="image shape"):
        nearest_images(queries, reference[:, :, :2])


def test_memorisation_flags_copies_not_new_digits():
    x_train, x_test, _, _ = data.digits_split(size=16)
    copies = memorisation(x_train[10:60], x_train, x_test)
    assert copies["copied_fraction"] == 1.0 and copies["generated_median"] == 0.0
    assert torch.equal(copies["nearest"], torch.arange(10, 60))
    # Unseen real digits (not used for the threshold) are not flagged: 225 vs the other 225.
    fresh = memorisation(x_test[:225], x_train, x_test[225:])
    assert fresh["copied_fraction"] < 0.05
    assert fresh["generated_median"] == pytest.approx(fresh["held_out_median"], rel=0.15)


def test_to01_maps_the_model_range_to_unit_images():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 1.3, -1.2], requires_grad=True).reshape(1, 1, 2, 3)
    out = to01(x)
    assert torch.equal(out.flatten(), torch.tensor([0.0, 0.25, 0.5, 1.0, 1.0, 0.0]))
    assert out.device.type == "cpu" and not out.requires_grad
    _check_unit_range(out)  # what every function of the module accepts
    with pytest.raises(ValueError, match="to01"):
        _check_unit_range(x.detach())  # the raw samples are refused, and the error names the fix
