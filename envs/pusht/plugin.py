"""PushT as a worldsim world plug-in: gym-pusht's env, data policies, pose detector and planning goals in one entry.

Importing this module needs no gym-pusht: the world is always registered, and making its env says how to install the
extra when it is missing.
"""

from __future__ import annotations

from worldsim.worlds import World, register

from .detector import detect_pose
from .env import ENV_ID, make_env
from .goals import PushTGoals
from .policies import POLICIES

WORLD = register(World(
    name="pusht",
    env_id=ENV_ID,
    make_env=make_env,
    policies=POLICIES,
    default_policy="pusht",
    detector=detect_pose,
    goals=PushTGoals(),
))
