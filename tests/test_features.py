"""Tests for course_utils.features: features, similarity search, clustering, top-K, calibration."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics.pairwise import cosine_similarity
from torch import nn

from course_utils.features import (
    cluster_features,
    cluster_scores,
    compare_classifiers,
    cosine_similarity_matrix,
    expected_calibration_error,
    extract_features,
    format_topk,
    nearest_neighbours,
    plot_neighbours,
    reliability_diagram,
    topk_predictions,
)
from course_utils.models import LeNet5, resnet_small
from course_utils.zoo import cpu_threads

matplotlib.use("Agg")  # draw into memory: no window, works on CI (switches pyplot if imported)


@pytest.fixture(autouse=True)
def close_figures_and_use_one_thread():
    # Tiny models on tiny batches: a second thread only adds synchronisation (seconds, on a busy
    # machine). cpu_threads() restores the thread count for the test modules that run after.
    with cpu_threads():
        yield
    plt.close("all")


def _hooks(model: nn.Module) -> int:
    """How many forward hooks and pre-hooks are attached anywhere in ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --------------------------------------------------------------------------------------------
# extract_features
# --------------------------------------------------------------------------------------------


def test_default_features_are_the_input_of_the_fc_layer():
    torch.manual_seed(0)
    model = resnet_small(num_classes=10, in_channels=1).eval()
    x = torch.rand(7, 1, 16, 16)
    feats = extract_features(model, x, batch_size=3)  # 3 + 3 + 1: a ragged last batch
    assert feats.shape == (7, 64)
    # the classifier applied to the features gives back the model's logits
    torch.testing.assert_close(model.fc(feats), model(x))


def test_default_features_use_the_last_linear_of_a_sequential_head():
    torch.manual_seed(0)
    model = LeNet5(num_classes=10).eval()
    x = torch.rand(5, 1, 32, 32)
    feats = extract_features(model, x)
    assert feats.shape == (5, 84)  # f6, the input of the output layer
    torch.testing.assert_close(model.classifier.output(feats), model(x))


def test_named_layer_is_global_average_pooled():
    torch.manual_seed(0)
    model = resnet_small(num_classes=10, in_channels=1).eval()
    x = torch.rand(4, 1, 16, 16)
    maps = []
    handle = model.layer2.register_forward_hook(lambda m, i, out: maps.append(out))
    model(x)
    handle.remove()
    feats = extract_features(model, x, layer="layer2")
    assert feats.shape == (4, 32)
    torch.testing.assert_close(feats, maps[0].mean(dim=(2, 3)))
    # a layer with 2-D output is returned as is: the fc layer's output is the logits
    torch.testing.assert_close(extract_features(model, x, layer="fc"), model(x))


def test_a_model_without_head_is_used_as_the_feature_extractor():
    backbone = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU())
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(extract_features(backbone, x), backbone(x).mean(dim=(2, 3)))


def test_features_use_eval_mode_then_restore_modes_and_remove_hooks():
    torch.manual_seed(0)
    model = resnet_small(num_classes=10, in_channels=1)
    model.train()
    model.layer1.eval()  # mixed modes must come back exactly as they were
    modes = {name: m.training for name, m in model.named_modules()}
    x = torch.rand(6, 1, 16, 16)
    one_by_one = extract_features(model, x, batch_size=1)
    # eval mode: BatchNorm uses its running statistics, so the batch size does not matter
    torch.testing.assert_close(extract_features(model, x, batch_size=6), one_by_one)
    extract_features(model, x, layer="layer3.0.conv1")
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert _hooks(model) == 0


def test_the_model_check_runs_and_modes_are_restored_when_the_forward_pass_fails():
    model = resnet_small(num_classes=10, in_channels=1).train()
    with pytest.raises(ValueError, match="channel"):
        extract_features(model, torch.rand(2, 3, 16, 16))  # 3 channels for a 1-channel model
    assert _hooks(model) == 0
    assert all(m.training for m in model.modules())


