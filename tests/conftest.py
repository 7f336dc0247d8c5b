"""Shared fixtures: real tiny models (random non-identity weights) and a synthetic moving-square world."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldsim import WorldModel

ACTIONS = ("move up", "move down", "move left", "move right", "stay")
MOVES = {"move up": (-1, 0), "move down": (1, 0), "move left": (0, -1), "move right": (0, 1), "stay": (0, 0)}


def randomize(wm: WorldModel, scale: float = 0.05, seed: int = 0) -> WorldModel:
    """Perturb every weight (zero-initialised heads included) so no block is the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in wm.net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return wm


@pytest.fixture(scope="session")
def tiny() -> WorldModel:
    return randomize(WorldModel.from_config("tiny", seed=0))


@pytest.fixture(scope="session")
def tiny_latent() -> WorldModel:
    return randomize(WorldModel.from_config("tiny-latent", seed=0))


def moving_squares(n: int, frames: int, size: int = 16, seed: int = 0, side: int = 4):
    """n clips of a coloured square moved by random actions (stops at the border).

    Returns uint8 (n, frames, size, size, 3) and n lists of frames-1 action texts.
    """
    rng = np.random.default_rng(seed)
    clips = np.zeros((n, frames, size, size, 3), np.uint8)
    actions = []
    for i in range(n):
        r, c = rng.integers(0, size - side + 1, 2)
        colour = rng.integers(120, 256, 3)
        row = []
        for t in range(frames):
            clips[i, t, size - 2 :, :] = 60  # a static wall along the bottom
            clips[i, t, r : r + side, c : c + side] = colour
            if t < frames - 1:
                a = ACTIONS[rng.integers(0, 5)]
                dr, dc = MOVES[a]
                r = int(np.clip(r + 2 * dr, 0, size - side))
                c = int(np.clip(c + 2 * dc, 0, size - side))
                row.append(a)
        actions.append(row)
    return clips, actions


@pytest.fixture(scope="session")
def squares():
    return moving_squares(6, 6, seed=1)


def noisy_heads(wm, seed: int = 0):
    """`wm` with its zero-initialised layers (the affine heads) filled with small noise, so an untrained model is far
    from the identity and its actions change what it predicts; returns the model."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in wm.net.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return wm
