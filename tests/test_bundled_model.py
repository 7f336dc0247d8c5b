"""The shipped `pushworld-64`: it loads from the package, carries its eval, and has learned its world.

These are behaviour checks on the real bundled weights (a few seeded steps each), not quality metrics:
`worldsim eval` measures quality. Each check would fail for an untrained model.
"""

from __future__ import annotations

import numpy as np
import pytest

from worldsim import WorldModel
from worldsim.demo import bundled_models
from worldsim.envs.pushworld_eval import detect, held_out_clip, implausible_clip


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    return WorldModel.from_pretrained("pushworld-64")


def test_the_default_model_ships_with_its_eval(wm: WorldModel) -> None:
    assert "pushworld-64" in bundled_models()
    assert (wm.config.height, wm.config.width) == (64, 64) and wm.config.likelihood_space == "latents"
    assert wm.meta["eval"]["controllability"] >= 0.9


@pytest.mark.parametrize("action, axis, sign", [("move right", 0, 1), ("move left", 0, -1),
                                                ("move down", 1, 1), ("move up", 1, -1)])
def test_the_imagined_agent_moves_as_commanded(wm: WorldModel, action: str, axis: int, sign: int) -> None:
    clip = held_out_clip(64, seed=123, index=0, episodes=1, length=2)
    start = detect(clip.frames[-1])["agent"]
    with wm.session(seed=0) as s:
        s.reset(frames=clip.frames, actions=clip.actions)
        for _ in range(3):
            frame = s.step(action).frame
    end = detect(frame)["agent"]
    assert start is not None and end is not None, "the agent must stay visible"
    moved = sign * (end[axis] - start[axis])
    assert moved > 2.0, f"{action}: agent moved {end - start} px"


def test_an_implausible_edit_is_less_likely_than_the_real_clip(wm: WorldModel) -> None:
    clip = held_out_clip(64, seed=123, index=1, episodes=2, length=6)
    edited, info = implausible_clip("teleport", clip, k=3, rng=np.random.default_rng(0))
    real = wm.score(clip.frames, actions=clip.actions).log_prob
    fake = wm.score(edited, actions=clip.actions).log_prob
    np.testing.assert_allclose(real[:3], fake[:3], rtol=1e-5)  # identical past, identical scores (causal)
    assert fake[3] < real[3] - 100, (info, real, fake)
