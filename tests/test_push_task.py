"""PushWorld as a planning task: the shared objective, its real-world simulator and its detection-based twin."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.envs import PushWorld
from worldsim.envs.push_task import PushTask
from worldsim.session import StepResult

TASK = PushTask(64, glance_penalty=0.25, glance_zone="ring")
GOAL = (48.0, 20.0)


def placed(agent, block, goal=GOAL) -> PushWorld:
    env = PushWorld(render_mode="rgb_array", action_mode="text")
    env.reset(seed=0, options={"agent_pos": agent, "block_pos": block, "goal_pos": goal})
    return env


def test_push_spot_is_behind_the_block_on_the_larger_error_axis():
    np.testing.assert_allclose(TASK.push_spot((20.0, 20.0), (40.0, 25.0)), (11.0, 20.0))
    np.testing.assert_allclose(TASK.push_spot((20.0, 20.0), (22.0, 5.0)), (20.0, 29.0))
    np.testing.assert_allclose(TASK.push_spot((20.0, 20.0), (40.0, 25.0), axis=1), (20.0, 11.0))  # the smaller


def test_progress_prefers_the_block_on_the_goal_and_penalises_glancing_contact():
    on_goal = TASK.progress((30.0, 20.0), GOAL, GOAL)
    far = TASK.progress((11.0, 20.0), (20.0, 20.0), GOAL)
    assert on_goal > 0.9 > far  # the success bonus
    assert TASK.progress((11.0, 20.0), (20.0, 20.0), GOAL) > TASK.progress((20.0, 11.0), (20.0, 20.0), GOAL)
    glancing = PushTask(64, glance_penalty=0.0, glance_zone="ring").progress((20.0, 11.0), (20.0, 20.0), GOAL)
    assert glancing - TASK.progress((20.0, 11.0), (20.0, 20.0), GOAL) == 0.25
    assert TASK.progress((11.0, 20.0), None, GOAL) == -1.3  # a lost block counts as far


def test_push_from_behind_spares_a_square_push_closer_than_the_spot_and_nothing_else():
    behind = PushTask(64, glance_penalty=0.25, push_from="behind", glance_zone="ring")
    block = (20.0, 20.0)  # the goal is to the right: pushes come from the left
    lagging = (14.0, 21.0)  # in line behind the block, 6 px from it: where an imagined push leaves the agent
    assert TASK.progress(lagging, block, GOAL) == pytest.approx(behind.progress(lagging, block, GOAL) - 0.25)
    for agent in ((20.0, 11.0), (26.0, 20.0), (14.0, 25.0)):  # beside, on the goal side, 5 px off the line
        assert behind.progress(agent, block, GOAL) == TASK.progress(agent, block, GOAL)
    assert behind.progress((11.0, 20.0), block, GOAL) == TASK.progress((11.0, 20.0), block, GOAL)  # at the spot


def test_push_from_names_its_choices():
    with pytest.raises(ValueError, match="'spot' or 'behind' or 'either'; received 'side'"):
        PushTask(64, push_from="side")
    with pytest.raises(ValueError, match="glance_zone must be 'ring' or 'body'; received 'disk'"):
        PushTask(64, glance_zone="disk")


def test_body_zone_opens_the_walk_along_the_side_to_a_spot_against_the_wall_and_still_sees_contact():
    ring, body = PushTask(64, glance_penalty=2.0, glance_zone="ring"), PushTask(64, glance_penalty=2.0)
    block, goal = (43.6, 17.2), (40.1, 40.0)  # task 20000: push down, from a spot (43.6, 8.2) by the top wall
    np.testing.assert_allclose(ring.push_spot(block, goal), (43.6, 8.2))
    beside = (39.0, 7.5)  # on the way along the wall, 1.7 px clear of the block's top side
    assert ring.touching(beside, block) and not body.touching(beside, block)
    assert body.progress(beside, block, goal) == pytest.approx(ring.progress(beside, block, goal) + 2.0)
    env = placed(agent=beside, block=block, goal=goal)
    walked = env.step("move right")[4]  # on along the wall, towards the spot
    assert not walked["block_moved"] and not body.touching(walked["agent_pos"], block)  # no contact, rightly
    assert not body.touching((43.6, 8.2), block)  # the spot itself, a pixel clear of the block
    for agent in ((37.1, 10.7), (36.6, 20.2)):  # overlapping a corner, overlapping the left side
        assert body.touching(agent, block) and ring.touching(agent, block)
        assert body.progress(agent, block, goal) < body.progress(beside, block, goal) - 1.5  # penalised


def test_push_from_either_spares_a_push_along_the_smaller_error_axis_only_while_it_helps():
    spot, either = PushTask(64, glance_penalty=2.0), PushTask(64, glance_penalty=2.0, push_from="either")
    block = (30.0, 30.0)
    goal = (50.0, 48.0)  # errors 20 (x) and 18 (y): the push spot is left of the block, (21, 30)
    above = (30.0, 21.0)  # where a push down starts: it helps, but after one step x is the larger error again
    assert not spot.pushing(above, block, goal) and either.pushing(above, block, goal)
    assert either.pushing((21.0, 30.0), block, goal)  # the larger axis's own spot still counts
    assert not either.pushing(above, block, (50.0, 31.0))  # the block is already level with the goal in y
    assert not either.pushing((30.0, 39.0), block, goal)  # below the block, pushing it away from the goal


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
