"""`worldsim record --import-minari`: Minari datasets built here with Minari's own DataCollector (in a temporary
MINARI_DATASETS_PATH; nothing is downloaded) → worldsim datasets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest

minari = pytest.importorskip("minari")
pytest.importorskip("jax")  # Minari's DataCollector needs it (the minari[create] extra)
h5py = pytest.importorskip("h5py")

import worldsim.envs  # noqa: E402, F401  (registers worldsim/PushWorld-v0)
from worldsim.cli import main  # noqa: E402
from worldsim.dataset import Dataset  # noqa: E402
from worldsim.envs import PUSHWORLD_ACTIONS  # noqa: E402
from worldsim.errors import DatasetError  # noqa: E402
from worldsim.importers import import_minari  # noqa: E402

PUSH = "worldsim/pushworld-v0"
PEND = "test/pendulum-v0"


class Pixels(gym.ObservationWrapper):
    """Dict observations: the state and a 24×24 render (Minari stores both)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = gym.spaces.Dict({"state": env.observation_space,
                                                  "pixels": gym.spaces.Box(0, 255, (24, 24, 3), np.uint8)})

    def observation(self, obs: np.ndarray) -> dict:
        return {"state": obs, "pixels": cv2.resize(self.env.render(), (24, 24), interpolation=cv2.INTER_AREA)}


class Unbounded(gym.ActionWrapper):
    """A Box action space with infinite bounds (clipped into Pendulum's own)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        return np.clip(action, -2.0, 2.0).astype(np.float32)


def collect(env: gym.Env, dataset_id: str, episodes: int, **kwargs) -> list[dict]:
    """Run seeded random episodes through Minari's DataCollector; returns what the env gave, episode by episode."""
    collector = minari.DataCollector(env, **kwargs)
    collector.action_space.seed(0)
    seen = []
    for i in range(episodes):
        obs, _ = collector.reset(seed=i)
        ep: dict = {"obs": [obs], "actions": [], "rewards": [], "terminated": []}
        while True:
            action = collector.action_space.sample()
            obs, reward, terminated, truncated, _ = collector.step(action)
            for key, value in (("obs", obs), ("actions", action), ("rewards", reward), ("terminated", terminated)):
                ep[key].append(value)
            if terminated or truncated:
                break
        seen.append(ep)
    with warnings.catch_warnings():  # Minari asks for an author e-mail, a description and an eval env
        warnings.simplefilter("ignore", UserWarning)
        collector.create_dataset(dataset_id=dataset_id, algorithm_name="random")
    collector.close()
    return seen


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, list[dict]]]]:
    path = tmp_path_factory.mktemp("minari")
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    seen = {
        PUSH: collect(gym.make("worldsim/PushWorld-v0", size=32, max_episode_steps=8), PUSH, 3, jpeg_encoding=False),
        PEND: collect(Pixels(gym.make("Pendulum-v1", render_mode="rgb_array", max_episode_steps=6)), PEND, 2,
                      data_format="arrow"),
        "test/unbounded-v0": collect(Pixels(Unbounded(gym.make("Pendulum-v1", render_mode="rgb_array",
                                                               max_episode_steps=5))), "test/unbounded-v0", 1),
        "test/cartpole-v0": collect(gym.make("CartPole-v1", max_episode_steps=4), "test/cartpole-v0", 1),
    }
    yield path, seen
    if before is None:
        os.environ.pop("MINARI_DATASETS_PATH")
    else:
        os.environ["MINARI_DATASETS_PATH"] = before


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ----- round trips ------------------------------------------------------------------------------------------------
def test_discrete_image_observations(root: tuple[Path, dict], tmp_path: Path) -> None:
    data = Dataset(import_minari(PUSH, tmp_path / "out"))
    seen = root[1][PUSH]
    assert len(data) == 3 and data.episode_lengths == [len(ep["obs"]) for ep in seen]
    assert data.action_spec.kind == "text" and data.vocabulary == list(PUSHWORLD_ACTIONS)  # the env's own phrases
    assert data.frame_size == (32, 32) and data.fps == 16
    for ep, want in zip(data, seen, strict=True):
        np.testing.assert_array_equal(ep.frames, np.stack(want["obs"]))  # stored without JPEG: exact
        assert ep.actions == [PUSHWORLD_ACTIONS[int(a)] for a in want["actions"]]
        np.testing.assert_allclose(ep.rewards, want["rewards"])
        np.testing.assert_array_equal(ep.terminated, want["terminated"])
    source = data.manifest["source"]
    assert source["format"] == "minari" and source["dataset_id"] == PUSH
    assert source["minari_env_id"] == "worldsim/PushWorld-v0" and "env_id" not in source
    assert leftovers(tmp_path) == []


