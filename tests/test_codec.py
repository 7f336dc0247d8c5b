"""Codecs: pixel patches are exact; the latent autoencoder reconstructs and decodes noisy latents cleanly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import moving_squares

from worldsim import WorldModel
from worldsim.fit import train_codec


def test_pixel_codec_round_trips_exactly(tiny):
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8))
    tokens = tiny.net.encode_frames(frames)
    assert tokens.shape == (2, 3, tiny.config.tokens_per_frame, tiny.config.token_dim)
    assert torch.equal(tiny.net.decode_tokens(tokens), frames)


@pytest.fixture(scope="module")
def trained_latent():
    clips, _ = moving_squares(40, 6, seed=5)
    wm = WorldModel.from_config("tiny-latent", seed=0)
    train_codec(wm.net, clips.reshape(-1, 16, 16, 3), steps=900, batch=32, lr=3e-3, seed=0)
    return wm


def held_out():
    clips, _ = moving_squares(8, 4, seed=123)
    return torch.from_numpy(clips)


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.float() - b.float()) / 127.5).pow(2).mean())


def test_latent_codec_reconstructs_held_out_frames(trained_latent):
    net, frames = trained_latent.net, held_out()
    with torch.no_grad():
        rec = net.decode_tokens(net.encode_frames(frames))
    assert mse(rec, frames) <= 0.005


def test_latent_codec_decodes_noisy_latents_without_speckle(trained_latent):
    net, frames = trained_latent.net, held_out()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = net.encode_frames(frames)
        noisy = net.decode_tokens(z + net.cfg.noise_std * torch.randn(z.shape, generator=gen))
    assert mse(noisy, frames) <= 0.01
    # speckle = high-frequency error: the noisy decode's pixel-to-pixel jitter stays near the clean frames'
    jitter = lambda x: float((x[..., 1:, :].float() - x[..., :-1, :].float()).abs().mean())
    assert jitter(noisy) <= 1.25 * jitter(frames) + 1.0


def test_latents_are_unit_scale(trained_latent):
    with torch.no_grad():
        z = trained_latent.net.encode_frames(held_out())
    assert z.pow(2).mean(-1).sub(1).abs().max() < 1e-3
