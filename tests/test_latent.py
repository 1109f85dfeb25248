"""course_utils.diffusion.vae: the VAE of latent diffusion (lesson 09)."""

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from course_utils.data import digits
from course_utils.diffusion import VAE, kl_divergence, latent_scale, train_vae, vae_loss


def test_vae_shapes_for_each_compression_factor():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    for downsamples, side in ((1, 8), (2, 4), (3, 2)):
        vae = VAE(1, latent_channels=4, base=8, downsamples=downsamples)
        mean, logvar = vae.encode(x)
        assert mean.shape == logvar.shape == (3, 4, side, side)
        assert vae.decode(mean).shape == x.shape
        assert vae.factor == 2**downsamples
    with pytest.raises(ValueError, match="divisible by 4"):
        VAE(base=8).encode(torch.zeros(1, 1, 10, 10))
    with pytest.raises(ValueError, match=r"VAE.encode takes images in \[-1, 1\].*x \* 2 - 1"):
        VAE(base=8).encode(torch.rand(3, 1, 16, 16))  # [0, 1] images: the range of the data sets
    with pytest.raises(ValueError, match="VAE.encode takes 1-channel images"):
        VAE(base=8).encode(torch.zeros(2, 16, 16, 1))
    with pytest.raises(ValueError, match="VAE.decode takes 4-channel images"):
        VAE(base=8).decode(torch.zeros(2, 1, 16, 16))  # an image instead of a latent


def test_vae_pad_frames_the_image_and_cuts_the_frame_off_again():
    torch.manual_seed(0)
    vae = VAE(base=8, pad=2)  # 28x28 garments -> 32x32 -> an 8x8 latent the U-Net can halve twice
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    mean, _ = vae.encode(x)
    assert mean.shape == (3, 4, 8, 8)
    assert vae.decode(mean).shape == x.shape
    # the frame is background (-1): encoding equals an unpadded VAE's on the image framed in black
    framed = torch.nn.functional.pad(x, [2] * 4, value=-1.0)
    unpadded = VAE(base=8)
    unpadded.load_state_dict(vae.state_dict())  # same weights: padding adds no parameter
    torch.testing.assert_close(mean, unpadded.encode(framed)[0])
    torch.testing.assert_close(vae.decode(mean), unpadded.decode(mean)[..., 2:30, 2:30])
    with pytest.raises(
        ValueError, match=r"after padding by 1\) takes heights and widths divisible"
    ):
        VAE(base=8, pad=1).encode(x)  # 30x30 does not divide by 4


def test_kl_divergence_refuses_mismatched_or_non_finite_moments():
    mean = torch.zeros(2, 4, 2, 2)
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence(mean, mean[:, :2])
    with pytest.raises(ValueError, match=r"kl_divergence \(logvar\) got NaN"):
        kl_divergence(mean, torch.full_like(mean, float("inf")))


def test_kl_matches_torch_distributions_and_vanishes_at_the_prior():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(5, 4, 2, 2, generator=g), torch.randn(5, 4, 2, 2, generator=g)
    expected = torch_kl(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(kl_divergence(mean, logvar), expected)
    torch.testing.assert_close(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_reparameterisation_gives_gradients_to_both_moments():
    torch.manual_seed(0)
    vae = VAE(base=8)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    loss, recon, kl = vae_loss(vae, x, beta=0.1, generator=torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(recon.item() + 0.1 * kl.item(), rel=1e-5)
    loss.backward()
    weight = vae.to_moments.weight.grad  # rows 0-3 produce μ, rows 4-7 log σ²
    assert weight[:4].abs().sum() > 0 and weight[4:].abs().sum() > 0
    assert all(p.grad is not None for p in vae.parameters())


def test_train_vae_learns_deterministically_and_scale_normalises():
    images = digits(16)[0][:64]

    def run():
        torch.manual_seed(0)
        vae = VAE(base=8)
        return vae, train_vae(vae, images, epochs=5, lr=3e-3, batch_size=16, progress=False)

    (a, losses), (b, _) = run(), run()
    assert losses[-1] < 0.5 * losses[0]
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    scale = latent_scale(a, images)
    mean, _ = a.eval().encode(images * 2 - 1)
    assert (mean * scale).std().item() == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_vae(VAE(base=8), images * 2 - 1, epochs=1)
