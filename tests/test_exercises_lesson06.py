import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed

from course_utils.exercises import lesson06

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def gram(features):
    batched = features if features.dim() == 4 else features[None]
    b, c, h, w = batched.shape
    flat = batched.reshape(b, c, h * w)
    out = torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)
    return out if features.dim() == 4 else out[0]


def nearest(features, query, k):
    sims = F.normalize(features, dim=1) @ F.normalize(features[query], dim=0)
    sims[query] = -float("inf")
    return sims.topk(k).indices


def topk(logits, k):
    return logits.softmax(dim=1).topk(k, dim=1)


def similarity_correlation(features_a, features_b):
    # NumPy on purpose: any correct route passes
    def cosine(f):
        f = f.numpy() / np.linalg.norm(f.numpy(), axis=1, keepdims=True)
        return f @ f.T

    sim_a, sim_b = cosine(features_a), cosine(features_b)
    upper = np.triu_indices(len(sim_a), k=1)  # one triangle is enough: the matrices are symmetric
    return float(np.corrcoef(sim_a[upper], sim_b[upper])[0, 1])


CHECKS = {
    "06.1 a Gram matrix": (lesson06.check_gram, gram),
    "06.2 nearest neighbours by cosine similarity": (lesson06.check_nearest, nearest),
    "06.3 top-k predictions with probabilities": (lesson06.check_topk, topk),
    "06.4 how alike are two backbones?": (
        lesson06.check_similarity_correlation,
        similarity_correlation,
    ),
}


def test_right_answers_pass():
    assert_right_answers_pass(CHECKS)


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


def test_backbone_features_are_held_out_digits():
    features_a, features_b = lesson06.backbone_features(10)
    assert features_a.shape == (10, 64) and features_b.shape == (10, 128)
    assert torch.isfinite(features_a).all() and torch.isfinite(features_b).all()


# ------------------------------------------------------------------ typical mistakes


def test_gram_mistakes_get_hints():
    def unnormalised(features):
        c, h, w = features.shape[-3:]
        return gram(features) * (c * h * w)

    def per_pixel(features):
        c = features.shape[-3]
        return gram(features) * c

    def positions(features):
        batched = features if features.dim() == 4 else features[None]
        flat = batched.flatten(2)
        return flat.transpose(1, 2) @ flat / flat[0].numel()

    def keeps_batch(features):
        return gram(features if features.dim() == 4 else features[None])

    assert failed(lesson06.check_gram(unnormalised), "C * H * W")
    assert failed(lesson06.check_gram(per_pixel), "H * W only")
    assert failed(lesson06.check_gram(positions), "compares channels")
    assert failed(lesson06.check_gram(keeps_batch), "[C, C]")


def test_nearest_mistakes_get_hints():
    def with_self(features, query, k):
        sims = F.normalize(features, dim=1) @ F.normalize(features[query], dim=0)
        return sims.topk(k).indices

    def dot_product(features, query, k):
        sims = features @ features[query]
        sims[query] = -float("inf")
        return sims.topk(k).indices

    def least(features, query, k):
        sims = F.normalize(features, dim=1) @ F.normalize(features[query], dim=0)
        sims[query] = float("inf")
        return (-sims).topk(k).indices

    def unsorted(features, query, k):
        return nearest(features, query, k).sort().values

    assert failed(lesson06.check_nearest(with_self), "query", "itself")
    assert failed(lesson06.check_nearest(dot_product), "Normalise")
    assert failed(lesson06.check_nearest(least), "least similar")
    assert failed(lesson06.check_nearest(unsorted), "order")


def test_topk_mistakes_get_hints():
    def logits_only(logits, k):
        return logits.topk(k, dim=1)

    def wrong_dim(logits, k):
        probs = logits.softmax(dim=0)
        indices = logits.topk(k, dim=1).indices
        return probs.gather(1, indices), indices

    def unsorted(logits, k):
        probs, indices = topk(logits, k)
        return probs.flip(1), indices.flip(1)

    assert failed(lesson06.check_topk(logits_only), "logits, not probabilities")
    assert failed(lesson06.check_topk(wrong_dim), "wrong dimension")
    assert failed(lesson06.check_topk(unsorted), "order")


def test_similarity_correlation_mistakes_get_hints():
    def with_diagonal(features_a, features_b):
        sim_a = F.normalize(features_a, dim=1) @ F.normalize(features_a, dim=1).T
        sim_b = F.normalize(features_b, dim=1) @ F.normalize(features_b, dim=1).T
        return float(np.corrcoef(sim_a.flatten(), sim_b.flatten())[0, 1])

    def dot_products(features_a, features_b):
        off = ~torch.eye(len(features_a), dtype=torch.bool)
        sim_a, sim_b = features_a @ features_a.T, features_b @ features_b.T
        return float(np.corrcoef(sim_a[off], sim_b[off])[0, 1])

    def as_tensor(features_a, features_b):  # a 0-d tensor is fine: float() reads it
        return torch.tensor(similarity_correlation(features_a, features_b))

    assert failed(lesson06.check_similarity_correlation(with_diagonal), "diagonal")
    assert failed(lesson06.check_similarity_correlation(dot_products), "normalise")
    assert lesson06.check_similarity_correlation(as_tensor).passed
    assert failed(lesson06.check_similarity_correlation(lambda a, b: [0.5, 0.5]), "one number")