def test_unknown_layer_names_a_few_valid_ones():
    model = resnet_small(num_classes=10, in_channels=1)
    with pytest.raises(ValueError, match=r"no layer 'layer9'.*layer1"):
        extract_features(model, torch.rand(2, 1, 16, 16), layer="layer9")


def test_a_module_called_twice_has_one_node_per_call():
    # a BasicBlock reuses its ReLU: after bn1, then after the skip connection (the block output)
    torch.manual_seed(0)
    model = resnet_small(num_classes=10, in_channels=1).eval()
    x = torch.rand(3, 1, 16, 16)
    torch.testing.assert_close(
        extract_features(model, x, layer="layer1.0.relu_1"),
        extract_features(model, x, layer="layer1.0"),
    )
    first = extract_features(model, x, layer="layer1.0.relu")
    torch.testing.assert_close(
        first,
        model.layer1[0]
        .relu(model.layer1[0].bn1(model.layer1[0].conv1(model.relu(model.bn1(model.conv1(x))))))
        .mean((2, 3)),
    )


def test_bad_images_and_untraceable_models_get_the_fix():
    model = resnet_small(num_classes=10, in_channels=1)
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        extract_features(model, x[0])
    with pytest.raises(TypeError, match="torch.from_numpy"):
        extract_features(model, x.numpy())
    with pytest.raises(TypeError, match="/ 255"):
        extract_features(model, (x * 255).byte())
    with pytest.raises(ValueError, match="got an empty"):
        extract_features(model, x[:0])

    class Branchy(nn.Module):
        def forward(self, x):
            return x.flatten(1) if x.sum() > 0 else -x.flatten(1)  # branches on a value

    with pytest.raises(ValueError, match="forward hook"):
        extract_features(Branchy(), x, layer="flatten")


# --------------------------------------------------------------------------------------------
# Similarity search
# --------------------------------------------------------------------------------------------


def test_cosine_similarity_matches_sklearn():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(4, 5))
    a[2] = 0  # a zero row: similarity 0, as in scikit-learn
    np.testing.assert_allclose(cosine_similarity_matrix(a, b).numpy(), cosine_similarity(a, b))
    np.testing.assert_allclose(cosine_similarity_matrix(a).numpy(), cosine_similarity(a))
    with pytest.raises(ValueError, match="same D"):
        cosine_similarity_matrix(a, b[:, :3])
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        cosine_similarity_matrix(a[0])


def test_nearest_neighbours_are_sorted_and_exclude_the_query():
    rng = np.random.default_rng(1)
    feats = torch.from_numpy(rng.normal(size=(20, 8)))
    expected = np.argsort(-cosine_similarity(feats.numpy())[3])  # 3 itself first (similarity 1)
    indices, sims = nearest_neighbours(feats, 3, k=5)
    assert indices.tolist() == expected[1:6].tolist()
    assert (sims[:-1] >= sims[1:]).all()
    indices, sims = nearest_neighbours(feats, 3, k=5, exclude_self=False)
    assert indices[0] == 3 and sims[0] == pytest.approx(1)
    # a query vector: the nearest row is the one it was made from
    indices, _ = nearest_neighbours(feats, 2 * feats[7], k=3)
    assert indices[0] == 7
    with pytest.raises(ValueError, match="between 1 and 19"):
        nearest_neighbours(feats, 0, k=20)
    with pytest.raises(ValueError, match="out of range"):
        nearest_neighbours(feats, 20)
    with pytest.raises(ValueError, match=r"vector \[D\]"):
        nearest_neighbours(feats, torch.ones(3))


def test_plot_neighbours_shows_query_and_neighbours():
    images = torch.rand(10, 1, 8, 8)
    labels = torch.tensor([0, 0, 1, 1, 0, 1, 0, 1, 0, 1])
    fig = plot_neighbours(images, 0, [1, 2], [0.9, 0.8], labels=labels)
    with pytest.raises(ValueError, match="2 indices, 1 similarities"):
        plot_neighbours(images, 0, [1, 2], [0.9])
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert fig.axes[0].get_title() == "query\n0"
    assert fig.axes[1].get_title() == "0.90\n0"
    assert fig.axes[2].title.get_color() == "red"  # digit 1 next to a query of class 0


