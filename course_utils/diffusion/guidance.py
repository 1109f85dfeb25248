"""Lesson 08: guidance, steering a sampler towards a class with or without a separate classifier.

**Classifier-free guidance** (:func:`classifier_free_guidance`) trains one model both with class
labels and with a "null" label, then extrapolates away from the unconditional prediction:
ε̂ = ε̂_uncond + s (ε̂_cond - ε̂_uncond). s = 1 is plain conditional sampling, s > 1 trades variety
for images that look more like their class. A :class:`Condition` is what every sampler is asked to
draw (labels, guidance scale, null class); its :meth:`Condition.predict` is the model call every
sampler makes, with this guidance when asked.

**Classifier guidance** (:class:`ClassifierGuidance`), the older alternative, steers an
unconditional model with the gradient of a separate classifier of noisy images
(:class:`NoisyClassifier`, trained by :func:`train_noisy_classifier`):
ε̂ - s sqrt(1 - ᾱ_t) ∇ log p(y | x_t).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_labels
from ..train import fit
from .schedule import NoiseSchedule, draw_noise, per_sample, q_sample
from .training import seeded_loader
from .unet import ResBlock, check_class_labels, timestep_embedding

__all__ = [
    "classifier_free_guidance",
    "Condition",
    "NoisyClassifier",
    "train_noisy_classifier",
    "ClassifierGuidance",
]


# --------------------------------------------------------------------------------------------
# Classifier-free guidance
# --------------------------------------------------------------------------------------------


def classifier_free_guidance(
    eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float
) -> torch.Tensor:
    """ε̂ = ε̂_uncond + scale (ε̂_cond - ε̂_uncond): 0 -> unconditional, 1 -> conditional, > 1
    pushes further in the direction the label pulls."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


@dataclasses.dataclass(frozen=True, eq=False)
class Condition:
    """What a sampler is asked to draw: one class label per sample, and how hard to pull.

    ``Condition()`` asks for nothing (an unconditional model, or the null class of a conditional
    one); ``Condition(y)`` for the classes ``y [B]`` (int64); ``Condition(y, guidance_scale=3.0)``
    for the same classes with classifier-free guidance: the model runs on y and on
    ``null_class`` (default ``model.null_class``, the label it saw when the class was dropped) and
    the two predictions are extrapolated. Any other label works as ``null_class`` too: guidance
    then also pushes away from that class, a "negative prompt" (lesson 08).

    The three travel together from the caller to every model call of a sampler, like diffusers'
    pipelines' ``class_labels`` and ``guidance_scale``.
    """

    labels: torch.Tensor | None = None
    guidance_scale: float = 1.0
    null_class: int | None = None

    def __post_init__(self) -> None:
        if self.guidance_scale != 1.0 and self.labels is None:
            raise ValueError(
                f"guidance_scale={self.guidance_scale} needs labels to guide towards: "
                "Condition(labels, guidance_scale=...)"
            )

    @property
    def guided(self) -> bool:
        """True when each prediction costs two model passes (guidance_scale != 1)."""
        return self.guidance_scale != 1.0

    def predict(self, model: Callable[..., torch.Tensor], x: torch.Tensor, t: int | float):
        """The model's output (ε̂, or a velocity for flow matching) for the whole batch
        x [B, ...] at time ``t``, an integer timestep or a float flow time, with classifier-free
        guidance when asked. Returns a tensor shaped like x."""
        dtype = torch.long if isinstance(t, int) else torch.float
        t_batch = torch.full((x.shape[0],), t, dtype=dtype, device=x.device)
        y = None if self.labels is None else self.labels.to(x.device)
        if not self.guided:
            return model(x, t_batch, y=y)
        # One forward pass on a doubled batch: the first half with the labels, the second with null.
        y_null = torch.full_like(y, self._null_class(model))
        eps = model(torch.cat([x, x]), torch.cat([t_batch, t_batch]), y=torch.cat([y, y_null]))
        eps_cond, eps_uncond = eps.chunk(2)
        return classifier_free_guidance(eps_uncond, eps_cond, self.guidance_scale)

    def _check(self, model: nn.Module, *, what: str, batch: int) -> None:
        """Refuse labels a sampler of ``batch`` samples cannot use: not one integer per sample,
        or a class ``model`` does not know."""
        if self.labels is not None:
            check_class_labels(self.labels, what=what, model=model, length=batch)
        if self.guided:
            self._null_class(model)

    def _null_class(self, model) -> int:
        null_class = self.null_class
        if null_class is None:
            null_class = getattr(model, "null_class", None)
        if null_class is None:
            raise ValueError(
                "guidance needs the null class: Condition(labels, guidance_scale, null_class=...) "
                "(models with a .null_class attribute, like ConditionalUNet, need none)"
            )
        return null_class


# --------------------------------------------------------------------------------------------
# Classifier guidance: steering with the gradient of a noise-aware classifier
# --------------------------------------------------------------------------------------------


