"""An inverse-dynamics probe: a small CNN that reads the action from (frame, next frame), for any world.

Trained on real transitions of a world, it measures how well imagined transitions carry their actions
(`worldsim eval`'s generic controllability): text actions are classified over the vocabulary (accuracy), vector
actions regressed in the spec's [-1, 1] normalisation (R², the mean over components).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .actions import ActionSpec
from .errors import InvalidAction, InvalidFrames

logger = logging.getLogger(__name__)

MAX_SIDE = 32  # larger frames are area-averaged down to this side first (motion of a few px stays visible)
WIDTH = 32  # channels of the first convolution (doubling with each stride-2 one, up to 128)
BATCH = 64
LR = 2e-3


class _Net(nn.Module):
    """(N, 9, H, W) = (before, after, after - before) in [-1, 1] → (N, outputs)."""

    def __init__(self, height: int, width: int, outputs: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(9, WIDTH, 3, stride=2, padding=1), nn.ReLU()]
        c, side = WIDTH, math.ceil(min(height, width) / 2)
        while side > 4:
            nxt = min(2 * c, 128)
            layers += [nn.Conv2d(c, nxt, 3, stride=2, padding=1), nn.ReLU()]
            c, side = nxt, math.ceil(side / 2)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(16 * c, 128), nn.ReLU(), nn.Linear(128, outputs))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _init(net: nn.Module, gen: torch.Generator) -> None:
    """PyTorch's default init, drawn from `gen` (no global seeding)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            bound = 1 / math.sqrt(m.weight[0].numel())
            if m.bias is not None:
                nn.init.uniform_(m.bias, -bound, bound, generator=gen)


