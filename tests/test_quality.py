"""course_utils.diffusion.sample_quality: the judge-based sample-quality measurements."""

import pytest
import torch
from torch import nn

from course_utils import data
from course_utils.diffusion import (
    frechet_distance,
    judge_distance,
    load_judge,
    memorisation,
    nearest_images,
    recognition_accuracy,
    sample_scores,
    to01,
)
from course_utils.diffusion.sample_quality import _check_unit_range
from course_utils.features import extract_features


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


def test_frechet_distance_refuses_what_has_no_covariance_and_warns_when_biased():
    a = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="at least 2 samples per set"):
        frechet_distance(a, a[:1])
    with pytest.raises(ValueError, match=r"frechet_distance \(b\) got NaN"):
        frechet_distance(a, torch.full((5, 3), float("nan")))
    with pytest.warns(UserWarning, match="fewer samples than dimensions"):
        frechet_distance(torch.randn(10, 20), torch.randn(10, 20))


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
    labels = torch.tensor([0, 1, 0, 0, 0])  # right, right, wrong, right, wrong
    judge = BrightnessJudge().train()
    assert recognition_accuracy(judge, images, labels) == pytest.approx(3 / 5)
    assert judge.training  # mode restored
    overall, per_class = recognition_accuracy(judge, images, labels, per_class=True)
    assert overall == pytest.approx(0.6)
    torch.testing.assert_close(per_class, torch.tensor([2 / 4, 1.0]))
    with pytest.raises(ValueError, match=r"labels in \[0, 1\], got values in \[0, 2\]"):
        recognition_accuracy(judge, images, labels.index_fill(0, torch.tensor([4]), 2))
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        recognition_accuracy(judge, images * 2 - 1, labels)
    with pytest.raises(ValueError, match="recognition_accuracy got 3 labels, expected 5"):
        recognition_accuracy(judge, images, labels[:3])
    with pytest.raises(TypeError, match=r"integer class labels.*y\.long\(\)"):
        recognition_accuracy(judge, images, labels.float())
    with pytest.raises(TypeError, match=r"x\.float\(\) / 255"):
        recognition_accuracy(judge, (images * 255).byte(), labels)


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
    with pytest.raises(ValueError, match=r"judge_distance \(generated\) takes images in \[0, 1\]"):
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
    with pytest.raises(ValueError, match=r"looks like \[0, 1\]; use x \* 2 - 1"):
        sample_scores(judge, x_train[:20], labels, x_test)  # converted twice
    with pytest.raises(ValueError, match=r"sample_scores \(reference\) takes images in \[0, 1\]"):
        sample_scores(judge, samples, labels, x_test * 2 - 1)
    with pytest.raises(ValueError, match="got 5 labels, expected 20"):
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
    _check_unit_range(out, "test")  # what every function of the module accepts
    with pytest.raises(ValueError, match=r"test takes images in \[0, 1\].*\(x \+ 1\) / 2"):
        _check_unit_range(x.detach().clamp(-1, 1), "test")  # raw samples refused, fix named
    with pytest.raises(ValueError, match=r"to01 takes images in \[-1, 1\].*looks like \[0, 1\]"):
        to01(out.repeat(2, 1, 1, 1))  # already converted: its black would turn grey
    with pytest.raises(TypeError, match=r"to01 takes float images, got torch.uint8"):
        to01((out * 255).byte())


class PenultimateFeatures(nn.Module):
    """The judge's penultimate features as a module, the form torchmetrics' FID takes for a
    custom feature extractor (``num_features`` spares it a trial forward pass)."""

    def __init__(self, judge):
        super().__init__()
        self.judge = judge
        self.num_features = judge.fc.in_features

    def forward(self, x):
        return extract_features(self.judge, x)


@pytest.mark.parametrize("n", [40, 300])
def test_judge_distance_agrees_with_torchmetrics_fid_on_the_same_features(n):
    """Our FID is torchmetrics' ``FrechetInceptionDistance`` with the judge as its network: the
    same number on real digits against a shifted set (n = 40 < 64 features: the biased case)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    judge = load_judge(device="cpu")
    x_train, x_test, _, _ = data.digits_split(size=16)
    real, fake = x_test[:n], (x_train[:n] * 0.7 + 0.1)
    fid = FrechetInceptionDistance(feature=PenultimateFeatures(judge), normalize=True)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    expected = fid.compute().item()
    with pytest.warns(UserWarning) if n < judge.fc.in_features else _no_warning():
        ours = judge_distance(judge, real, fake)
    assert ours == pytest.approx(expected, rel=1e-3, abs=1e-3)
    assert ours > 1  # a real difference, not two zeros agreeing


def _no_warning():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def ctx():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield

    return ctx()


def test_fashion_reference_is_class_balanced_and_its_floor_is_a_real_against_real_distance():
    from course_utils.diffusion import fid_floor, reference_images

    images, labels = reference_images("test", per_class=7)
    assert images.shape == (70, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert labels.tolist() == [c for c in range(10) for _ in range(7)]
    test_images, test_labels = data.fashion_mnist("test")
    first_shirt = torch.nonzero(test_labels == 6)[0, 0]
    assert torch.equal(images[6 * 7], test_images[first_shirt])  # the first of each class
    judge = load_judge(name="resnet_fashion")
    assert judge.config["image_size"] == 28
    floor = fid_floor(judge, per_class=20)
    train_images = reference_images("train", per_class=20)[0]
    assert floor == pytest.approx(
        judge_distance(judge, reference_images("test", per_class=20)[0], train_images)
    )
    # real garments against real garments: far below blurred garments and noise at the same count
    blurred = nn.functional.avg_pool2d(train_images, 5, 1, 2)
    noise = torch.rand(train_images.shape, generator=torch.Generator().manual_seed(0))
    reference = reference_images("test", per_class=20)[0]
    assert 0 < floor < judge_distance(judge, reference, blurred) / 3
    assert floor < judge_distance(judge, reference, noise) / 10
    with pytest.raises(ValueError, match="resnet_fashion"):
        load_judge(name="resnet_fashon")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="per_class must be a whole number"):
            reference_images("test", per_class=bad)
    with pytest.raises(ValueError, match="has only 1000 images"):
        reference_images("test", per_class=1001)  # 1,000 test images per class
