"""Lesson 08: checkers for the exercises of ``08_guidance_conditioning``.

Each checker calls the learner's answer on random inputs and compares the result with the course's
own implementation in :mod:`course_utils.diffusion`; a wrong answer fails with a hint about the
most likely mistake.
"""

import torch
from torch import nn

from ..diffusion import ClassifierGuidance, NoiseSchedule, classifier_free_guidance
from . import as_tensor, close, exercise

#: the scales the guidance checker tries: real guidance, 0 (unconditional), 1 (conditional)
SCALES = (3.0, 0.0, 1.0, 7.5)


# --------------------------------------------------------------------------------------------
# 08.1 Classifier-free guidance
# --------------------------------------------------------------------------------------------


@exercise("08.1 classifier-free guidance")
def check_cfg(my_cfg) -> None:
    """``my_cfg(eps_uncond, eps_cond, scale) -> ε̃ = ε̂_uncond + scale (ε̂_cond - ε̂_uncond)``."""
    g = torch.Generator().manual_seed(8)
    eps_uncond, eps_cond = torch.randn(2, 3, 1, 4, 4, generator=g)
    for scale in SCALES:
        out = as_tensor(
            my_cfg(eps_uncond.clone(), eps_cond.clone(), scale), f"my_cfg(..., scale={scale})"
        )
        expected = classifier_free_guidance(eps_uncond, eps_cond, scale)
        assert out.shape == expected.shape, (
            f"the guided noise must keep the shape {list(expected.shape)}, got {list(out.shape)}"
        )
        if close(out, expected):
            continue
        if close(out, classifier_free_guidance(eps_cond, eps_uncond, scale)):
            raise AssertionError(
                f"at scale {scale} you get ε̂_cond + s (ε̂_uncond - ε̂_cond): the two predictions "
                "are swapped. Start from the unconditional one and move towards (and past) the "
                "conditional one"
            )
        if close(out, eps_cond + scale * (eps_cond - eps_uncond)):
            raise AssertionError(
                "that is (1 + s) ε̂_cond - s ε̂_uncond, the convention of Ho & Salimans' paper with "
                "w = s: there s = 0 already means conditional. The course (and diffusers) uses "
                "s = 1 + w: s = 0 must give ε̂_uncond, s = 1 exactly ε̂_cond"
            )
        if close(out, scale * eps_cond) or close(out, eps_uncond + scale * eps_cond):
            raise AssertionError(
                "the scale multiplies ε̂_cond alone; it must multiply the *difference* "
                "ε̂_cond - ε̂_uncond, the direction in which the label changes the prediction"
            )
        if close(out, scale * eps_uncond + (eps_cond - eps_uncond)):
            raise AssertionError(
                "the scale is applied to the wrong term: ε̃ = ε̂_uncond + s (ε̂_cond - ε̂_uncond)"
            )
        if scale == 0.0:
            raise AssertionError("scale 0 must give the unconditional prediction ε̂_uncond")
        if scale == 1.0:
            raise AssertionError("scale 1 must give the conditional prediction ε̂_cond exactly")
        raise AssertionError(
            f"at scale {scale} the result differs from ε̂_uncond + s (ε̂_cond - ε̂_uncond) (largest "
            f"gap {(out.float() - expected).abs().max():.3g})"
        )


# --------------------------------------------------------------------------------------------
# 08.2 Guided noise with one model call
# --------------------------------------------------------------------------------------------


class CountingModel(nn.Module):
    """A stand-in noise predictor ``model(x, t, y=None)`` that records the batch size of every
    call. Its output depends on each sample's x, t and label only (``y=None`` means the null
    label), like a real denoiser's, so that any correct way of batching gives the same numbers."""

    def __init__(self, num_classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.num_classes = num_classes
        self.null_class = num_classes
        self.gain = nn.Parameter(torch.rand(num_classes + 1, generator=g) + 0.5)
        self.shift = nn.Parameter(torch.randn(num_classes + 1, generator=g))
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None):
        self.calls.append(x.shape[0])
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            raise AssertionError(
                "call the model with one timestep per sample: t of shape [batch] (repeat it "
                "for the doubled batch)"
            )
        if y is None:
            y = torch.full((x.shape[0],), self.null_class, dtype=torch.long)
        if y.shape != (x.shape[0],):
            raise AssertionError(
                f"the labels must have shape [batch] = [{x.shape[0]}], got {list(y.shape)}"
            )
        gain = self.gain[y].reshape(-1, 1, 1, 1)
        shift = self.shift[y].reshape(-1, 1, 1, 1)
        return torch.tanh(gain * x + shift * torch.cos(t.float() / 50).reshape(-1, 1, 1, 1))