# --------------------------------------------------------------------------------------------
# Clustering and classifiers
# --------------------------------------------------------------------------------------------


def _blobs(n_per_class: int = 30, classes: int = 3, noise: float = 0.1, seed: int = 0):
    """Well separated classes: one direction per class plus a little noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    centres = 5 * np.eye(classes, 8)
    return centres[labels] + noise * rng.normal(size=(len(labels), 8)), labels


def test_clusters_of_separated_classes_match_them():
    feats, labels = _blobs()
    for clusters in (
        cluster_features(feats, n_clusters=3),
        cluster_features(feats, "dbscan", eps=0.05),
    ):
        assert cluster_scores(labels, clusters) == {"ari": 1.0, "nmi": 1.0, "clusters": 3}
    random_clusters = np.random.default_rng(0).integers(0, 3, len(labels))
    assert abs(cluster_scores(labels, random_clusters)["ari"]) < 0.1
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_features(feats)
    with pytest.raises(ValueError, match="drop n_clusters"):
        cluster_features(feats, "dbscan", n_clusters=3)
    with pytest.raises(ValueError, match="kmeans"):
        cluster_features(feats, "spectral", n_clusters=3)
    with pytest.raises(ValueError, match="cluster_scores .*90 true_labels, 89 cluster_labels"):
        cluster_scores(labels, clusters[:-1])


def test_compare_classifiers_good_features_beat_noise():
    feats, labels = _blobs(noise=1.0)
    noise = np.random.default_rng(1).normal(size=feats.shape)
    rows = compare_classifiers({"CNN-like": feats, "noise": noise}, labels)
    assert [(r["features"], r["classifier"]) for r in rows] == [
        ("CNN-like", "random forest"),
        ("CNN-like", "SVM (RBF)"),
        ("noise", "random forest"),
        ("noise", "SVM (RBF)"),
    ]
    assert all(set(r) == {"features", "classifier", "mean_accuracy", "std"} for r in rows)
    good = [r["mean_accuracy"] for r in rows[:2]]
    bad = [r["mean_accuracy"] for r in rows[2:]]
    assert min(good) > 0.9 and max(bad) < 0.6
    again = compare_classifiers({"CNN-like": feats}, labels)
    assert again == rows[:2]  # fixed folds and seeds: the same numbers every time
    with pytest.raises(
        ValueError, match=r"compare_classifiers \(features .x.\) .*90 features, 89 labels"
    ):
        compare_classifiers({"x": feats}, labels[:-1])


# --------------------------------------------------------------------------------------------
# Top-K predictions
# --------------------------------------------------------------------------------------------


def test_topk_is_sorted_softmax_topk():
    torch.manual_seed(0)
    logits = torch.randn(6, 10)
    probs, indices = topk_predictions(logits, k=4)
    assert probs.shape == indices.shape == (6, 4)
    assert (probs[:, :-1] >= probs[:, 1:]).all()
    expected = torch.topk(logits.softmax(dim=1), 4, dim=1)
    torch.testing.assert_close(probs, expected.values)
    assert torch.equal(indices, expected.indices)
    assert torch.equal(indices[:, 0], logits.argmax(dim=1))
    full, _ = topk_predictions(logits, k=10)
    torch.testing.assert_close(full.sum(dim=1), torch.ones(6))


def test_topk_errors():
    with pytest.raises(ValueError, match="K=10"):
        topk_predictions(torch.randn(2, 10), k=11)
    with pytest.raises(ValueError, match=r"logits as a 2-D matrix \[N, D\].*unsqueeze\(0\)"):
        topk_predictions(torch.randn(10), k=3)
    with pytest.raises(ValueError, match="floating"):
        topk_predictions(torch.ones(2, 10, dtype=torch.long), k=3)


def test_format_topk_lines():
    probs, indices = topk_predictions(torch.tensor([[0.0, 3.0, 1.0]]), k=2)
    text = format_topk(probs[0], indices[0], ["cat", "dog", "bird"])
    assert text.splitlines() == ["1. dog   0.84", "2. bird  0.11"]
    assert format_topk(probs[0], indices[0]).splitlines()[0] == "1. 1  0.84"
    with pytest.raises(ValueError, match="one sample"):
        format_topk(probs, indices)


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------

# Four predictions, two bins (0, 0.5] and (0.5, 1]:
#   bin 1: confidences 0.40 (right), 0.45 (wrong) -> accuracy 0.5, confidence 0.425, gap 0.075
#   bin 2: confidences 0.90 (right), 0.70 (wrong) -> accuracy 0.5, confidence 0.800, gap 0.300
# ECE = 2/4 * 0.075 + 2/4 * 0.3 = 0.1875
HAND_PROBS = torch.tensor(
    [[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.45, 0.3, 0.25]]
)
HAND_LABELS = torch.tensor([0, 1, 0, 2])


def test_ece_by_hand():
    assert expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=2) == pytest.approx(0.1875)
    # the same from confidences and correctness
    confidences, correct = [0.9, 0.7, 0.4, 0.45], [True, False, True, False]
    assert expected_calibration_error(confidences, correct, n_bins=2) == pytest.approx(0.1875)
    # one bin: |accuracy 0.5 - mean confidence 0.6125|
    assert expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=1) == pytest.approx(0.1125)
    # a confidence of exactly 1 belongs to the last bin
    assert expected_calibration_error(torch.tensor([[1.0, 0.0]]), torch.tensor([0])) == 0


@pytest.mark.parametrize("n_bins", [5, 15])
@pytest.mark.parametrize("seed", [0, 1])
def test_ece_matches_torchmetrics(n_bins, seed):
    tm = pytest.importorskip("torchmetrics.classification")
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(500, 10, generator=gen)
    # labels that agree with the prediction 70 % of the time: a model worth calibrating
    labels = torch.where(
        torch.rand(500, generator=gen) < 0.7,
        logits.argmax(dim=1),
        torch.randint(0, 10, (500,), generator=gen),
    )
    probs = logits.softmax(dim=1)
    metric = tm.MulticlassCalibrationError(num_classes=10, n_bins=n_bins, norm="l1")
    expected = metric(probs, labels).item()
    assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(expected, abs=1e-6)


def test_ece_errors():
    with pytest.raises(ValueError, match="4 probs, 3 labels"):
        expected_calibration_error(HAND_PROBS, HAND_LABELS[:3])
    with pytest.raises(ValueError, match="softmax"):
        expected_calibration_error(5 * HAND_PROBS, HAND_LABELS)  # logits, not probabilities
    with pytest.raises(ValueError, match="sum to 1"):
        expected_calibration_error(HAND_PROBS / 2, HAND_LABELS)
    with pytest.raises(ValueError, match=r"labels in \[0, 2\], got values in \[0, 3\]"):
        expected_calibration_error(HAND_PROBS, torch.tensor([0, 1, 3, 2]))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(HAND_PROBS, HAND_LABELS, n_bins=0)


def test_reliability_diagram_draws_bars_and_ece():
    ax = reliability_diagram(HAND_PROBS, HAND_LABELS, n_bins=2)
    assert isinstance(ax, Axes)
    assert ax.get_title().startswith("reliability diagram, ECE = 0.18")  # 0.1875
    heights = [p.get_height() for p in ax.containers[0]]  # accuracy per (non-empty) bin
    assert heights == pytest.approx([0.5, 0.5])
    _, given = plt.subplots()
    assert reliability_diagram(HAND_PROBS, HAND_LABELS, ax=given, show_counts=False) is given
