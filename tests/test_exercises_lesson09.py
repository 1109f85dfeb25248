import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed, stub

from course_utils.diffusion import VAE, kl_divergence
from course_utils.exercises import lesson09

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def reparameterise(mean, logvar, eps):
    return mean + torch.exp(0.5 * logvar) * eps


def kl_per_sample(mean, logvar):
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def to_latent(vae, images01, scale):
    mean, _ = vae.encode(images01 * 2 - 1)
    return mean * scale


def to_images(vae, z, scale):
    return ((vae.decode(z / scale) + 1) / 2).clamp(0, 1)


def latent_shape(image_shape, downsamples, latent_channels):
    c, h, w = image_shape
    f = 2**downsamples
    return (latent_channels, h // f, w // f), (c * h * w) / (latent_channels * (h // f) * (w // f))


CHECKS = {
    "09.1 reparameterised sample": (lesson09.check_reparameterise, reparameterise),
    "09.2 KL divergence per sample": (lesson09.check_kl_per_sample, kl_per_sample),
    "09.3 latent round trip": (lambda fn: lesson09.check_round_trip(fn, to_images), to_latent),
    "09.4 latent shape and compression": (lesson09.check_latent_shape, latent_shape),
}


def test_right_answers_pass():
    assert_right_answers_pass(CHECKS)


def test_other_right_answers_pass():
    def reparameterise_with_sqrt(mean, logvar, eps):
        return mean + logvar.exp().sqrt() * eps

    def kl_with_std(mean, logvar):
        std = (0.5 * logvar).exp()
        return (-torch.log(std) + (std**2 + mean**2) / 2 - 0.5).sum(dim=tuple(range(1, mean.dim())))

    def latent_shape_as_list(image_shape, downsamples, latent_channels):
        shape, ratio = latent_shape(image_shape, downsamples, latent_channels)
        return [list(shape), int(ratio) if ratio == int(ratio) else ratio]

    assert lesson09.check_reparameterise(reparameterise_with_sqrt).passed
    assert lesson09.check_kl_per_sample(kl_with_std).passed
    assert lesson09.check_latent_shape(latent_shape_as_list).passed


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


def test_round_trip_stub_in_either_function_is_not_attempted():
    assert lesson09.check_round_trip(to_latent, stub).status == "not attempted"


def test_references_match_the_package():
    """The checkers' references are the package's own formulas: the KL vanishes at N(0, 1), the
    scaled round trip through a VAE reproduces decode(mean), and f=4 on 16x16 gives 4x4x4."""
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    torch.testing.assert_close(kl_per_sample(mean, logvar), kl_divergence(mean, logvar))
    vae = VAE(base=8, downsamples=1).eval()
    x = torch.rand(2, 1, 8, 8, generator=g)
    with torch.no_grad():
        z = lesson09.reference_to_latent(vae, x, 3.0)
        back = lesson09.reference_to_images(vae, z, 3.0)
        direct = ((vae.decode(vae.encode(x * 2 - 1)[0]) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(back, direct)
    assert lesson09.reference_latent_shape((1, 16, 16), 2, 4) == ((4, 4, 4), 4.0)
    assert lesson09.reference_latent_shape((3, 512, 512), 3, 4) == ((4, 64, 64), 48.0)


# ------------------------------------------------------------------ wrong answers get hints


def test_reparameterise_hints():
    def variance_as_std(mean, logvar, eps):
        return mean + logvar.exp() * eps

    def logvar_as_std(mean, logvar, eps):
        return mean + logvar * eps

    def detached(mean, logvar, eps):
        return (mean + (0.5 * logvar).exp() * eps).detach()

    def fresh_noise(mean, logvar, eps):
        return mean + (0.5 * logvar).exp() * torch.randn_like(mean)

    assert failed(lesson09.check_reparameterise(variance_as_std), "standard deviation")
    assert failed(lesson09.check_reparameterise(logvar_as_std), "log σ²")
    assert failed(lesson09.check_reparameterise(detached), "autograd")
    assert failed(lesson09.check_reparameterise(fresh_noise), "eps you are given")


def test_kl_hints():
    def logvar_as_std(mean, logvar):
        return 0.5 * (mean**2 + logvar**2 - 1 - (logvar**2).log()).flatten(1).sum(1)

    def no_half(mean, logvar):
        return 2 * kl_per_sample(mean, logvar)

    def batch_mean(mean, logvar):
        return kl_per_sample(mean, logvar).mean()

    def mean_over_entries(mean, logvar):
        return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).mean(1)

    def not_summed(mean, logvar):
        return 0.5 * (mean**2 + logvar.exp() - 1 - logvar)

    assert failed(lesson09.check_kl_per_sample(logvar_as_std), "log σ² already")
    assert failed(lesson09.check_kl_per_sample(no_half), "½")
    assert failed(lesson09.check_kl_per_sample(batch_mean), "one value per sample")
    assert failed(lesson09.check_kl_per_sample(mean_over_entries), "*sum*")
    assert failed(lesson09.check_kl_per_sample(not_summed), "shape [B]")


def test_round_trip_hints():
    def sampled(vae, images01, scale):
        mean, logvar = vae.encode(images01 * 2 - 1)
        return (mean + (0.5 * logvar).exp() * torch.randn_like(mean)) * scale

    def unmapped(vae, images01, scale):
        return vae.encode(images01)[0] * scale

    def divided(vae, images01, scale):
        return vae.encode(images01 * 2 - 1)[0] / scale

    def scale_forgotten(vae, z, scale):
        return ((vae.decode(z) + 1) / 2).clamp(0, 1)

    def multiplied(vae, z, scale):
        return ((vae.decode(z * scale) + 1) / 2).clamp(0, 1)

    def not_mapped_back(vae, z, scale):
        return vae.decode(z / scale)

    def not_clamped(vae, z, scale):
        return (vae.decode(z / scale) + 1) / 2

    check = lesson09.check_round_trip
    assert failed(check(sampled, to_images), "mean μ")
    with pytest.raises(ValueError, match=r"VAE.encode takes images in \[-1, 1\].*x \* 2 - 1"):
        check(unmapped, to_images)  # the VAE's own guard names the fix
    assert failed(check(divided, to_images), "not divide")
    assert failed(check(to_latent, scale_forgotten), "divide z by the scale")
    assert failed(check(to_latent, multiplied), "z / scale")
    assert failed(check(to_latent, not_mapped_back), "(x + 1) / 2")
    assert failed(check(to_latent, not_clamped), "clamp")


def test_latent_shape_hints():
    def linear_factor(image_shape, downsamples, latent_channels):
        c, h, w = image_shape
        shape = (latent_channels, h // downsamples, w // downsamples)
        return shape, c * h * w / (latent_channels * shape[1] * shape[2])

    def spatial_ratio(image_shape, downsamples, latent_channels):
        return latent_shape(image_shape, downsamples, latent_channels)[0], (2**downsamples) ** 2

    def inverted(image_shape, downsamples, latent_channels):
        shape, ratio = latent_shape(image_shape, downsamples, latent_channels)
        return shape, 1 / ratio

    def image_channels(image_shape, downsamples, latent_channels):
        c, h, w = image_shape
        f = 2**downsamples
        return (c, h // f, w // f), 1.0

    assert failed(lesson09.check_latent_shape(linear_factor), "2 ** downsamples")
    assert failed(lesson09.check_latent_shape(spatial_ratio), "channels included")
    assert failed(lesson09.check_latent_shape(inverted), "> 1")
    assert failed(lesson09.check_latent_shape(image_channels), "latent_channels channels")
