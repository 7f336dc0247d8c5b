"""Frame ↔ token codecs: pixel patches (exact pixel likelihood) and a small convolutional autoencoder (latents).

Both map frames (B, T, 3, H, W) float in [-1, 1] to tokens (B, T, N, D) and back. The flow models tokens,
so the likelihood is over pixels for `PixelCodec` and over latents for `LatentCodec` (`space` says which).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig


class PixelCodec(nn.Module):
    space = "pixels"
    trainable = False

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.p = cfg.codec.patch
        self.grid = cfg.grid

    def encode(self, frames: Tensor) -> Tensor:
        b, t, c, _, _ = frames.shape
        (gh, gw), p = self.grid, self.p
        x = frames.reshape(b, t, c, gh, p, gw, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, t, gh * gw, c * p * p)

    def decode(self, tokens: Tensor) -> Tensor:
        b, t = tokens.shape[:2]
        (gh, gw), p = self.grid, self.p
        x = tokens.reshape(b, t, gh, gw, 3, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, t, 3, gh * p, gw * p)


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


def _up(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1),
                         nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class _Res(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(min(8, c), c), nn.SiLU(),
                                  nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class LatentCodec(nn.Module):
    """Conv autoencoder H×W×3 → (H/f)×(W/f)×C. Latents are RMS-normalised over channels (unit scale), so the
    flow's σ means the same thing for every model; the decoder is trained on latents with σ noise added.

    The first layer is a 4×4 space-to-depth patchify and the last a pixel shuffle, so no convolution runs at
    full resolution: a 64×64 frame costs about 0.3 GFLOP to encode and decode on a CPU.
    """

    space = "latents"
    trainable = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, h, f = cfg.codec.latent_channels, cfg.codec.hidden, cfg.codec.downsample
        p = min(4, f)  # patchify factor; the rest of the reduction is stride-2 convolutions
        downs = (f // p).bit_length() - 1
        enc: list[nn.Module] = [nn.Conv2d(3, h, p, stride=p), nn.SiLU(), _Res(h)]
        enc += [_down(h, h) for _ in range(downs)]
        enc += [_Res(h), nn.Conv2d(h, c, 1)]
        dec: list[nn.Module] = [nn.Conv2d(c, h, 3, padding=1), nn.SiLU(), _Res(h)]
        dec += [_up(h, h) for _ in range(downs)]
        dec += [_Res(h), nn.Conv2d(h, 3 * p * p, 1), nn.PixelShuffle(p)]
        self.enc, self.dec = nn.Sequential(*enc), nn.Sequential(*dec)
        self.grid = cfg.grid

    def encode(self, frames: Tensor) -> Tensor:
        b, t = frames.shape[:2]
        z = self.enc(frames.flatten(0, 1))
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-6)
        return z.flatten(2).transpose(1, 2).reshape(b, t, -1, z.shape[1])

    def decode(self, tokens: Tensor) -> Tensor:
        b, t, _, c = tokens.shape
        z = tokens.reshape(b * t, *self.grid, c).permute(0, 3, 1, 2)
        x = self.dec(z)
        return x.reshape(b, t, *x.shape[1:])

    def loss(self, frames: Tensor, noise_std: float) -> Tensor:
        """Reconstruction MSE from clean and from σ-noised latents (frames (B, T, 3, H, W) in [-1, 1])."""
        z = self.encode(frames)
        noisy = z + noise_std * torch.randn_like(z)
        return F.mse_loss(self.decode(z), frames) + F.mse_loss(self.decode(noisy), frames)


def make_codec(cfg: ModelConfig) -> PixelCodec | LatentCodec:
    return PixelCodec(cfg) if cfg.codec.kind == "pixels" else LatentCodec(cfg)
