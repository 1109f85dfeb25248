import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed

from course_utils.exercises import lesson08

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def cfg(eps_uncond, eps_cond, scale):
    return eps_uncond + scale * (eps_cond - eps_uncond)


def cfg_weighted(eps_uncond, eps_cond, scale):  # the same, written as a weighted sum
    return scale * eps_cond + (1 - scale) * eps_uncond


def guided_eps(model, x, t, y, scale, null_class):
    y_null = torch.full_like(y, null_class)
    eps = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, y_null]))
    eps_cond, eps_uncond = eps.chunk(2)
    return cfg(eps_uncond, eps_cond, scale)


def guided_eps_null_first(model, x, t, y, scale, null_class):
    y_null = torch.full_like(y, null_class)
    eps_uncond, eps_cond = model(torch.cat([x, x]), t.repeat(2), torch.cat([y_null, y])).chunk(2)
    return cfg(eps_uncond, eps_cond, scale)


def drop_labels(y, u, p, null_class):
    return torch.where(u < p, torch.full_like(y, null_class), y)


def classifier_guidance(eps, grad, alpha_bar_t, scale):
    return eps - scale * (1 - alpha_bar_t).sqrt() * grad


CHECKS = {
    "08.1 classifier-free guidance": (lesson08.check_cfg, cfg),
    "08.2 guided noise with one model call": (lesson08.check_guided_eps, guided_eps),
    "08.3 conditioning dropout": (lesson08.check_drop_labels, drop_labels),
    "08.4 classifier guidance": (lesson08.check_classifier_guidance, classifier_guidance),
}


def test_right_answers_pass():
    assert_right_answers_pass(CHECKS)


def test_other_right_answers_pass():
    assert lesson08.check_cfg(cfg_weighted).passed
    assert lesson08.check_guided_eps(guided_eps_null_first).passed

    def drop_with_clone(y, u, p, null_class):
        out = y.clone()
        out[u < p] = null_class
        return out

    assert lesson08.check_drop_labels(drop_with_clone).passed


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


def test_counting_model_is_per_sample():
    model = lesson08.CountingModel()
    x, t, y = torch.randn(4, 1, 4, 4), torch.arange(4) * 100, torch.tensor([0, 3, 10, 9])
    whole = model(x, t, y)
    parts = torch.cat([model(x[i : i + 1], t[i : i + 1], y[i : i + 1]) for i in range(4)])
    assert torch.allclose(whole, parts)
    assert torch.equal(model(x, t, None), model(x, t, torch.full_like(y, 10)))
    assert model.calls == [4, 1, 1, 1, 1, 4, 4]


# ------------------------------------------------------------------ typical mistakes


def test_cfg_mistakes_get_hints():
    def swapped(eps_uncond, eps_cond, scale):
        return cfg(eps_cond, eps_uncond, scale)

    def paper_w(eps_uncond, eps_cond, scale):
        return (1 + scale) * eps_cond - scale * eps_uncond

    def scale_on_cond(eps_uncond, eps_cond, scale):
        return eps_uncond + scale * eps_cond

    def scale_on_uncond(eps_uncond, eps_cond, scale):
        return scale * eps_uncond + (eps_cond - eps_uncond)

    assert failed(lesson08.check_cfg(swapped), "swapped")
    assert failed(lesson08.check_cfg(paper_w), "s = 1 + w")
    assert failed(lesson08.check_cfg(scale_on_cond), "difference")
    assert failed(lesson08.check_cfg(scale_on_uncond), "wrong term")


def test_guided_eps_mistakes_get_hints():
    def two_calls(model, x, t, y, scale, null_class):
        return cfg(model(x, t, None), model(x, t, y), scale)

    def halves_swapped(model, x, t, y, scale, null_class):
        y_null = torch.full_like(y, null_class)
        eps_uncond, eps_cond = model(torch.cat([x, x]), t.repeat(2), torch.cat([y, y_null])).chunk(
            2
        )
        return cfg(eps_uncond, eps_cond, scale)

    def whole_batch(model, x, t, y, scale, null_class):
        return model(torch.cat([x, x]), t.repeat(2), torch.cat([y, torch.full_like(y, null_class)]))

    def t_once(model, x, t, y, scale, null_class):
        y_null = torch.full_like(y, null_class)
        eps_cond, eps_uncond = model(torch.cat([x, x]), t, torch.cat([y, y_null])).chunk(2)
        return cfg(eps_uncond, eps_cond, scale)

    assert failed(lesson08.check_guided_eps(two_calls), "single call")
    assert failed(lesson08.check_guided_eps(halves_swapped), "swapped")
    assert failed(lesson08.check_guided_eps(whole_batch), "doubled batch")
    assert failed(lesson08.check_guided_eps(t_once), "timestep")


def test_drop_labels_mistakes_get_hints():
    def reversed_comparison(y, u, p, null_class):
        return torch.where(u > p, torch.full_like(y, null_class), y)

    def in_place(y, u, p, null_class):
        y[u < p] = null_class
        return y

    def mask_only(y, u, p, null_class):
        return u < p

    def to_zero(y, u, p, null_class):
        return torch.where(u < p, torch.zeros_like(y), y)

    def as_float(y, u, p, null_class):
        return torch.where(u < p, float(null_class), y.float())

    assert failed(lesson08.check_drop_labels(reversed_comparison), "wrong way round")
    assert failed(lesson08.check_drop_labels(in_place), "were changed")
    assert failed(lesson08.check_drop_labels(mask_only), "mask")
    assert failed(lesson08.check_drop_labels(to_zero), "null class index")
    assert failed(lesson08.check_drop_labels(as_float), "integers")


def test_classifier_guidance_mistakes_get_hints():
    def plus(eps, grad, alpha_bar_t, scale):
        return eps + scale * (1 - alpha_bar_t).sqrt() * grad

    def no_root(eps, grad, alpha_bar_t, scale):
        return eps - scale * grad

    def no_sqrt(eps, grad, alpha_bar_t, scale):
        return eps - scale * (1 - alpha_bar_t) * grad

    def signal_scale(eps, grad, alpha_bar_t, scale):
        return eps - scale * alpha_bar_t.sqrt() * grad

    def no_scale(eps, grad, alpha_bar_t, scale):
        return eps - (1 - alpha_bar_t).sqrt() * grad

    assert failed(lesson08.check_classifier_guidance(plus), "sign")
    assert failed(lesson08.check_classifier_guidance(no_root), "missing")
    assert failed(lesson08.check_classifier_guidance(no_sqrt), "not 1 - ᾱ_t")
    assert failed(lesson08.check_classifier_guidance(signal_scale), "signal")
    assert failed(lesson08.check_classifier_guidance(no_scale), "scale s")
