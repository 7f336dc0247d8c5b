"""PushWorld as a planning task: the shared objective, its real-world simulator and its detection-based twin."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.envs import PushWorld
from worldsim.envs.push_task import PushTask
from worldsim.session import StepResult

TASK = PushTask(64, glance_penalty=0.25)
GOAL = (48.0, 20.0)


def placed(agent, block, goal=GOAL) -> PushWorld:
    env = PushWorld(render_mode="rgb_array", action_mode="text")
    env.reset(seed=0, options={"agent_pos": agent, "block_pos": block, "goal_pos": goal})
    return env


def test_push_spot_is_behind_the_block_on_the_larger_error_axis():
    np.testing.assert_allclose(TASK.push_spot((20.0, 20.0), (40.0, 25.0)), (11.0, 20.0))
    np.testing.assert_allclose(TASK.push_spot((20.0, 20.0), (22.0, 5.0)), (20.0, 29.0))


def test_progress_prefers_the_block_on_the_goal_and_penalises_glancing_contact():
    on_goal = TASK.progress((30.0, 20.0), GOAL, GOAL)
    far = TASK.progress((11.0, 20.0), (20.0, 20.0), GOAL)
    assert on_goal > 0.9 > far  # the success bonus
    assert TASK.progress((11.0, 20.0), (20.0, 20.0), GOAL) > TASK.progress((20.0, 11.0), (20.0, 20.0), GOAL)
    glancing = PushTask(64, glance_penalty=0.0).progress((20.0, 11.0), (20.0, 20.0), GOAL)
    assert glancing - TASK.progress((20.0, 11.0), (20.0, 20.0), GOAL) == 0.25
    assert TASK.progress((11.0, 20.0), None, GOAL) == -1.3  # a lost block counts as far


def test_push_from_behind_spares_a_square_push_closer_than_the_spot_and_nothing_else():
    behind = PushTask(64, glance_penalty=0.25, push_from="behind")
    block = (20.0, 20.0)  # the goal is to the right: pushes come from the left
    lagging = (14.0, 21.0)  # in line behind the block, 6 px from it: where an imagined push leaves the agent
    assert TASK.progress(lagging, block, GOAL) == pytest.approx(behind.progress(lagging, block, GOAL) - 0.25)
    for agent in ((20.0, 11.0), (26.0, 20.0), (14.0, 25.0)):  # beside, on the goal side, 5 px off the line
        assert behind.progress(agent, block, GOAL) == TASK.progress(agent, block, GOAL)
    assert behind.progress((11.0, 20.0), block, GOAL) == TASK.progress((11.0, 20.0), block, GOAL)  # at the spot


def test_push_from_names_its_choices():
    with pytest.raises(ValueError, match="'spot' or 'behind'; received 'side'"):
        PushTask(64, push_from="side")


def test_real_simulator_scores_pushing_above_walking_away_and_leaves_the_env_alone():
    env = placed(agent=(11.0, 20.0), block=(20.0, 20.0))
    before = env.positions()
    scores = TASK.real_simulator(env)([["move right"] * 4, ["move left"] * 4])
    assert scores[0] > scores[1]
    assert env.positions() == before


def test_imagined_objective_scores_detected_objects_and_keeps_the_last_place_of_a_lost_one():
    env = placed(agent=(11.0, 20.0), block=(20.0, 20.0))
    seen = {"agent_pos": (11.0, 20.0), "block_pos": (20.0, 20.0)}
    pushed, _, _, _, info = env.step("move right")
    blank = np.zeros_like(pushed)  # nothing detectable: both objects keep their last known place
    out = StepResult(frame=np.stack([pushed, blank]), log_prob=np.zeros(2), bits_per_dim=np.zeros(2),
                     reward=np.zeros(2), terminated=np.zeros(2, bool))
    scores = TASK.imagined_objective(GOAL, seen)(out, 0)
    expected = TASK.progress(info["agent_pos"], info["block_pos"], GOAL)
    assert abs(scores[0] - expected) < 0.02  # detected centroids are within a pixel of the truth
    assert scores[1] == TASK.progress(seen["agent_pos"], seen["block_pos"], GOAL)
