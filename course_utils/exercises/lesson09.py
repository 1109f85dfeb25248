"""Lesson 09: checkers for the exercises of ``09_latent_diffusion``.

Each checker calls the learner's answer on random inputs (and, for the latent round trip, on a
small untrained :class:`~course_utils.diffusion.VAE`) and compares the result with the course's own
implementation in :mod:`course_utils.diffusion.vae`; a wrong answer fails with a hint about the most
likely mistake.
"""

import torch

from ..diffusion import VAE, kl_divergence
from . import as_tensor, close, exercise

# --------------------------------------------------------------------------------------------
# 09.1 The reparameterisation trick
# --------------------------------------------------------------------------------------------


@exercise("09.1 reparameterised sample")
def check_reparameterise(my_reparameterise) -> None:
    """``my_reparameterise(mean, logvar, eps) -> z = μ + σ ε`` with σ = exp(½ log σ²); gradients
    must reach ``mean`` and ``logvar``."""
    g = torch.Generator().manual_seed(9)
    mean = torch.randn(3, 4, 2, 2, generator=g)
    logvar = torch.randn(3, 4, 2, 2, generator=g) - 1.0
    eps = torch.randn(3, 4, 2, 2, generator=g)
    m, lv = mean.clone().requires_grad_(), logvar.clone().requires_grad_()
    z = as_tensor(my_reparameterise(m, lv, eps.clone()), "reparameterise(mean, logvar, eps)")
    assert z.shape == mean.shape, (
        f"z must have the mean's shape {list(mean.shape)}, got {list(z.shape)}"
    )
    expected = mean + (0.5 * logvar).exp() * eps
    if not close(z.detach(), expected):
        if close(z.detach(), mean + logvar.exp() * eps):
            raise AssertionError(
                "exp(logvar) is the variance σ²; the noise is scaled by the standard deviation "
                "σ = exp(logvar / 2)"
            )
        if close(z.detach(), mean + logvar * eps):
            raise AssertionError(
                "logvar is log σ², not σ: the standard deviation is exp(logvar / 2)"
            )
        if close(z.detach(), mean):
            raise AssertionError("z must include the noise: z = μ + σ ε")
        raise AssertionError(
            f"z differs from μ + exp(logvar / 2) ε (largest gap "
            f"{(z.detach().double() - expected).abs().max():.3g}); use the eps you are given"
        )
    assert z.requires_grad, (
        "z does not depend on mean and logvar through autograd: compute it with tensor operations "
        "(no .detach(), .item() or torch.no_grad()), so that the loss can train the encoder"
    )
    z.sum().backward()
    assert (
        m.grad is not None
        and lv.grad is not None
        and close(lv.grad, 0.5 * (0.5 * logvar).exp() * eps)
    ), "the gradient must reach both mean and logvar: that is the point of the trick"


# --------------------------------------------------------------------------------------------
# 09.2 The KL term in closed form
# --------------------------------------------------------------------------------------------