class NoisyClassifier(nn.Module):
    """A classifier of *noisy* images, p(y | x_t, t): the encoder half of
    :class:`~course_utils.diffusion.ConditionalUNet` followed by global average pooling and a
    linear layer.

    Classifier guidance needs ∇ log p(y | x_t) at every sampling step, that is on images at every
    noise level. An ordinary classifier has only seen clean digits, and its gradient on a noisy x_t
    points nowhere useful; this one is trained on q_sample(x_0, t) (:func:`train_noisy_classifier`)
    and, like the denoiser, is told t.

    Shapes: x [B, in_channels, H, W] (H, W divisible by 4), t [B] long -> logits [B, num_classes].
    """

    def __init__(self, in_channels: int = 1, base: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        if base % 8:
            raise ValueError(f"base must be a multiple of 8 (GroupNorm with 8 groups), got {base}")
        self.num_classes = num_classes
        self.base = base
        emb = 4 * base
        self.time_mlp = nn.Sequential(nn.Linear(base, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.conv_in = nn.Conv2d(in_channels, base, 3, padding=1)
        self.block1 = ResBlock(base, base, emb)  # 16x16
        self.pool1 = nn.Conv2d(base, base, 3, stride=2, padding=1)
        self.block2 = ResBlock(base, 2 * base, emb)  # 8x8
        self.pool2 = nn.Conv2d(2 * base, 2 * base, 3, stride=2, padding=1)
        self.block3 = ResBlock(2 * base, 2 * base, emb)  # 4x4
        self.norm = nn.GroupNorm(8, 2 * base)
        self.fc = nn.Linear(2 * base, num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"height and width must be divisible by 4, got {tuple(x.shape[-2:])}")
        emb = self.time_mlp(timestep_embedding(t, self.base))
        h = self.block1(self.conv_in(x), emb)
        h = self.block2(self.pool1(h), emb)
        h = self.block3(self.pool2(h), emb)
        return self.fc(F.silu(self.norm(h)).mean(dim=(2, 3)))


def train_noisy_classifier(
    classifier: nn.Module,
    schedule: NoiseSchedule,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[float]:
    """Train ``classifier(x_t, t)`` with cross-entropy on ``images [N, C, H, W]`` in [0, 1],
    each batch noised to a random timestep t ~ U{0, ..., T-1} with :func:`q_sample`.

    At large t the label is unrecoverable and the best the classifier can do is a flat
    distribution, so the loss never reaches 0. Seeded like
    :func:`~course_utils.diffusion.train_diffusion`. Returns the training loss per epoch.
    """
    loader, generator = seeded_loader(images, labels, batch_size, seed)

    def step(classifier: nn.Module, batch, device) -> torch.Tensor:
        x0, y = (v.to(device) for v in batch)
        t = torch.randint(0, schedule.num_timesteps, (len(x0),), generator=generator).to(device)
        x_t = q_sample(schedule, x0, t, draw_noise(x0.shape, generator, device))
        return F.cross_entropy(classifier(x_t, t), y)

    history = fit(
        classifier,
        loader,
        epochs=epochs,
        optimizer=torch.optim.AdamW(classifier.parameters(), lr=lr),
        train_step=step,
        device=device,
        progress=progress,
    )
    return history.train_loss


class ClassifierGuidance(nn.Module):
    """An unconditional denoiser steered towards class y by a noise-aware classifier
    (Dhariwal & Nichol, 2021): a drop-in ``model(x, t, y)`` for
    :func:`~course_utils.diffusion.sample_ddim` / :func:`~course_utils.diffusion.sample_ddpm`.

    Bayes' rule for scores: ∇ log p(x_t | y) = ∇ log p(x_t) + ∇ log p(y | x_t). A trained ε̂ is a
    scaled score, ∇ log p(x_t) ≈ -ε̂ / sqrt(1 - ᾱ_t), so adding the classifier's gradient gives

        ε̂_guided = ε̂(x_t, t) - s · sqrt(1 - ᾱ_t) · ∇_{x_t} log p_φ(y | x_t, t),

    where the scale ``s`` (> 1 sharpens p(y | x_t)) trades diversity for fidelity as in
    classifier-free guidance. The denoiser runs with ``y=None`` (its null class): everything it
    knows about y comes from the classifier. Each step costs one denoiser call plus a classifier
    forward *and backward* pass.
    """

    def __init__(
        self, model: nn.Module, classifier: nn.Module, schedule: NoiseSchedule, scale: float
    ) -> None:
        super().__init__()
        self.model, self.classifier, self.schedule, self.scale = model, classifier, schedule, scale

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        if y is None:
            raise ValueError("classifier guidance needs the labels y to steer towards")
        check_labels(y, what="ClassifierGuidance", num_classes=self.classifier.num_classes)
        eps = self.model(x, t)
        with torch.enable_grad():  # samplers run under no_grad; this gradient is part of the step
            x_in = x.detach().requires_grad_(True)
            log_probs = F.log_softmax(self.classifier(x_in, t), dim=1)
            (grad,) = torch.autograd.grad(log_probs[torch.arange(len(y)), y].sum(), x_in)
        alpha_bar = self.schedule.alphas_cumprod.to(device=x.device, dtype=x.dtype)[t]
        return eps - self.scale * per_sample((1 - alpha_bar) ** 0.5, x) * grad
