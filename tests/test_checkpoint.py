"""Checkpoint loading refuses a config.json that no longer fits its weights, naming the tensor or the geometry."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from worldsim import WorldModel
from worldsim.checkpoint import load_checkpoint
from worldsim.config import FORMAT_VERSION
from worldsim.errors import CheckpointError


def edit_config(path, **update):
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, **update}))
    return cfg


@pytest.mark.parametrize("preset", ["tiny", "tiny-latent"])
def test_a_frame_size_edited_in_config_json_is_refused(preset, tmp_path):
    path = WorldModel.from_config(preset).save(tmp_path / "c")
    edit_config(path, height=32, width=32)  # the tensors have the same shapes at 32×32: only the saved config tells
    with pytest.raises(CheckpointError, match=r"config.json asks for 32×32 frames \(height 16 → 32, width 16 → 32\) "
                                              r"but model.safetensors was saved for 16×16 frames.*height/width"):
        WorldModel.from_pretrained(path)


def test_a_shape_edited_in_config_json_names_the_first_tensor_its_shapes_and_the_edit(tmp_path):
    path = WorldModel.from_config("tiny").save(tmp_path / "c")
    cfg = json.loads((path / "config.json").read_text())
    edit_config(path, deep={**cfg["deep"], "width": 32})
    with pytest.raises(CheckpointError, match=r"shape mismatch at 'deep\.act_type': \(64,\) in the file, \(32,\) "
                                              r"implied by config.json; \d+ more tensors differ\)\. Likely cause: "
                                              r"config.json was edited after saving: deep.width 64 → 32\."):
        WorldModel.from_pretrained(path)


def test_edits_that_keep_shapes_and_geometry_load_and_loading_leaves_the_random_stream_alone(tmp_path):
    path = WorldModel.from_config("tiny").save(tmp_path / "c")
    edit_config(path, noise_std=0.1, name="renamed")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    config, _, _ = load_checkpoint(path)  # it builds a model to check the shapes: without drawing from the stream
    assert torch.equal(torch.rand(3), expected)
    assert config.noise_std == 0.1 and WorldModel.from_pretrained(path).config.name == "renamed"


def test_a_checkpoint_saved_without_its_config_in_the_weights_still_loads_and_is_shape_checked(tmp_path):
    """Older saves (and the bundled models) carry only format_version in the safetensors header."""
    path = WorldModel.from_config("tiny").save(tmp_path / "c")
    tensors = load_file(path / "model.safetensors")
    save_file(tensors, str(path / "model.safetensors"), metadata={"format_version": str(FORMAT_VERSION)})
    cfg = edit_config(path, height=32, width=32)
    assert WorldModel.from_pretrained(path).config.height == 32  # nothing to compare the geometry with
    edit_config(path, **{**cfg, "deep": {**cfg["deep"], "width": 32}})
    with pytest.raises(CheckpointError, match=r"shape mismatch at 'deep\.act_type'.*Likely cause: config.json was "
                                              r"edited after saving \(a width"):
        WorldModel.from_pretrained(path)


def test_a_save_killed_between_its_two_renames_leaves_the_previous_checkpoint_findable(tmp_path):
    import os

    from worldsim.checkpoint import find_checkpoint

    assert find_checkpoint(tmp_path / "state") is None
    path = WorldModel.from_config("tiny").save(tmp_path / "state")
    assert find_checkpoint(path) == path
    os.replace(path, tmp_path / ".state.old")  # where save_checkpoint puts the old copy before renaming the new in
    found = find_checkpoint(path)
    assert found == tmp_path / ".state.old" and WorldModel.from_pretrained(found).config.name == "tiny"