@exercise("09.2 KL divergence per sample")
def check_kl_per_sample(my_kl) -> None:
    """``my_kl(mean, logvar) -> [B]``: KL(N(μ, σ²) || N(0, I)) summed over each sample's latent
    entries, compared with :func:`course_utils.diffusion.kl_divergence`."""
    g = torch.Generator().manual_seed(92)
    for shape in [(5, 4, 4, 4), (3, 8), (1, 2, 3, 3)]:
        mean = torch.randn(shape, generator=g)
        logvar = torch.randn(shape, generator=g) * 0.7 - 0.5
        out = as_tensor(my_kl(mean.clone(), logvar.clone()), "kl(mean, logvar)")
        expected = kl_divergence(mean, logvar)
        if close(out, expected):
            continue
        per_entry = 0.5 * (mean**2 + logvar.exp() - 1 - logvar)
        if out.numel() == 1 and shape[0] > 1:
            raise AssertionError(
                f"return one value per sample, shape [{shape[0]}]: sum over each sample's latent "
                "entries, do not average (or sum) over the batch"
            )
        if out.shape == mean.shape:
            raise AssertionError(
                "sum the per-entry terms over each sample's latent entries: shape [B], not the "
                "latent's shape"
            )
        if close(out, per_entry.flatten(1).mean(1)):
            raise AssertionError(
                "the KL of independent entries is the *sum* of their KLs, not the mean"
            )
        if close(out, 2 * expected):
            raise AssertionError("the factor ½ is missing: ½ (μ² + σ² - 1 - log σ²)")
        sd = logvar  # the mistake: logvar read as the standard deviation
        if close(out, 0.5 * (mean**2 + sd**2 - 1 - (sd**2).log()).flatten(1).sum(1)):
            raise AssertionError("logvar is log σ² already: σ² = exp(logvar), log σ² = logvar")
        if close(out, 0.5 * (mean**2 + logvar.exp() + 1 - logvar).flatten(1).sum(1)):
            raise AssertionError("sign of the constant: ½ (μ² + σ² - 1 - log σ²), minus 1")
        raise AssertionError(
            f"for shape {list(shape)} the result differs from the sum of ½ (μ² + σ² - 1 - log σ²) "
            f"(largest gap {(out.double() - expected).abs().max():.3g})"
        )
    zero = as_tensor(my_kl(torch.zeros(2, 3), torch.zeros(2, 3)), "kl(mean, logvar)")
    assert torch.allclose(zero.double(), torch.zeros(2, dtype=torch.double)), (
        "the KL of N(0, 1) from itself must be 0"
    )


# --------------------------------------------------------------------------------------------
# 09.3 The latent round trip
# --------------------------------------------------------------------------------------------


def _tiny_vae() -> VAE:
    """A small untrained VAE (the round trip is about the plumbing) whose decoder's outputs
    overshoot [-1, 1], as a trained decoder's sometimes do, so that a missing clamp shows."""
    torch.manual_seed(93)
    vae = VAE(in_channels=1, latent_channels=2, base=8, downsamples=1).eval()
    with torch.no_grad():
        vae.decoder[-1].weight.mul_(5.0)
    return vae


def reference_to_latent(vae: VAE, images01: torch.Tensor, scale: float) -> torch.Tensor:
    """[0, 1] images -> scaled latent means, the diffusion model's data."""
    return vae.encode(images01 * 2 - 1)[0] * scale


def reference_to_images(vae: VAE, z: torch.Tensor, scale: float) -> torch.Tensor:
    """Scaled latents -> decoded images in [0, 1]."""
    return ((vae.decode(z / scale) + 1) / 2).clamp(0, 1)


