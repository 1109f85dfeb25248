"""course_utils.selfsup: NT-Xent against a hand computation and its closed form, the random views,
SimCLR pretraining on a tiny problem, and the linear probe against scikit-learn."""

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from course_utils.selfsup import SimCLR, linear_probe, nt_xent, pretrain_simclr, random_views
from course_utils.zoo import cpu_threads


@pytest.fixture(autouse=True)
def _cpu_threads():
    with cpu_threads():
        yield


def nt_xent_by_hand(z1, z2, temperature):
    """The loss of SimCLR's paper written out view by view, with Python floats."""
    views = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    n, b, total = len(views), len(z1), 0.0
    for k in range(n):
        partner = (k + b) % n
        scores = {j: math.exp(float(views[k] @ views[j]) / temperature) for j in range(n) if j != k}
        total += -math.log(scores[partner] / sum(scores.values()))
    return total / n


# --- NT-Xent ----------------------------------------------------------------------------------


def test_nt_xent_matches_a_hand_computation():
    # two images, two dimensions: small enough to check on paper. Normalised, the four views are
    # a = (1, 0), b = (0, 1) (first views) and c = (1, 1)/sqrt2, d = (-1, 1)/sqrt2 (second views);
    # the partners are a-c and b-d. Cosines: a.b = c.d = 0, a.c = b.c = b.d = s, a.d = -s.
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    e = math.exp(2 / math.sqrt(2))  # exp(s / t) with t = 0.5
    loss_a = -math.log(e / (1 + e + 1 / e))  # a: partner c; negatives b (cos 0), d (cos -s)
    loss_b = -math.log(e / (1 + 2 * e))  # b: partner d; negatives a (cos 0), c (cos s)
    # c is like b (partner a; negatives b at s, d at 0) and d like a: the mean of the four
    expected = (loss_a + loss_b) / 2
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx(expected, abs=1e-6)
    assert nt_xent_by_hand(z1, z2, 0.5) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_matches_the_formula_on_random_batches(temperature):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    expected = nt_xent_by_hand(z1, z2, temperature)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(expected, rel=1e-5)


def test_identical_orthogonal_views_give_the_closed_form_minimum():
    # B one-hot images, both views identical: partner similarity 1/t, every negative 0 (orthogonal)
    b, t = 4, 0.5
    z = torch.eye(b)
    closed_form = math.log(1 + (2 * b - 2) * math.exp(-1 / t))
    assert nt_xent(z, z, t).item() == pytest.approx(closed_form, abs=1e-6)
    # any change of the second view makes it worse: the loss is lowest when the views agree
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        moved = z + 0.3 * torch.randn(b, b, generator=g)
        assert nt_xent(z, moved, t) > nt_xent(z, z, t)


def test_nt_xent_is_symmetric_and_ignores_the_length_of_the_vectors():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    assert torch.allclose(nt_xent(z1, z2), nt_xent(z2, z1))
    assert torch.allclose(nt_xent(z1, z2), nt_xent(3 * z1, 0.5 * z2))


def test_nt_xent_has_a_gradient():
    z1 = torch.randn(4, 3, requires_grad=True)
    nt_xent(z1, torch.randn(4, 3)).backward()
    assert z1.grad is not None and z1.grad.abs().sum() > 0


def test_nt_xent_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(4, 3, 1), torch.randn(4, 3, 1))
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), temperature=0)


# --- the views --------------------------------------------------------------------------------


def digit_like(n=4, size=16):
    images = torch.zeros(n, 1, size, size)
    images[:, :, 4:12, 7:9] = 1.0  # a bright vertical stroke on black
    return images


def test_random_views_keep_shape_and_range_and_differ_per_image():
    images = digit_like()
    views = random_views(images, generator=torch.Generator().manual_seed(0))
    assert views.shape == images.shape and views.dtype == images.dtype
    assert views.min() >= 0 and views.max() <= 1
    # the four inputs are identical, so differing views mean one draw per image, not per batch
    assert not torch.allclose(views[0], views[1], atol=1e-3)


def test_random_views_repeat_with_the_same_generator():
    images = digit_like()
    a = random_views(images, generator=torch.Generator().manual_seed(3))
    b = random_views(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_random_views_without_any_change_return_the_images():
    images = torch.rand(3, 1, 8, 8)
    same = random_views(images, degrees=0, scale=(1, 1), shift=0, contrast=(1, 1), noise=0)
    assert torch.allclose(same, images, atol=1e-5)


def test_random_views_shift_moves_the_stroke():
    images = digit_like(n=1)
    moved = random_views(images, degrees=0, scale=(1, 1), shift=0.25, contrast=(1, 1), noise=0)
    assert not torch.allclose(moved, images, atol=1e-3)
    assert moved.sum() == pytest.approx(images.sum().item(), rel=0.35)  # moved, not destroyed


def test_random_views_reject_bad_input():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\].*unsqueeze\(0\)"):
        random_views(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 255\]: use x / 255"):
        random_views(255 * torch.rand(2, 1, 8, 8))
    with pytest.raises(TypeError, match="torch.from_numpy"):
        random_views(torch.rand(2, 1, 8, 8).numpy())
    with pytest.raises(ValueError, match="range"):
        random_views(torch.rand(2, 1, 8, 8), scale=(1.2, 0.8))


