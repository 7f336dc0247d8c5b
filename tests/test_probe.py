"""The inverse-dynamics probe learns a toy world where the action moves a dot (text and vector actions)."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.actions import ActionSpec
from worldsim.errors import InvalidAction, InvalidFrames
from worldsim.probe import InverseDynamicsProbe, working_size

WORDS = ("move up", "move down", "move left", "move right", "stay")
STEP = {"move up": (0, -2), "move down": (0, 2), "move left": (-2, 0), "move right": (2, 0), "stay": (0, 0)}
SIZE = 16
VECTOR = ActionSpec.vector([-1.0, -1.0], [1.0, 1.0])


def _draw(xy: np.ndarray) -> np.ndarray:
    """A soft white dot (σ 1.2 px) centred at float (x, y) on a dark 16×16 floor: sub-pixel moves show."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    blob = np.exp(-((xx - xy[0]) ** 2 + (yy - xy[1]) ** 2) / (2 * 1.2**2))
    frame = 30 + 220 * blob[..., None] * np.array([1.0, 0.9, 0.6])
    return frame.round().astype(np.uint8)


def dot_world(n: int, seed: int, vector: bool) -> tuple[np.ndarray, np.ndarray, list | np.ndarray]:
    """n transitions: a dot at a random place, moved by the action (a word: 2 px; a vector a: 3·a px)."""
    rng = np.random.default_rng(seed)
    before, after, actions = [], [], []
    for _ in range(n):
        xy = rng.uniform(4, SIZE - 5, 2)
        if vector:
            a = rng.uniform(-1, 1, 2).astype(np.float32)
            move = 3 * a
        else:
            a = WORDS[rng.integers(len(WORDS))]
            move = np.array(STEP[a], float)
        before.append(_draw(xy))
        after.append(_draw(xy + move))
        actions.append(a)
    return np.stack(before), np.stack(after), np.stack(actions) if vector else actions


@pytest.fixture(scope="module")
def text_probe():
    b, a, acts = dot_world(600, 0, vector=False)
    return InverseDynamicsProbe.fit(b, a, acts, ActionSpec.text(WORDS), steps=150, seed=0)


def test_probe_reads_text_actions_well_above_chance(text_probe):
    b, a, acts = dot_world(200, 1, vector=False)
    accuracy = text_probe.score(b, a, acts)
    assert accuracy > 0.9  # chance: 0.2
    assert text_probe.predict(b[:3], a[:3]) == acts[:3]
    shuffled = text_probe.score(b, a, list(np.random.default_rng(2).permutation(np.array(acts, object))))
    assert shuffled < 0.5  # the wrong actions for these transitions


def test_probe_reads_vector_actions_with_high_r2():
    b, a, acts = dot_world(600, 0, vector=True)
    probe = InverseDynamicsProbe.fit(b, a, acts, VECTOR, steps=150, seed=0)
    tb, ta, tacts = dot_world(200, 1, vector=True)
    assert probe.score(tb, ta, tacts) > 0.8  # chance (a constant prediction): 0
    pred = probe.predict(tb, ta)
    assert pred.shape == (200, 2) and pred.dtype == np.float32 and (np.abs(pred) <= 1).all()
    assert np.isnan(probe.score(tb, ta, np.zeros_like(tacts)))  # actions that do not vary: R² undefined


def test_probe_is_deterministic_for_a_seed():
    b, a, acts = dot_world(64, 3, vector=False)
    spec = ActionSpec.text(WORDS)
    p1, p2 = (InverseDynamicsProbe.fit(b, a, acts, spec, steps=5, seed=7) for _ in range(2))
    p3 = InverseDynamicsProbe.fit(b, a, acts, spec, steps=5, seed=8)
    out = [p._outputs(b, a).numpy() for p in (p1, p2, p3)]
    assert np.array_equal(out[0], out[1]) and not np.array_equal(out[0], out[2])


def test_probe_working_size_caps_the_longer_side_at_32():
    assert working_size(16, 16) == (16, 16) and working_size(64, 64) == (32, 32) and working_size(96, 48) == (32, 16)


def test_probe_errors_name_what_was_received(text_probe):
    b, a, acts = dot_world(8, 4, vector=False)
    with pytest.raises(InvalidAction, match="received 7 actions for 8 transitions"):
        text_probe.score(b, a, acts[:7])
    with pytest.raises(InvalidAction, match="unknown action 'jump'"):
        text_probe.score(b, a, ["jump"] * 8)
    with pytest.raises(InvalidFrames, match=r"must have the same shape"):
        text_probe.score(b, a[:4], acts)
    with pytest.raises(InvalidFrames, match="reads 16×16 frames; received 8×8"):
        text_probe.score(b[:, :8, :8], a[:, :8, :8], acts)
    with pytest.raises(InvalidAction, match=r"component 0 is 2, outside its bounds \[-1, 1\]"):
        InverseDynamicsProbe.fit(b, a, np.full((8, 2), 2.0), VECTOR, steps=1)
