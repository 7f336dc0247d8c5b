"""Short in-memory training loops: the latent codec on frames, and the flow on clips.

The resumable, distributed trainer (`worldsim train`) builds on the same objectives and optimiser pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .model.codec import LatentCodec
from .model.flow import FlowNet
from .objectives import Batch, flow_forward, nll_loss
from .optim import adamw, clipped_step, lr_at


def train_codec(net: FlowNet, frames: np.ndarray, steps: int, batch: int = 32, lr: float = 2e-3, seed: int = 0,
                progress: bool = False, log: Callable[[int, float], None] | None = None,
                stop: Callable[[], bool] | None = None) -> list[float]:
    """Train the latent codec (encoder + noise-robust decoder) on frames uint8 (M, H, W, 3); returns losses.

    The decoder sees latents with the flow's σ noise added, so it decodes the flow's noisy samples cleanly.
    stop: asked before every step; True ends the loop early (fewer losses than steps: the codec is unfinished).
    """
    codec = net.codec
    if not isinstance(codec, LatentCodec):  # the pixel codec has nothing to learn
        return []
    gen = np.random.default_rng(seed)
    torch.manual_seed(seed)
    params = list(codec.parameters())
    opt = adamw(params, lr, weight_decay=0.0)
    data = torch.from_numpy(frames)
    losses = []
    codec.train()
    for step in tqdm(range(steps), desc="codec", disable=not progress):
        if stop is not None and stop():
            break
        idx = torch.from_numpy(gen.integers(0, len(frames), batch))
        x = data[idx].to(net.device).permute(0, 3, 1, 2).float()[:, None] / 127.5 - 1.0
        loss = codec.loss(x, net.cfg.noise_std)
        clipped_step(opt, loss, params, lr_at(step, steps, lr, max(1, steps // 20)))
        losses.append(loss.item())
        if log is not None:
            log(step + 1, losses[-1])
    codec.eval()
    return losses


@torch.no_grad()
def codec_mse(net: FlowNet, frames: np.ndarray, noisy: bool = False, seed: int = 0) -> float:
    """Reconstruction MSE in [-1, 1] units of frames uint8 (M, H, W, 3), from clean or σ-noised latents."""
    x = torch.from_numpy(frames)[None]
    z = net.encode_frames(x)
    if noisy:
        z = z + net.cfg.noise_std * net.noise(z.shape, torch.Generator().manual_seed(seed))
    rec = net.decode_tokens(z).cpu()
    return float(((rec.float() - x.float()) / 127.5).pow(2).mean())


def fit_flow(net: FlowNet, clips: np.ndarray, actions: Sequence[Sequence[str]], steps: int, batch: int = 16,
             lr: float = 2e-3, seed: int = 0, prompts: Sequence[str | None] | None = None,
             progress: bool = False) -> list[float]:
    """Train the flow (codec frozen) on whole clips uint8 (n, T, H, W, 3) with n lists of T-1 actions.

    Returns the training bits/dim per step.
    """
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for name, p in net.named_parameters() if not name.startswith(("codec.", "denoiser."))]
    opt = adamw(params, lr)
    history = []
    net.train()
    for step in tqdm(range(steps), desc="flow", disable=not progress):
        idx = rng.integers(0, len(clips), batch)
        b = Batch(torch.from_numpy(clips[idx]), [list(actions[i]) for i in idx],
                  [prompts[i] for i in idx] if prompts is not None else [None] * batch)
        out, _ = flow_forward(net, b, gen)
        loss, bpd = nll_loss(out, net.dims_per_frame)
        clipped_step(opt, loss, params, lr_at(step, steps, lr, max(1, steps // 20)))
        history.append(float(bpd))
    net.eval()
    return history