def reference_guided_eps(model, x, t, y, scale, null_class) -> torch.Tensor:
    """ε̃ of classifier-free guidance from two separate calls (clear, not fast)."""
    with torch.no_grad():
        eps_cond = model(x, t, y)
        eps_uncond = model(x, t, torch.full_like(y, null_class))
    return classifier_free_guidance(eps_uncond, eps_cond, scale)


@exercise("08.2 guided noise with one model call")
def check_guided_eps(my_guided_eps) -> None:
    """``my_guided_eps(model, x [B, ...], t [B], y [B], scale, null_class) -> ε̃ [B, ...]``, with
    a single model call on the doubled batch."""
    g = torch.Generator().manual_seed(9)
    model = CountingModel()
    for batch, scale in ((4, 3.0), (1, 0.0), (6, 7.5), (3, 1.0)):
        x = torch.randn(batch, 1, 4, 4, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        expected = reference_guided_eps(model, x, t, y, scale, model.null_class)
        model.calls.clear()
        with torch.no_grad():
            out = my_guided_eps(model, x.clone(), t.clone(), y.clone(), scale, model.null_class)
        out = as_tensor(out, "my_guided_eps(...)")
        calls = list(model.calls)
        assert calls, "the model was never called"
        assert out.shape == x.shape, (
            f"return one noise prediction per sample, shape {list(x.shape)}; got "
            f"{list(out.shape)} (did you return the whole doubled batch?)"
        )
        if not close(out, expected):
            swapped = reference_guided_eps(model, x, t, y, 1 - scale, model.null_class)
            if scale != 1.0 and close(out, swapped):
                raise AssertionError(
                    "the halves are swapped: if the labels go first in the doubled batch, the "
                    "first half of the output is ε̂_cond (eps.chunk(2) returns them in that order)"
                )
            raise AssertionError(
                f"wrong guided noise for batch {batch}, scale {scale} (largest gap "
                f"{(out.float() - expected).abs().max():.3g}): run the model on [x, x] with "
                "labels [y, null], split the result in two, and combine the halves as in 08.1"
            )
        if scale == 1.0 and calls == [batch]:
            continue  # the shortcut of the course's samplers: no guidance, one plain call
        if len(calls) > 1:
            raise AssertionError(
                f"the model was called {len(calls)} times (batches {calls}); guidance needs a "
                f"single call on a doubled batch of {2 * batch}: torch.cat([x, x]), the labels "
                "torch.cat([y, null labels]), and t twice"
            )
        assert calls == [2 * batch], (
            f"one call, but on a batch of {calls[0]}: it should be {2 * batch} (x twice)"
        )


# --------------------------------------------------------------------------------------------
# 08.3 Conditioning dropout
# --------------------------------------------------------------------------------------------


@exercise("08.3 conditioning dropout")
def check_drop_labels(my_drop_labels) -> None:
    """``my_drop_labels(y [B], u [B], p, null_class) -> labels [B]``: the null class where
    ``u < p``, y elsewhere, y itself unchanged."""
    g = torch.Generator().manual_seed(10)
    y = torch.randint(0, 10, (200,), generator=g)
    u = torch.rand(200, generator=g)
    for p in (0.1, 0.5, 0.0, 1.0):
        y_in = y.clone()
        out = as_tensor(my_drop_labels(y_in, u.clone(), p, 10), f"my_drop_labels(..., p={p})")
        expected = torch.where(u < p, torch.full_like(y, 10), y)
        assert torch.equal(y_in, y), (
            "the labels passed in were changed: build a new tensor (torch.where) instead of "
            "writing into y, which the caller may still need"
        )
        assert out.shape == y.shape, f"return one label per sample, shape [{len(y)}]"
        if out.dtype == torch.bool:
            raise AssertionError("this is the mask u < p; return the labels with the null class")
        assert not out.is_floating_point(), (
            f"labels must stay integers (torch.long) for the embedding table, got {out.dtype}"
        )
        if torch.equal(out.long(), expected):
            continue
        if torch.equal(out.long(), torch.where(u > p, torch.full_like(y, 10), y)):
            raise AssertionError(
                f"with p = {p} you dropped {(u > p).float().mean():.0%} of the labels: the "
                "comparison is the wrong way round. Drop where u < p, so that a fraction p goes"
            )
        if torch.equal(out.long(), torch.where(u < p, torch.zeros_like(y), y)):
            raise AssertionError(
                "dropped labels became 0, which is the digit 0; use the null class index"
            )
        raise AssertionError(
            f"with p = {p} expected {int((u < p).sum())} labels replaced by the null class 10 "
            f"(where u < p) and the rest unchanged; got {int((out == 10).sum())} null labels"
        )


# --------------------------------------------------------------------------------------------
# 08.4 Classifier guidance
# --------------------------------------------------------------------------------------------


class _TinyDenoiser(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, t, y=None):
        return torch.tanh(self.conv(x))


class _LinearClassifier(nn.Module):
    """A tiny noisy classifier: logits = W flatten(x) + b, ignoring t."""

    def __init__(self, pixels: int, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(pixels, num_classes)

    def forward(self, x, t):
        return self.fc(x.flatten(1))


@exercise("08.4 classifier guidance")
def check_classifier_guidance(my_classifier_guidance) -> None:
    """``my_classifier_guidance(eps [B, ...], grad [B, ...], alpha_bar_t [B, 1, 1, 1], scale)
    -> ε̂ - scale sqrt(1 - ᾱ_t) grad``, compared with :class:`ClassifierGuidance`."""
    torch.manual_seed(11)
    denoiser, classifier = _TinyDenoiser(), _LinearClassifier(16)
    schedule = NoiseSchedule(1000, "cosine")
    g = torch.Generator().manual_seed(11)
    for scale in (3.0, 1.0, 10.0):
        x = torch.randn(5, 1, 4, 4, generator=g)
        t = torch.tensor([10, 200, 500, 800, 990])
        y = torch.randint(0, 10, (5,), generator=g)
        expected = ClassifierGuidance(denoiser, classifier, schedule, scale)(x, t, y).detach()
        with torch.no_grad():
            eps = denoiser(x, t)
        x_in = x.clone().requires_grad_(True)
        log_p = torch.log_softmax(classifier(x_in, t), dim=1)[torch.arange(5), y].sum()
        (grad,) = torch.autograd.grad(log_p, x_in)
        alpha_bar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        out = my_classifier_guidance(eps.clone(), grad.clone(), alpha_bar.clone(), scale)
        out = as_tensor(out, "my_classifier_guidance(...)").detach()
        assert out.shape == eps.shape, (
            f"return the adjusted noise, shape {list(eps.shape)}, got {list(out.shape)}"
        )
        if close(out, expected):
            continue
        root = (1 - alpha_bar) ** 0.5
        if close(out, eps + scale * root * grad):
            raise AssertionError(
                "wrong sign: ε̂ points *against* the score (∇ log p ≈ -ε̂ / sqrt(1 - ᾱ_t)), so "
                "moving x_t up the classifier's log-probability means subtracting the gradient"
            )
        if close(out, eps - scale * (1 - alpha_bar) * grad):
            raise AssertionError("use sqrt(1 - ᾱ_t), not 1 - ᾱ_t: the noise's standard deviation")
        if close(out, eps - scale * grad):
            raise AssertionError(
                "the factor sqrt(1 - ᾱ_t) is missing: it converts a score (a gradient of log p) "
                "into the units of the predicted noise ε̂"
            )
        if close(out, eps - scale * alpha_bar**0.5 * grad):
            raise AssertionError("sqrt(ᾱ_t) is the signal's scale; the noise's is sqrt(1 - ᾱ_t)")
        if close(out, eps - root * grad) and scale != 1.0:
            raise AssertionError(
                "the guidance scale s is missing: multiply the gradient term by it"
            )
        raise AssertionError(
            f"at scale {scale} the result differs from ClassifierGuidance (largest gap "
            f"{(out.float() - expected).abs().max():.3g}): ε̂ - s sqrt(1 - ᾱ_t) ∇ log p(y | x_t)"
        )
