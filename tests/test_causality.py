"""Strict causality: the future (frames, actions) never changes anything about the past."""

from __future__ import annotations

import numpy as np
import torch

ACTS = ["move left", "move up", "stay", "move right", "move down"]


def clip(seed: int = 0, t: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)


def flow_terms(wm, frames, actions):
    net = wm.net
    x = net.encode_frames(torch.from_numpy(frames)[None])
    cond = net.frame_conditions(net.action_embeddings([actions]), 1, len(frames), 0)
    with torch.no_grad():
        out = net(x, cond, net.new_state(net.prompt_embeddings(["room"])))
    return out.log_prob[0].numpy(), out.z[0].numpy(), out.u[0].numpy()


def test_changing_frame_t_changes_only_frames_from_t_on(tiny):
    frames, actions = clip(), ACTS
    base = flow_terms(tiny, frames, actions)
    for t in (1, 3, 5):
        changed = frames.copy()
        changed[t] = 255 - changed[t]
        new = flow_terms(tiny, changed, actions)
        for a, b in zip(base, new, strict=True):  # log-likelihood, z, u
            np.testing.assert_array_equal(a[:t], b[:t])
            assert np.abs(a[t] - b[t]).max() > 1e-3


def test_changing_action_t_changes_only_frames_after_t(tiny):
    frames = clip()
    base = flow_terms(tiny, frames, ACTS)
    for t in (0, 2, 4):  # action t leads from frame t to frame t+1
        actions = list(ACTS)
        actions[t] = "move down" if actions[t] != "move down" else "move up"
        new = flow_terms(tiny, frames, actions)
        for a, b in zip(base, new, strict=True):
            np.testing.assert_array_equal(a[: t + 1], b[: t + 1])
        assert abs(base[0][t + 1] - new[0][t + 1]) > 1e-3  # frame t+1's likelihood depends on it


def rollout(wm, actions, seed=0):
    with wm.session(seed=seed) as s:
        s.reset(frames=clip(1, 2), actions=["stay"])
        return [s.step(a).frame for a in actions]


def test_sampled_frames_never_depend_on_later_actions(tiny):
    base = rollout(tiny, ACTS)
    actions = list(ACTS)
    actions[2] = "move down"  # changes frame index 2 of the rollout onward
    new = rollout(tiny, actions)
    for i in range(2):
        np.testing.assert_array_equal(base[i], new[i])
    assert not np.array_equal(base[2], new[2])


def test_sliding_window_keeps_causality_over_long_clips(tiny):
    frames = clip(2, t=3 * tiny.config.deep.window)
    actions = [ACTS[i % 5] for i in range(len(frames) - 1)]
    base = flow_terms(tiny, frames, actions)
    changed = frames.copy()
    changed[-2] = 0
    new = flow_terms(tiny, changed, actions)
    np.testing.assert_array_equal(base[0][:-2], new[0][:-2])


def test_whole_clip_attention_split_by_window_matches_frame_by_frame(tiny):
    """Long clips attend in windowed chunks (`band_blocks`): exact, so the same as adding one frame at a time."""
    from worldsim.model.deep import band_blocks, band_mask

    net, t = tiny.net, 3 * tiny.config.deep.window
    frames = clip(3, t=t)
    actions = [ACTS[i % 5] for i in range(t - 1)]
    whole = flow_terms(tiny, frames, actions)
    x = net.encode_frames(torch.from_numpy(frames)[None])
    cond = net.frame_conditions(net.action_embeddings([actions]), 1, t, 0)
    state = net.new_state(net.prompt_embeddings(["room"]))
    with torch.no_grad():
        steps = [net(x[:, i : i + 1], cond[:, i : i + 1], state) for i in range(t)]
    np.testing.assert_allclose(whole[0], np.concatenate([s.log_prob[0].numpy() for s in steps]), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(whole[1], np.concatenate([s.z[0].numpy() for s in steps]), atol=1e-4)
    # and the split really happened: each chunk of queries sees fewer keys than the whole clip has
    n = tiny.config.tokens_per_frame + 1
    frame = torch.arange(t * n) // n
    seq = torch.arange(t * n)
    mask = band_mask(frame, seq, frame, seq, tiny.config.deep.window)
    blocks = band_blocks(mask, frame, tiny.config.deep.window, n)
    assert blocks is not None and len(blocks) == 3
    assert all(keys.numel() < t * n for _, keys, _ in blocks[1:])
    assert all(torch.equal(m, mask[rows][:, keys]) and bool(m.any(1).all()) for rows, keys, m in blocks)
