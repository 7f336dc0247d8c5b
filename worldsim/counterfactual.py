"""Counterfactual replay: invert a recorded clip exactly to its noise, then replay that noise under other actions.

Abduction (the clip's z, from one parallel forward pass), intervention (new actions or prompt from step k on),
prediction (the same z inverted frame by frame). Frames before k are the clip's reconstruction; with unchanged
actions the whole clip comes back up to the Jacobi tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import InvalidAction
from .frames import check_action_count, check_frames
from .sampling import SamplerSettings, invert_deep, invert_local

if TYPE_CHECKING:
    from .world_model import WorldModel


@torch.no_grad()
def counterfactual(wm: WorldModel, clip: np.ndarray, actions: Sequence, new_actions: Sequence,
                   from_step: int, prompt: str | None = None, new_prompt: str | None = None,
                   tol: float = 1e-6) -> np.ndarray:
    """The clip as it would have gone under `new_actions` from step `from_step` on.

    Args:
        clip: uint8 (T, H, W, 3), the recorded frames.
        actions: the T-1 actions that were taken (actions[t] leads from frame t to frame t+1): phrases, or float
            arrays (d,) for a vector-action model.
        new_actions: T-1 actions to replay; those before from_step-1 are ignored (the past is fixed).
        from_step: k in [1, T-1]: frames k … T-1 are regenerated.
        prompt / new_prompt: the scene prompt of the recording and of the replay (default: the same).
    Returns:
        uint8 (T, H, W, 3): frames < k are the clip's reconstruction through the codec, frames ≥ k the replay.
    """
    cfg, net = wm.config, wm.net
    clip = check_frames(clip, cfg.height, cfg.width, "clip", ndim=(4,))
    t = clip.shape[0]
    checked = []
    for name, acts in (("actions", actions), ("new_actions", new_actions)):
        check_action_count(acts, t, name)
        checked.append(wm.action_spec.check_many(acts, strict=False, what=name))
    actions, new_actions = checked
    if not 1 <= from_step <= t - 1:
        raise InvalidAction(f"from_step={from_step} is out of range for a clip of {t} frames; expected 1 … {t - 1} "
                            "(frame 0 cannot be replayed: no action leads to it).")
    x = net.encode_frames(torch.from_numpy(np.ascontiguousarray(clip))[None])
    cond = net.frame_conditions(net.action_embeddings([list(actions)]), 1, t, 0)
    z = net(x, cond, net.new_state(net.prompt_embeddings([prompt]), frames_hint=t)).z  # abduction
    replay_prompt = prompt if new_prompt is None else new_prompt
    state = net.new_state(net.prompt_embeddings([replay_prompt]), frames_hint=t)
    net(x[:, :from_step], cond[:, :from_step], state)  # the fixed past, conditioned on the replay's prompt
    new_cond = net.frame_conditions(net.action_embeddings([list(new_actions)]), 1, t, 0)
    settings = SamplerSettings(method="jacobi", tol=tol)
    out = [x[0, i] for i in range(from_step)]
    for i in range(from_step, t):
        u = invert_deep(net, state, new_cond[:, i], z[:, i], settings)[0]
        out.append(invert_local(net, u, settings)[0][0])
    return net.decode_tokens(torch.stack(out)[None])[0].cpu().numpy()
