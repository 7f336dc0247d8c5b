"""The world registry: PushWorld's plug-in, lookups by name and env id, and a world registered here driving
`worldsim record --policy`."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from worldsim import worlds
from worldsim.cli import main
from worldsim.dataset import Dataset
from worldsim.envs.pushworld import PushWorld, detect_objects
from worldsim.envs.pushworld_policies import PushWorldPolicy
from worldsim.errors import WorldSimError
from worldsim.record import make_policy, world_of


def test_pushworld_is_found_by_name_and_env_id_without_importing_the_envs_first():
    code = ("import sys\n"
            "import worldsim.record, worldsim.dataset, worldsim.video, worldsim.demo\n"
            "assert 'worldsim.envs' not in sys.modules, 'a core module imported the worlds'\n"
            "from worldsim.worlds import get\n"
            "w = get('worldsim/PushWorld-v0')\n"  # through the entry point alone
            "assert w is get('pushworld')\n"
            "env = w.make_env(size=32, action_mode='text')\n"
            "frame, _ = env.reset(seed=0)\n"
            "print(w.name, sorted(w.policies), w.default_policy, frame.shape, env.action_space)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(" ", 5)[:5] == ["pushworld", "['pushworld',", "'pushworld-contacts',",
                                             "'pushworld-walls']", "pushworld"]
    assert "(32, 32, 3)" in proc.stdout and "PhraseSpace" in proc.stdout


def test_pushworld_entry_holds_its_policies_detector_and_env():
    world = worlds.get("pushworld")
    assert world.env_id == "worldsim/PushWorld-v0" and world.detector is detect_objects
    assert isinstance(world.policies["pushworld"](), PushWorldPolicy)
    env = world.make_env()
    frame, info = env.reset(seed=2)
    found = world.detector(frame)
    assert np.abs(np.subtract(found["block_pos"], info["block_pos"])).max() <= 1.0
    with pytest.raises(WorldSimError, match="no vector actions"):
        world.make_env(action_mode="vector")
    assert world_of(PushWorld(render_mode="rgb_array")) is world  # made directly: found by its class
    assert make_policy(None, env)[1] == "pushworld"


def test_unknown_world_names_the_known_ones_and_suggests():
    with pytest.raises(worlds.UnknownWorld, match=r"no world is registered as 'pushwrld'.*Did you mean 'pushworld'\?"):
        worlds.get("pushwrld")
    assert worlds.find("nothing-like-it") is None


class Counter(gym.Env):
    """A tiny real env: a counter shown as a grey level, Discrete(2) actions 'add' and 'hold'."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    vocabulary = ("hold", "add")

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.spaces.Discrete(256)
        self.count = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return self.count, {}

    def step(self, action):
        self.count = min(self.count + int(action), 255)
        return self.count, 0.0, False, False, {}

    def render(self):
        return np.full((4, 4, 3), self.count, np.uint8)


def always_add(env, obs, info, rng):
    return 1


@pytest.fixture
def counter_world():
    env_id = "worldsim-test/Counter-v0"
    if env_id not in gym.envs.registry:
        gym.register(env_id, entry_point=Counter, max_episode_steps=6)
    world = worlds.register(worlds.World(name="counter", env_id=env_id, policies={"always-add": lambda: always_add},
                                         default_policy="always-add"))
    yield world
    worlds._WORLDS.pop("counter", None)  # the registry is process-wide: leave it as it was


def test_a_world_registered_here_drives_record_policy(counter_world, tmp_path, capsys):
    out = tmp_path / "named"
    assert main(["record", "--env", counter_world.env_id, "--episodes", "2", "--policy", "always-add",
                 "--out", str(out)]) == 0
    ds = Dataset(out)
    assert ds.manifest["source"]["policy"] == "always-add" and ds.vocabulary == ["hold", "add"]
    assert all(ep.actions == ["add"] * 6 and ep.frames[-1, 0, 0, 0] == 6 for ep in ds)
    assert main(["record", "--env", counter_world.env_id, "--episodes", "1", "--out", str(tmp_path / "default")]) == 0
    assert Dataset(tmp_path / "default").manifest["source"]["policy"] == "always-add"  # the world's default
    assert main(["record", "--env", counter_world.env_id, "--episodes", "1", "--policy", "random",
                 "--out", str(tmp_path / "random")]) == 0
    capsys.readouterr()
    assert main(["record", "--env", counter_world.env_id, "--episodes", "1", "--policy", "always-ad",
                 "--out", str(tmp_path / "typo")]) == 1
    err = capsys.readouterr().err
    assert "unknown policy 'always-ad' for worldsim-test/Counter-v0. Did you mean 'always-add'?" in err
    assert "['always-add', 'random']" in err


CORE = ("config", "actions", "settings", "precision", "model.flow", "sampling", "session", "world_model",
        "counterfactual", "planning", "planning_box", "dataset", "record", "video", "train", "evaluate",
        "eval_generic", "probe", "image_metrics", "plausibility", "scoring", "worlds", "importers")


def test_imports_run_one_way_the_core_imports_no_world_and_no_bridge():
    """config ← model ← sampling ← session ← {envs, planning, bridges} ← cli: below the command line (and the
    apps at its level: bench, play), no module imports worldsim.envs or worldsim.bridges."""
    code = ("import sys\n"
            + "".join(f"import worldsim.{m}\n" for m in CORE)
            + "bad = sorted(m for m in sys.modules if m.startswith(('worldsim.envs', 'worldsim.bridges')))\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
