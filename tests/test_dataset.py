"""Dataset format: writer/loader round trip, window sampling, splits, and every error message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from worldsim.actions import ActionSpec
from worldsim.dataset import Dataset, DatasetWriter, Episode, WindowLoader
from worldsim.errors import DatasetError

H, W = 8, 6
VOCAB = ["left", "right"]


def episode(t: int, seed: int = 0) -> dict:
    """A synthetic episode with t actions (t+1 frames)."""
    rng = np.random.default_rng(seed)
    return {"frames": rng.integers(0, 256, (t + 1, H, W, 3), dtype=np.uint8),
            "actions": [VOCAB[i % 2] for i in range(t)] if t < 7 else ["left"] * (t - 1) + ["jump"],
            "rewards": rng.normal(size=t).astype(np.float32), "terminated": [False] * (t - 1) + [True],
            "caption": f"episode {seed}"}


def write(path: Path, lengths=(5, 3, 9)) -> Path:
    with DatasetWriter(path, H, W, fps=16, actions=VOCAB, source={"test": True}) as writer:
        for i, t in enumerate(lengths):
            writer.add_episode(**episode(t, seed=i))
    return path


def test_round_trip(tmp_path):
    ds = Dataset(write(tmp_path / "ds"))
    manifest = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert manifest["format"] == "worldsim-dataset" and manifest["format_version"] == 2
    assert manifest["action_spec"]["kind"] == "text" and manifest["action_spec"]["vocabulary"] == manifest["actions"]
    assert manifest["episode_count"] == 3 and manifest["frame_count"] == 6 + 4 + 10
    assert manifest["episodes"][0] == {"file": "ep_000000.npz", "frames": 6}
    assert manifest["source"] == {"test": True}
    assert len(ds) == 3 and ds.frame_size == (H, W) and ds.fps == 16
    assert ds.vocabulary == ["left", "right", "jump"]  # known vocabulary first, then first appearance
    assert ds.action_spec == ActionSpec.text(["left", "right", "jump"]) and not ds.is_vector
    for i, t in enumerate((5, 3, 9)):
        ep, ref = ds.episode(i), episode(t, seed=i)
        assert isinstance(ep, Episode) and len(ep) == t + 1
        assert np.array_equal(ep.frames, ref["frames"]) and ep.actions == ref["actions"]
        assert np.array_equal(ep.rewards, ref["rewards"]) and ep.rewards.dtype == np.float32
        assert ep.terminated.tolist() == ref["terminated"] and ep.caption == f"episode {i}"
    with np.load(tmp_path / "ds" / "ep_000000.npz", allow_pickle=False) as npz:  # no object arrays
        assert npz["actions"].dtype.kind == "U" and npz["caption"].shape == ()
    assert not list((tmp_path / "ds").glob("*.tmp")) and not list((tmp_path / "ds").glob(".*"))


def test_sample_windows_is_seeded_and_skips_short_episodes(tmp_path):
    ds = Dataset(write(tmp_path / "ds"))
    a = ds.sample_windows(16, 5, np.random.default_rng(7))
    b = ds.sample_windows(16, 5, np.random.default_rng(7))
    c = ds.sample_windows(16, 5, np.random.default_rng(8))
    assert a.frames.shape == (16, 5, H, W, 3) and a.frames.dtype == np.uint8
    assert a.rewards.shape == a.terminated.shape == (16, 4) and all(len(x) == 4 for x in a.actions)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.starts, b.starts)
    assert a.actions == b.actions
    assert not (np.array_equal(a.episodes, c.episodes) and np.array_equal(a.starts, c.starts))
    assert 1 not in a.episodes  # episode 1 has only 4 frames
    for k in range(16):
        ep = ds.episode(int(a.episodes[k]))
        s = int(a.starts[k])
        assert np.array_equal(a.frames[k], ep.frames[s:s + 5]) and a.actions[k] == ep.actions[s:s + 4]
        assert a.captions[k] == ep.caption
    only = ds.sample_windows(8, 2, np.random.default_rng(0), episodes=[1])
    assert set(only.episodes.tolist()) == {1}


def test_no_window_fits(tmp_path):
    ds = Dataset(write(tmp_path / "ds"))
    with pytest.raises(DatasetError, match=r"has 11 frames \(the longest has 10\)"):
        ds.sample_windows(1, 11, np.random.default_rng(0))


def test_split_and_loader(tmp_path):
    ds = Dataset(write(tmp_path / "ds", lengths=(4,) * 10))
    train, held = ds.split(0.2, seed=1)
    assert (train, held) == ds.split(0.2, seed=1)
    assert len(held) == 2 and sorted(train + held) == list(range(10))
    assert ds.split(0.0) == (list(range(10)), [])
    loader = WindowLoader(ds, batch_size=4, length=3, seed=5, episodes=train)
    batches = [next(loader) for _ in range(3)]
    again = WindowLoader(ds, batch_size=4, length=3, seed=5, episodes=train)
    assert all(np.array_equal(x.frames, next(again).frames) for x in batches)
    assert set(np.concatenate([x.episodes for x in batches]).tolist()) <= set(train)
    with pytest.raises(ValueError, match="holdout_fraction"):
        ds.split(1.0)


def test_uncached_dataset_reads_the_same(tmp_path):
    path = write(tmp_path / "ds")
    assert [e.actions for e in Dataset(path, cache=False)] == [e.actions for e in Dataset(path)]


def test_writer_refuses_to_overwrite_unless_asked(tmp_path):
    write(tmp_path / "ds")
    with pytest.raises(DatasetError, match="already holds a dataset.*overwrite=True"):
        DatasetWriter(tmp_path / "ds", H, W, 16)
    write_two = DatasetWriter(tmp_path / "ds", H, W, 16, overwrite=True)
    write_two.add_episode(**episode(2))
    write_two.close()
    assert len(Dataset(tmp_path / "ds")) == 1 and not (tmp_path / "ds" / "ep_000002.npz").exists()


def test_writer_validates_episodes(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", H, W, 16)
    bad = episode(3)
    with pytest.raises(DatasetError, match=r"frames have shape \(4, 8, 6, 3\) and dtype float32"):
        writer.add_episode(**{**bad, "frames": bad["frames"].astype(np.float32)})
    with pytest.raises(DatasetError, match="2 actions for 4 frames; expected frames-1 = 3"):
        writer.add_episode(**{**bad, "actions": ["left", "left"]})
    with pytest.raises(DatasetError, match="2 rewards for 4 frames"):
        writer.add_episode(**{**bad, "rewards": [0.0, 0.0]})
    writer.close()
    with pytest.raises(DatasetError, match="is closed"):
        writer.add_episode(**bad)


# -- every loader error ------------------------------------------------------------------------


def rewrite_manifest(path: Path, **changes) -> None:
    file = path / "dataset.json"
    manifest = json.loads(file.read_text())
    manifest.update(changes)
    file.write_text(json.dumps(manifest))


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetError, match=f"{re.escape(str(tmp_path / 'nope'))} does not exist"):
        Dataset(tmp_path / "nope")


def test_missing_manifest(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset\.json is missing.*worldsim record"):
        Dataset(tmp_path)


def test_unparseable_manifest(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"could not parse .*dataset\.json"):
        Dataset(tmp_path)


def test_wrong_format(tmp_path):
    rewrite_manifest(write(tmp_path), format="something-else")
    with pytest.raises(DatasetError, match="has format 'something-else'; expected 'worldsim-dataset'"):
        Dataset(tmp_path)


def test_wrong_version(tmp_path):
    rewrite_manifest(write(tmp_path), format_version=99)
    with pytest.raises(DatasetError, match=r"format_version 99; this worldsim reads versions \[1, 2\]"):
        Dataset(tmp_path)


def test_version_1_dataset_still_reads_as_text(tmp_path):
    write(tmp_path)
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    del manifest["action_spec"]
    (tmp_path / "dataset.json").write_text(json.dumps({**manifest, "format_version": 1}))
    ds = Dataset(tmp_path)
    assert ds.action_spec == ActionSpec.text(["left", "right", "jump"]) and ds.episode(2).actions[-1] == "jump"
    rewrite_manifest(tmp_path, format_version=2)  # version 2 must name its actions
    with pytest.raises(DatasetError, match="lacks the key 'action_spec'"):
        Dataset(tmp_path)


def test_manifest_action_spec_errors(tmp_path):
    rewrite_manifest(write(tmp_path), action_spec={"kind": "vector", "dim": 2, "low": [0, 0], "high": [0, 1]})
    with pytest.raises(DatasetError, match="'action_spec' is not a valid action spec.*low < high"):
        Dataset(tmp_path)
    rewrite_manifest(tmp_path, action_spec=ActionSpec.text(["left"]).model_dump(mode="json"))
    with pytest.raises(DatasetError, match=r"'action_spec' lists \['left'\] but 'actions' lists"):
        Dataset(tmp_path)


def test_check_vocabulary_lists_the_phrases_a_model_lacks(tmp_path):
    ds = Dataset(write(tmp_path / "ds"))
    ds.check_vocabulary(["jump", "right", "left", "stay"])
    with pytest.raises(DatasetError, match=r"2 action phrase\(s\) that the model's vocabulary lacks: "
                                           r"\['right', 'jump'\]"):
        ds.check_vocabulary(["left"])
    vector = Dataset(write_vector(tmp_path / "v"))
    with pytest.raises(DatasetError, match="holds vector actions"):
        vector.check_vocabulary(["left"])


# -- vector actions ----------------------------------------------------------------------------

SPEC = ActionSpec.vector([-1.0, 0.0], [1.0, 5.0])


def vector_actions(t: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-1, 1, t), rng.uniform(0, 5, t)], axis=1)


def write_vector(path: Path, lengths=(5, 3, 9)) -> Path:
    with DatasetWriter(path, H, W, fps=30, source={"test": True}, action_spec=SPEC) as writer:
        for i, t in enumerate(lengths):
            writer.add_episode(**{**episode(t, seed=i), "actions": vector_actions(t, seed=i)})
    return path


def test_vector_round_trip_and_windows(tmp_path):
    ds = Dataset(write_vector(tmp_path / "ds"))
    manifest = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert manifest["actions"] == [] and manifest["action_spec"] == SPEC.model_dump(mode="json")
    assert ds.action_spec == SPEC and ds.is_vector and ds.vocabulary == []
    for i, t in enumerate((5, 3, 9)):
        ep = ds.episode(i)
        assert isinstance(ep.actions, np.ndarray) and ep.actions.dtype == np.float32 and ep.actions.shape == (t, 2)
        assert np.array_equal(ep.actions, vector_actions(t, seed=i).astype(np.float32))
    with np.load(tmp_path / "ds" / "ep_000000.npz", allow_pickle=False) as npz:
        assert npz["actions"].dtype == np.float32 and npz["actions"].shape == (5, 2)
    win = ds.sample_windows(6, 4, np.random.default_rng(3))
    assert isinstance(win.actions, np.ndarray) and win.actions.shape == (6, 3, 2) and win.actions.dtype == np.float32
    for k in range(6):
        s = int(win.starts[k])
        assert np.array_equal(win.actions[k], ds.episode(int(win.episodes[k])).actions[s:s + 3])
    assert Dataset(tmp_path / "ds", cache=False).episode(1).actions.shape == (3, 2)


def test_bad_vector_actions_are_dataset_errors(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", H, W, 16, action_spec=SPEC)
    ep = episode(3)
    good = vector_actions(3)
    with pytest.raises(DatasetError, match=r"episode ep_000000\.npz: vector actions have shape \(3, 3\); "
                                           r"expected \(T, 2\)"):
        writer.add_episode(**{**ep, "actions": np.zeros((3, 3))})
    nan = good.copy()
    nan[1, 0] = np.nan
    with pytest.raises(DatasetError, match=r"ep_000000\.npz: the action at step 1 is \[nan, .*finite"):
        writer.add_episode(**{**ep, "actions": nan})
    high = good.copy()
    high[2, 1] = 7.5
    with pytest.raises(DatasetError, match=r"action at step 2 is .*component 1 = 7\.5 is outside its bounds \[0, 5\]"):
        writer.add_episode(**{**ep, "actions": high})
    with pytest.raises(DatasetError, match="holds vector actions .*received the text 'left'"):
        writer.add_episode(**ep)
    with pytest.raises(DatasetError, match="2 actions for 4 frames"):
        writer.add_episode(**{**ep, "actions": good[:2]})
    writer.add_episode(**{**ep, "actions": good})
    writer.close()
    with pytest.raises(DatasetError, match="vector dataset .* takes no phrase vocabulary"):
        DatasetWriter(tmp_path / "v2", H, W, 16, actions=["left"], action_spec=SPEC)
    text = DatasetWriter(tmp_path / "t", H, W, 16)
    with pytest.raises(DatasetError, match=r"vector actions of shape \(3, 2\) for a text dataset"):
        text.add_episode(**{**ep, "actions": good})


def test_vector_episode_file_checked_on_load(tmp_path):
    path = write_vector(tmp_path)
    overwrite_episode(path, actions=np.array(["left"] * 5))
    with pytest.raises(DatasetError, match="actions have dtype <U4; a vector dataset stores float32"):
        Dataset(path).episode(0)
    overwrite_episode(path, actions=np.full((5, 2), 9.0, np.float32))
    with pytest.raises(DatasetError, match="component 0 = 9 is outside its bounds"):
        Dataset(path).episode(0)


def test_manifest_missing_key(tmp_path):
    write(tmp_path)
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    del manifest["fps"]
    (tmp_path / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="lacks the key 'fps'"):
        Dataset(tmp_path)


def test_manifest_inconsistent_counts(tmp_path):
    rewrite_manifest(write(tmp_path), episode_count=7)
    with pytest.raises(DatasetError, match="episode_count is 7 but the episode list gives 3"):
        Dataset(tmp_path)


def test_missing_episode_file(tmp_path):
    (write(tmp_path) / "ep_000001.npz").unlink()
    with pytest.raises(DatasetError, match=r"episode file .*ep_000001\.npz .* is missing"):
        Dataset(tmp_path)


def test_truncated_episode_file(tmp_path):
    file = write(tmp_path) / "ep_000000.npz"
    file.write_bytes(file.read_bytes()[:100])
    ds = Dataset(tmp_path)
    with pytest.raises(DatasetError, match=r"could not read .*ep_000000\.npz.*corrupt or truncated"):
        ds.episode(0)


def overwrite_episode(path: Path, **arrays) -> None:
    ref = episode(5)
    data = {"frames": ref["frames"], "actions": np.array(ref["actions"]), "rewards": ref["rewards"],
            "terminated": np.array(ref["terminated"]), "caption": np.array("x")}
    data.update(arrays)
    data = {k: v for k, v in data.items() if v is not None}
    with open(path / "ep_000000.npz", "wb") as f:
        np.savez_compressed(f, **data)


def test_episode_missing_key(tmp_path):
    overwrite_episode(write(tmp_path), caption=None)
    with pytest.raises(DatasetError, match=r"ep_000000\.npz lacks the key\(s\) \['caption'\]"):
        Dataset(tmp_path).episode(0)


def test_episode_frames_wrong_shape(tmp_path):
    overwrite_episode(write(tmp_path), frames=np.zeros((6, 4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"ep_000000\.npz: frames have shape \(6, 4, 4, 3\).*\(T\+1, 8, 6"):
        Dataset(tmp_path).episode(0)


def test_episode_frames_wrong_dtype(tmp_path):
    overwrite_episode(write(tmp_path), frames=np.zeros((6, H, W, 3), np.float32))
    with pytest.raises(DatasetError, match="dtype float32; expected .* uint8"):
        Dataset(tmp_path).episode(0)


def test_episode_action_count(tmp_path):
    overwrite_episode(write(tmp_path), actions=np.array(["left"] * 3))
    with pytest.raises(DatasetError, match=r"ep_000000\.npz: 3 actions for 6 frames; expected frames-1 = 5"):
        Dataset(tmp_path).episode(0)


def test_episode_actions_not_text(tmp_path):
    overwrite_episode(write(tmp_path), actions=np.zeros(5, np.int64))
    with pytest.raises(DatasetError, match="actions have dtype int64.*unicode"):
        Dataset(tmp_path).episode(0)


def test_episode_frame_count_disagrees_with_manifest(tmp_path):
    path = write(tmp_path)
    manifest = json.loads((path / "dataset.json").read_text())
    manifest["episodes"][0]["frames"] = 5
    manifest["frame_count"] -= 1
    (path / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"ep_000000\.npz has 6 frames but .*dataset\.json says 5"):
        Dataset(path).validate()


def test_an_episode_phrase_missing_from_the_manifest_is_a_dataset_error(tmp_path):
    with DatasetWriter(tmp_path / "d", 16, 16, 16) as w:
        w.add_episode(np.zeros((3, 16, 16, 3), np.uint8), ["stay", "jump"], [0.0, 0.0], [False, False])
    manifest = json.loads((tmp_path / "d" / "dataset.json").read_text())
    manifest["actions"] = ["stay"]
    manifest["action_spec"]["vocabulary"] = ["stay"]
    (tmp_path / "d" / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"holds action phrase\(s\) \['jump'\] that .* does not list"):
        Dataset(tmp_path / "d").episode(0)
