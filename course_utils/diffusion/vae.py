"""Lesson 09: a small variational autoencoder, the first stage of latent diffusion.

Latent diffusion (Rombach et al., 2022) splits generation in two. An autoencoder, trained once,
compresses images by a spatial factor f into a latent tensor that keeps what the eye cares about
and drops imperceptible detail; the diffusion model then works on those latents, which are f² times
smaller, so every training and sampling step is cheaper. A small f leaves the diffusion model with
a lot of work; a large f loses detail the decoder cannot bring back: lesson 09 measures both.

The autoencoder here is a VAE (Kingma & Welling, 2014). The encoder outputs, for every latent
entry, a mean μ and a log-variance log σ²; training samples z = μ + σ ε (the reparameterisation
trick: randomness moved into ε, so gradients reach μ and σ) and minimises

    loss = reconstruction error + β · KL( N(μ, σ²) || N(0, I) ).

The KL term keeps the latent space smooth and centred (nearby latents decode to similar images);
latent diffusion uses a tiny β (Stable Diffusion: 1e-6 per entry) because it only needs a
well-behaved scale, not a prior to sample from. Before diffusion, latents are multiplied by a
scale factor so that they have unit variance like the noise (:func:`latent_scale`, Stable
Diffusion's 0.18215).

Images are in [-1, 1], as for the diffusion models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_finite, check_images, check_signed_images
from ..train import evaluating, fit
from .training import seeded_loader

__all__ = ["VAE", "kl_divergence", "vae_loss", "train_vae", "latent_scale"]


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv 3x3 -> GroupNorm -> SiLU: the unit both halves of the VAE are built from."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.GroupNorm(8, out_channels),
        nn.SiLU(),
    )


class VAE(nn.Module):
    """A convolutional VAE that downsamples ``downsamples`` times by 2 (factor f = 2^downsamples).

    Shapes: x [B, in_channels, H, W] (H + 2 pad, W + 2 pad divisible by f) -> latent
    [B, latent_channels, (H + 2 pad)/f, (W + 2 pad)/f] -> reconstruction [B, in_channels, H, W].
    With the defaults a 16x16 digit (256 numbers) becomes a 4 x 4x4 latent (64 numbers).

    ``pad`` pixels of background (-1, black) are added on every side before encoding and cut off
    after decoding: a 28x28 garment padded by 2 becomes a 4 x 8x8 latent, a grid the latent U-Net
    can halve twice (7x7, from no padding, it cannot).
    """

    def __init__(
        self,
        in_channels: int = 1,
        latent_channels: int = 4,
        base: int = 32,
        downsamples: int = 2,
        pad: int = 0,
    ) -> None:
        super().__init__()
        if base % 8:
            raise ValueError(f"base must be a multiple of 8 (GroupNorm with 8 groups), got {base}")
        self.factor = 2**downsamples
        self.pad = pad
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        widths = [base * 2**i for i in range(downsamples + 1)]  # e.g. 32, 64, 128
        encoder = [_block(in_channels, widths[0])]
        for w_in, w_out in zip(widths, widths[1:]):
            encoder += [nn.Conv2d(w_in, w_out, 3, stride=2, padding=1), _block(w_out, w_out)]
        self.encoder = nn.Sequential(*encoder)
        self.to_moments = nn.Conv2d(widths[-1], 2 * latent_channels, 1)  # μ and log σ²
        decoder = [_block(latent_channels, widths[-1])]
        for w_in, w_out in zip(widths[::-1], widths[::-1][1:]):
            decoder += [nn.Upsample(scale_factor=2.0, mode="nearest"), _block(w_in, w_out)]
        self.decoder = nn.Sequential(*decoder, nn.Conv2d(widths[0], in_channels, 3, padding=1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, H, W] in [-1, 1] -> (μ, log σ²), each [B, latent_channels, h, w] with
        h = (H + 2 pad) / f, w = (W + 2 pad) / f."""
        check_images(x, what="VAE.encode", channels=self.in_channels)
        framed = F.pad(x, [self.pad] * 4, value=-1.0)  # a black frame: background, like the images'
        what = "VAE.encode" + (f" (sizes after padding by {self.pad})" if self.pad else "")
        check_images(framed, what=what, multiple_of=self.factor)
        check_signed_images(x, what="VAE.encode")
        mean, logvar = self.to_moments(self.encoder(framed)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)  # keeps exp() finite early in training

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, latent_channels, h, w] -> x̂ [B, C, h f - 2 pad, w f - 2 pad] (not clipped)."""
        check_images(z, what="VAE.decode", channels=self.latent_channels)
        x = self.decoder(z)
        p = self.pad
        return x[..., p : x.shape[-2] - p, p : x.shape[-1] - p]  # the frame off again

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample z = μ + σ ε, decode. Returns (x̂, μ, log σ²)."""
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device="cpu" if generator else None)
        z = mean + (0.5 * logvar).exp() * eps.to(mean.device)
        return self.decode(z), mean, logvar


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(μ, σ²) || N(0, 1) ) summed over each sample's latent entries: [B, ...] -> [B].

    In closed form per entry: ½ (μ² + σ² - 1 - log σ²), zero exactly when μ = 0 and σ = 1.
    """
    check_finite(mean, what="kl_divergence (mean)")
    check_finite(logvar, what="kl_divergence (logvar)")
    if mean.shape != logvar.shape or mean.dim() < 2:
        raise ValueError(
            f"kl_divergence takes mean and logvar of the same shape [B, ...], got "
            f"{tuple(mean.shape)} and {tuple(logvar.shape)}: pass both halves of VAE.encode(x)"
        )
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(dim=1)


def vae_loss(
    model: VAE, x: torch.Tensor, beta: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reconstruction, kl) of one batch: mean squared error per pixel plus ``beta`` times
    the KL divergence per latent entry (both averaged, so ``beta`` does not depend on the sizes)."""
    recon, mean, logvar = model(x, generator)
    reconstruction = F.mse_loss(recon, x)
    kl = kl_divergence(mean, logvar).mean() / mean[0].numel()
    return reconstruction + beta * kl, reconstruction, kl


def train_vae(
    model: VAE,
    images: torch.Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    beta: float = 1e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[float]:
    """Train on ``images [N, C, H, W]`` in [0, 1] (scaled to [-1, 1] here) with :func:`vae_loss`
    and AdamW; batches and ε come from generators seeded with ``seed``. Returns the training loss
    per epoch."""
    # The same seeded batches (scaled to [-1, 1]) as the diffusion models; labels unused.
    loader, generator = seeded_loader(images, torch.zeros(len(images)), batch_size, seed)

    def step(model: VAE, batch, device) -> torch.Tensor:
        return vae_loss(model, batch[0].to(device), beta, generator)[0]

    history = fit(
        model,
        loader,
        epochs=epochs,
        optimizer=torch.optim.AdamW(model.parameters(), lr=lr),
        train_step=step,
        device=device,
        progress=progress,
    )
    return history.train_loss


@torch.no_grad()
def latent_scale(model: VAE, images: torch.Tensor) -> float:
    """1 / standard deviation of the latent means of ``images`` ([0, 1]): multiply latents by it
    before diffusion (and divide before decoding) so that they have unit variance, the scale the
    noise schedule assumes."""
    check_images(images, what="latent_scale", value_range=(0, 1))  # it maps them to [-1, 1] itself
    with evaluating(model):
        mean, _ = model.encode(images.to(next(model.parameters()).device) * 2 - 1)
    return 1.0 / mean.std().item()