# --- SimCLR -----------------------------------------------------------------------------------


def tiny_simclr():
    torch.manual_seed(0)
    encoder = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),  # [B, 32]
    )
    return SimCLR(encoder, feature_dim=32, projection_dim=8)


def rectangles(n=64):
    """White rectangles of random sizes at random places: views of one can be told apart."""
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(n, 1, 16, 16)
    for image in images:
        row, col = torch.randint(2, 10, (2,), generator=g).tolist()
        height, width = torch.randint(2, 6, (2,), generator=g).tolist()
        image[0, row : row + height, col : col + width] = 1.0
    return images


def test_simclr_projects_the_encoder_features():
    model = tiny_simclr()
    x = torch.rand(5, 1, 16, 16)
    assert model(x).shape == (5, 8)
    assert model.encoder(x).shape == (5, 32)


def test_pretrain_simclr_trains_the_encoder_without_labels():
    model = tiny_simclr()
    before = [p.detach().clone() for p in model.encoder.parameters()]
    images = rectangles()
    torch.manual_seed(0)
    history = pretrain_simclr(model, images, epochs=6, lr=1e-2, batch_size=32, device="cpu")
    assert len(history.train_loss) == 6
    # the views of an image get closer to each other than to the other images
    assert history.train_loss[-1] < history.train_loss[0] - 0.3
    # the largest possible loss is log(2B - 1) (every view equally similar to every other)
    assert history.train_loss[0] <= math.log(2 * 32 - 1) + 0.5
    changed = [not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters())]
    assert all(changed)


def test_pretrain_simclr_rejects_bad_input():
    with pytest.raises(TypeError, match="SimCLR"):
        pretrain_simclr(nn.Linear(2, 2), torch.rand(4, 1, 8, 8), epochs=1)
    with pytest.raises(ValueError, match="at least 2 images"):
        pretrain_simclr(tiny_simclr(), torch.rand(1, 1, 8, 8), epochs=1)
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        pretrain_simclr(tiny_simclr(), torch.rand(4, 8, 8), epochs=1)
    with pytest.raises(TypeError, match="/ 255"):
        pretrain_simclr(tiny_simclr(), torch.zeros(4, 1, 8, 8, dtype=torch.uint8), epochs=1)


# --- the linear probe -------------------------------------------------------------------------


def blobs(spread, n=60, seed=0):
    """Three Gaussian clouds in 4-D at distance 4 from each other, ``spread`` their std."""
    rng = np.random.default_rng(seed)
    centres = 4 * np.eye(3, 4)
    labels = np.repeat(np.arange(3), n)
    points = centres[labels] + spread * rng.standard_normal((3 * n, 4))
    points[:, 3] *= 50  # one feature on another scale: the probe must standardise
    return torch.tensor(points, dtype=torch.float32), torch.tensor(labels)


def test_linear_probe_separates_separable_data_like_scikit_learn():
    x, y = blobs(spread=0.3)
    x_test, y_test = blobs(spread=0.3, seed=1)
    result = linear_probe(x, y, x_test, y_test)
    sklearn = make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(x.numpy(), y.numpy())
    assert sklearn.score(x_test.numpy(), y_test.numpy()) == 1.0
    assert result["accuracy"] == 1.0 and result["train_accuracy"] == 1.0


@pytest.mark.filterwarnings("ignore")  # newton-cg's line search warns when it is already there
@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
def test_linear_probe_matches_scikit_learn_probabilities(C):
    x, y = blobs(spread=2.0)  # overlapping clouds: the probabilities are far from 0 and 1
    x_test, y_test = blobs(spread=2.0, seed=1)
    result = linear_probe(x, y, x_test, y_test, C=C)
    # newton-cg converges more tightly than scikit-learn's default lbfgs: a fairer reference
    solver = LogisticRegression(C=C, solver="newton-cg", tol=1e-10, max_iter=10_000)
    reference = make_pipeline(StandardScaler(), solver)
    reference.fit(x.numpy(), y.numpy())
    expected = torch.tensor(reference.predict_proba(x_test.numpy()), dtype=torch.float32)
    assert result["probabilities"].shape == (len(x_test), 3)
    assert torch.allclose(result["probabilities"], expected, atol=1e-4)
    assert result["accuracy"] == pytest.approx(reference.score(x_test.numpy(), y_test.numpy()))


def test_linear_probe_survives_a_constant_feature():
    x, y = blobs(spread=0.3)
    x[:, 0] = 7.0  # zero standard deviation
    result = linear_probe(x, y, x, y)
    assert result["accuracy"] > 0.9 and not result["probabilities"].isnan().any()


def test_linear_probe_rejects_bad_input():
    x, y = blobs(spread=0.3)
    with pytest.raises(ValueError, match=r"linear_probe \(train\) got 179 labels"):
        linear_probe(x, y[:-1], x, y)
    with pytest.raises(TypeError, match=r"y.long\(\)"):
        linear_probe(x, y.float(), x, y)
    with pytest.raises(ValueError, match="empty inputs"):
        linear_probe(x[:0], y[:0], x, y)
    with pytest.raises(ValueError, match=r"test features \[N, D\], got \(1, "):
        linear_probe(x, y, x[None], y)
    with pytest.raises(ValueError, match="same encoder"):
        linear_probe(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match="C must be positive"):
        linear_probe(x, y, x, y, C=0)