@exercise("09.3 latent round trip")
def check_round_trip(my_to_latent, my_to_images) -> None:
    """``my_to_latent(vae, images01, scale) -> z`` and ``my_to_images(vae, z, scale) -> images01``
    on a small untrained VAE, compared with :func:`reference_to_latent` / :func:`reference_to_images`."""
    vae = _tiny_vae()
    g = torch.Generator().manual_seed(930)
    images = torch.rand(4, 1, 8, 8, generator=g)
    scale = 2.5
    with torch.no_grad():
        z = as_tensor(my_to_latent(vae, images.clone(), scale), "to_latent(vae, images, scale)")
        again = my_to_latent(vae, images.clone(), scale)
        expected = reference_to_latent(vae, images, scale)
    assert z.shape == expected.shape, (
        f"to_latent must return the latent [B, {vae.latent_channels}, H/f, W/f] = "
        f"{list(expected.shape)}, got {list(z.shape)}"
    )
    if not close(z, expected):
        if not close(z, again):
            raise AssertionError(
                "to_latent gives a different answer each call: use the encoder's mean μ, not a "
                "sample z = μ + σ ε (the diffusion model should learn the data, not the VAE's noise)"
            )
        if close(z, expected / scale**2):
            raise AssertionError("multiply the latents by the scale (to unit variance), not divide")
        if close(z, expected / scale):
            raise AssertionError("the scale is missing: the diffusion model wants μ · scale")
        raise AssertionError("to_latent differs from scale · (mean of vae.encode(2 x - 1))")
    z = torch.randn(expected.shape, generator=g) * 2.0  # a latent "sample", values outside [-1, 1]
    with torch.no_grad():
        out = as_tensor(my_to_images(vae, z.clone(), scale), "to_images(vae, z, scale)")
        expected = reference_to_images(vae, z, scale)
        raw = vae.decode(z / scale)
    assert out.shape == expected.shape, (
        f"to_images must return images {list(expected.shape)}, got {list(out.shape)}"
    )
    if close(out, expected):
        return
    if close(out, ((vae.decode(z * scale) + 1) / 2).clamp(0, 1)):
        raise AssertionError("undo the scale before decoding: decode(z / scale), not z * scale")
    if close(out, ((vae.decode(z) + 1) / 2).clamp(0, 1)):
        raise AssertionError("divide z by the scale before decoding: decode(z / scale)")
    if close(out, raw) or close(out, raw.clamp(-1, 1)):
        raise AssertionError("the decoder returns [-1, 1] images: map them back with (x + 1) / 2")
    if close(out, (raw + 1) / 2):
        raise AssertionError(
            "the decoder's output is not clipped: clamp the [0, 1] images to [0, 1]"
        )
    raise AssertionError("to_images differs from ((decode(z / scale) + 1) / 2).clamp(0, 1)")


# --------------------------------------------------------------------------------------------
# 09.4 Compression factor and latent shape
# --------------------------------------------------------------------------------------------


def reference_latent_shape(image_shape, downsamples: int, latent_channels: int):
    """(C, H, W), downsamples, latent channels -> ((latent_channels, H / f, W / f), ratio)."""
    c, h, w = image_shape
    f = 2**downsamples
    shape = (latent_channels, h // f, w // f)
    return shape, (c * h * w) / (latent_channels * shape[1] * shape[2])


@exercise("09.4 latent shape and compression")
def check_latent_shape(my_latent_shape) -> None:
    """``my_latent_shape((C, H, W), downsamples, latent_channels) -> ((c, h, w), ratio)``, where
    ratio = numbers per image / numbers per latent; Stable Diffusion's case included."""
    cases = [((1, 16, 16), 2, 4), ((1, 16, 16), 1, 4), ((3, 512, 512), 3, 4), ((3, 64, 32), 2, 3)]
    for image_shape, downsamples, channels in cases:
        out = my_latent_shape(image_shape, downsamples, channels)
        assert isinstance(out, (tuple, list)) and len(out) == 2, (
            "return a pair: the latent shape (c, h, w) and the compression ratio"
        )
        shape, ratio = tuple(int(s) for s in out[0]), float(out[1])
        (c, h, w), expected = reference_latent_shape(image_shape, downsamples, channels)
        if shape != (c, h, w):
            if shape[1:] == (image_shape[1] // downsamples, image_shape[2] // downsamples):
                raise AssertionError(
                    "each downsampling halves the size: f = 2 ** downsamples, not downsamples"
                )
            if shape[0] != c:
                raise AssertionError(
                    "the latent has latent_channels channels, whatever the image's channels"
                )
            raise AssertionError(
                f"for images {image_shape} with {downsamples} downsamplings the latent is "
                f"{(c, h, w)}, you returned {shape}"
            )
        if abs(ratio - expected) > 1e-6 * expected:
            f = 2**downsamples
            if abs(ratio - f * f) < 1e-9 or abs(ratio - f) < 1e-9:
                raise AssertionError(
                    "the ratio counts numbers, channels included: (C H W) / (c h w), not the "
                    "spatial factor alone"
                )
            if abs(ratio * expected - 1) < 1e-6:
                raise AssertionError("the ratio is image numbers / latent numbers (> 1 here)")
            raise AssertionError(
                f"for {image_shape} -> {shape} the ratio is {expected:g}, you returned {ratio:g}"
            )