def test_box_actions_dict_observations_by_path(root: tuple[Path, dict], tmp_path: Path) -> None:
    data = Dataset(import_minari(root[0] / PEND, tmp_path / "out", size=16))
    seen = root[1][PEND]
    assert len(data) == 2 and data.episode_lengths == [7, 7] and data.frame_size == (16, 16)
    assert data.is_vector and data.action_spec.low == (-2.0,) and data.action_spec.high == (2.0,)
    assert data.manifest["source"]["obs_key"] == "pixels"  # the only image in the dict
    assert data.manifest["source"]["action_bounds"]["low_from"] == "space"
    for ep, want in zip(data, seen, strict=True):
        np.testing.assert_array_equal(ep.actions, np.stack(want["actions"]).astype(np.float32))
        # JPEG-stored 24×24 renders, then area-averaged to 16×16: close to the renders resized the same way
        renders = np.stack([cv2.resize(o["pixels"], (16, 16), interpolation=cv2.INTER_AREA) for o in want["obs"]])
        assert np.abs(ep.frames.astype(int) - renders).mean() < 8


def test_infinite_box_bounds_from_the_data(root: tuple[Path, dict], tmp_path: Path) -> None:
    data = Dataset(import_minari("test/unbounded-v0", tmp_path / "out", obs_key="pixels"))
    actions = np.stack(root[1]["test/unbounded-v0"][0]["actions"]).astype(np.float64)
    assert data.action_spec.low == pytest.approx([actions.min()]) and data.action_spec.high == pytest.approx(
        [actions.max()])
    assert data.manifest["source"]["action_bounds"]["low_from"] == "data"
    given = Dataset(import_minari("test/unbounded-v0", tmp_path / "given", action_low=-50, action_high=50))
    assert given.action_spec.low == (-50,) and given.manifest["source"]["action_bounds"]["high_from"] == "given"


def test_cli_import_minari(root: tuple[Path, dict], tmp_path: Path) -> None:
    env = dict(os.environ, MINARI_DATASETS_PATH=str(root[0]))
    proc = subprocess.run([sys.executable, "-m", "worldsim.cli", "record", "--import-minari", PUSH, "--episodes", "2",
                           "--size", "16", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "2 episodes" in proc.stdout and "of 16×16" in proc.stdout and "text, 5 phrases" in proc.stdout


def test_cli_obs_key_needs_minari(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--import-lerobot", str(tmp_path), "--obs-key", "pixels", "--out", str(tmp_path / "o")]) == 2
    assert "--obs-key goes with --import-minari" in capsys.readouterr().err


# ----- bad input --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("worldsim/pushworld-v9", {}, r"no Minari dataset 'worldsim/pushworld-v9' in the local Minari root .*local "
                                  r"datasets: \[.*\]. Did you mean 'worldsim/pushworld-v0'\?"),
    ("test/cartpole-v0", {}, r"the observations are Box\(4,\) float32; worldsim imports image observations"),
    (PEND, {"obs_key": "pixel"}, r"--obs-key 'pixel' is not an observation key; the observations are \{.*\}. Did you "
                                 r"mean 'pixels'\?"),
    (PEND, {"obs_key": "state"}, r"observation 'state' is Box\(3,\) float32; expected an image"),
    (PUSH, {"obs_key": "pixels"}, r"--obs-key 'pixels' given, but the observations are Box\(32, 32, 3\) uint8"),
    (PUSH, {"action_low": 0.0}, r"--action-low/--action-high bound Box actions; .* has Discrete actions"),
])
def test_bad_input(root: tuple[Path, dict], tmp_path: Path, name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        import_minari(name, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_not_a_minari_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"is not a Minari dataset: neither .*data/metadata.json nor"):
        import_minari(tmp_path, tmp_path / "out")


def test_mismatched_lengths_leave_nothing(root: tuple[Path, dict], tmp_path: Path) -> None:
    copy = tmp_path / "broken"
    shutil.copytree(root[0] / PUSH, copy)
    with h5py.File(copy / "data" / "main_data.hdf5", "r+") as f:  # episode 1 loses its last observation
        obs = f["episode_1/observations"][:-1]
        del f["episode_1/observations"]
        f["episode_1/observations"] = obs
    with pytest.raises(DatasetError, match=r"episode 1: 8 observations, 8 actions and 8 rewards; expected T\+1 "
                                           r"observations for T actions"):
        import_minari(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
