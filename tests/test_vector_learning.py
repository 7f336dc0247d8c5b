"""A vector-action model learns to use its actions: a square moved by a 2-d velocity, trained for CI-size steps.

Controllability is the generic one of `worldsim eval`: an inverse-dynamics probe trained on real transitions reads
the action back from imagined ones (R² over the components, over its R² on real transitions). The action-blind
baseline is the same model trained on the same frames with the actions shuffled between clips, so that they say
nothing about the motion. After this little training neither draws frames as clean as real ones (the probe's R² on
them is below zero), so the test compares the two models, and checks the likelihood, which learns first.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MOVES, moving_squares

import worldsim
from worldsim import ActionSpec, WorldModel
from worldsim.fit import fit_flow
from worldsim.probe import InverseDynamicsProbe

SPEC = {"kind": "vector", "dim": 2, "low": [-1.0, -1.0], "high": [1.0, 1.0]}


def squares(n: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clips of a square moved 2 px per step, with the moves as (dx, dy) vectors (n, frames-1, 2)."""
    clips, phrases = moving_squares(n, frames, seed=seed)
    return clips, np.array([[MOVES[a][::-1] for a in row] for row in phrases], np.float32)


def bits(wm: WorldModel, clips: np.ndarray, actions: np.ndarray) -> float:
    """Mean bits/dim of the clips' second frames under these actions."""
    return float(wm.score(clips, actions=[[row[0]] for row in actions]).bits_per_dim[:, 1].mean())


@pytest.mark.slow
def test_a_vector_model_learns_to_use_its_actions():
    clips, actions = squares(96, 6, seed=0)
    probe_clips, probe_actions = squares(300, 2, seed=1)
    test_clips, test_actions = squares(96, 2, seed=2)
    probe = InverseDynamicsProbe.fit(probe_clips[:, 0], probe_clips[:, 1], probe_actions[:, 0], ActionSpec(**SPEC),
                                     steps=300, seed=0)
    real = probe.score(test_clips[:, 0], test_clips[:, 1], test_actions[:, 0])
    assert real > 0.7, real  # the probe reads the motion of real transitions

    control, gap = {}, {}
    shuffle = np.random.default_rng(3).permutation
    for name, acts in (("actions", actions), ("blind", actions[shuffle(len(actions))])):
        wm = WorldModel.from_config(worldsim.preset("tiny").merged(action_spec=SPEC), seed=0)
        fit_flow(wm.net, clips, [list(a) for a in acts], steps=600, batch=16, lr=3e-3, seed=0)
        with wm.session(seed=0, batch_size=len(test_clips), temperature=0.05) as s:
            s.reset(frames=test_clips[:, :1])
            imagined = s.step(test_actions[:, 0]).frame
        control[name] = probe.score(test_clips[:, 0], imagined, test_actions[:, 0]) / real
        gap[name] = bits(wm, test_clips, test_actions[shuffle(len(test_actions))]) - bits(wm, test_clips, test_actions)
    assert control["actions"] > control["blind"] + 0.15, control
    assert gap["actions"] > 0.05 and abs(gap["blind"]) < gap["actions"] / 2, gap  # the true actions explain frames