def _check_pairs(before: Any, after: Any) -> None:
    for name, x in (("frames_before", before), ("frames_after", after)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise InvalidFrames(f"{name}: expected uint8 frames (N, H, W, 3); received {got}.")
    if before.shape != after.shape:
        raise InvalidFrames(f"frames_before {before.shape} and frames_after {after.shape} must have the same shape "
                            "(one pair per transition).")


def _inputs(before: np.ndarray, after: np.ndarray, side: tuple[int, int]) -> Tensor:
    """uint8 (N, H, W, 3) pairs → float (N, 9, h, w) at the probe's working size."""
    x = torch.from_numpy(np.concatenate([before, after], -1)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if tuple(x.shape[-2:]) != side:
        x = F.interpolate(x, size=side, mode="area")
    return torch.cat([x, x[:, 3:] - x[:, :3]], 1)


def working_size(height: int, width: int) -> tuple[int, int]:
    """The (h, w) the probe sees: the frame size, scaled down so that the longer side is at most 32."""
    scale = min(1.0, MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class InverseDynamicsProbe:
    """Predicts the action of a transition (frame t, frame t+1). Build one with `InverseDynamicsProbe.fit`."""

    def __init__(self, net: nn.Module, spec: ActionSpec, frame_shape: tuple[int, int]):
        self.net = net.eval()
        self.spec = spec
        self.frame_shape = frame_shape

    # ----- targets --------------------------------------------------------------------------------------------
    def _targets(self, actions: Sequence[Any] | np.ndarray, n: int) -> Tensor:
        """Class indices (n,) for text actions; normalised components (n, d) for vector actions."""
        if len(actions) != n:
            raise InvalidAction(f"received {len(actions)} actions for {n} transitions; expected one per transition.")
        if self.spec.is_vector:
            rows = np.stack([self.spec.check_vector(a, f"actions[{i}]")[0] for i, a in enumerate(actions)]) \
                if n else np.zeros((0, self.spec.dim), np.float32)
            return torch.from_numpy(self.spec.normalise(rows))
        vocab = self.spec.vocabulary
        return torch.tensor([vocab.index(self.spec.check_text(a, strict=True, what=f"actions[{i}]"))
                             for i, a in enumerate(actions)], dtype=torch.long)

    # ----- training -------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, frames_before: np.ndarray, frames_after: np.ndarray, actions: Sequence[Any] | np.ndarray,
            spec: ActionSpec, steps: int = 400, seed: int = 0, batch: int = BATCH) -> InverseDynamicsProbe:
        """Train a probe on real transitions (CPU, seeded: same data and seed → same probe).

        Args:
            frames_before, frames_after: uint8 (N, H, W, 3), frame t and frame t+1 of N transitions.
            actions: the N actions between them: phrases of `spec.vocabulary` (text) or (d,) vectors / an (N, d)
                array within the spec's bounds (vector).
            spec: the action spec (a model's `action_spec`).
            steps: Adam steps of `batch` transitions drawn with replacement.
            seed: seeds the initial weights and the batches.

        Returns:
            The trained probe (classification over the vocabulary for text, regression of the normalised
            components for vectors).
        """
        _check_pairs(frames_before, frames_after)
        n, h, w = frames_before.shape[:3]
        if n < 2:
            raise InvalidFrames(f"the probe needs at least 2 transitions to train on; received {n}.")
        if steps < 1 or batch < 1:
            raise ValueError(f"steps and batch must be >= 1; received steps={steps}, batch={batch}.")
        side = working_size(h, w)
        outputs = spec.dim if spec.is_vector else len(spec.vocabulary)
        gen = torch.Generator().manual_seed(seed)
        net = _Net(*side, outputs)
        _init(net, gen)
        probe = cls(net, spec, (h, w))
        y = probe._targets(actions, n)
        x = _inputs(frames_before, frames_after, side)  # the whole set: a few thousand small frames
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
        net.train()
        for _ in range(steps):
            idx = torch.randint(0, n, (batch,), generator=gen)
            out = net(x[idx])
            loss = F.mse_loss(out, y[idx]) if spec.is_vector else F.cross_entropy(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        logger.info("inverse-dynamics probe: %d transitions, %d steps, final batch loss %.4f", n, steps, loss.item())
        return probe

    # ----- use ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _outputs(self, before: np.ndarray, after: np.ndarray) -> Tensor:
        _check_pairs(before, after)
        if tuple(before.shape[1:3]) != self.frame_shape:
            raise InvalidFrames(f"this probe reads {self.frame_shape[0]}×{self.frame_shape[1]} frames; received "
                                f"{before.shape[1]}×{before.shape[2]}.")
        side = working_size(*self.frame_shape)
        outs = [self.net(_inputs(before[a:a + 256], after[a:a + 256], side)) for a in range(0, len(before), 256)]
        return torch.cat(outs) if outs else torch.zeros(0, self.spec.dim or len(self.spec.vocabulary))

    def predict(self, frames_before: np.ndarray, frames_after: np.ndarray) -> list[str] | np.ndarray:
        """The action of each transition: phrases (text), or (N, d) float32 vectors in the spec's bounds."""
        out = self._outputs(frames_before, frames_after)
        if self.spec.is_vector:
            return self.spec.denormalise(out.clamp(-1, 1).numpy())
        return [self.spec.vocabulary[i] for i in out.argmax(1).tolist()]

    def score(self, frames_before: np.ndarray, frames_after: np.ndarray,
              actions: Sequence[Any] | np.ndarray) -> float:
        """Accuracy (text) or mean R² over action components (vector; in the normalised scale, components whose
        actions do not vary in this set are left out) of the predictions against `actions`; NaN with no data."""
        out = self._outputs(frames_before, frames_after)
        y = self._targets(actions, len(out))
        if len(y) == 0:
            return float("nan")
        if not self.spec.is_vector:
            return float((out.argmax(1) == y).double().mean())
        pred, y = out.clamp(-1, 1).double(), y.double()
        total = ((y - y.mean(0)) ** 2).sum(0)
        varied = total > 1e-12
        if not varied.any():
            return float("nan")
        r2 = 1 - ((y - pred) ** 2).sum(0)[varied] / total[varied]
        return float(r2.mean())
