"""`Judge`: the calibrated verdict on every frame a session shows, as `WorldModel.score` gives it for the session's
history, kept up to date one frame at a time (one causal pass per frame on its own KV cache)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from worldsim.model.flow import LN2
from worldsim.plausibility import Calibration, judge
from worldsim.world_model import WorldModel


class Judge:
    """Scores frames as real frames are scored (clean tokens, given the frames and actions before them), so that
    an imagined frame is placed among real frames' bits/dim: the model's own sampled likelihood (`step`'s
    `log_prob`) is not comparable with them (samples are likelier than real frames).

    Args:
        model: a calibrated world model.
        prompt: the session's scene prompt (None: none).
    """

    def __init__(self, model: WorldModel, calibration: Calibration, prompt: str | None = None) -> None:
        self.model, self.calibration, self.prompt = model, calibration, prompt
        net = model.net
        self.state = net.new_state(net.prompt_embeddings([prompt]), frames_hint=model.config.deep.window)
        self.frames = 0

    @torch.no_grad()
    def add(self, frames: np.ndarray, actions: Sequence[Any]) -> list[dict[str, Any]]:
        """Score the next frames, uint8 (T, H, W, 3), reached by `actions` (T of them: the action before each frame;
        None for none or for frame 0); returns one verdict per frame."""
        net, w = self.model.net, self.model.config.deep.window
        x = net.encode_frames(torch.from_numpy(np.ascontiguousarray(frames))[None])
        first = 1 if self.frames == 0 else 0  # frame 0 takes the learned start embedding, not an action
        acts = [list(actions[first:])] if len(frames) > first else None
        cond = net.frame_conditions(None if acts is None else net.action_embeddings(acts), 1, len(frames),
                                    self.frames)
        lp = torch.cat([net(x[:, a : a + w], cond[:, a : a + w], self.state).log_prob[0]
                        for a in range(0, len(frames), w)]).cpu().numpy()
        out = []
        for i, bpd in enumerate(-lp / (net.dims_per_frame * LN2)):
            t, with_actions = self.frames + i, actions[i] is not None
            v = judge(np.full(2, bpd), self.calibration, with_actions)  # [0]: a first frame, [1]: a later one
            k = 0 if t == 0 else 1
            out.append({"bits_per_dim": float(bpd), "percentile": float(v.percentile[k]),
                        "z_score": float(v.z_score[k]), "implausible": bool(v.implausible[k]),
                        "threshold_bits_per_dim": float(v.threshold_bits_per_dim[k]),
                        "threshold_percentile": float(v.threshold_percentile), "with_actions": with_actions})
        self.frames += len(frames)
        return out

    def clone(self) -> Judge:
        copy = Judge.__new__(Judge)
        copy.__dict__.update(self.__dict__)
        copy.state = self.state.clone()
        return copy


def history_actions(session_actions: Sequence[Sequence[Any]], frames: int) -> list[Any]:
    """The action before each of a session's `frames` frames (None before frame 0), from `Session.actions`."""
    return [None] + [a[0] for a in session_actions[: frames - 1]]
