"""worldsim: an interactive world simulator on a strictly causal normalizing-flow video model.

Importing it turns on flush-to-zero for denormal floats (see `WorldModel`): CPU worker threads inherit the mode
from the thread that starts them, so it is set before torch starts its thread pool where possible.
"""

import torch as _torch

from .actions import ActionSpec
from .config import ModelConfig, preset
from .errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    InvalidAction,
    InvalidFrames,
    SessionStateError,
    WorldSimError,
)
from .session import Session, StepResult
from .settings import SessionSettings
from .world_model import ScoreReport, WorldModel, bundled_models

_torch.set_flush_denormal(True)

__version__ = "0.1.0"

__all__ = [
    "ActionSpec", "CheckpointError", "ConfigError", "DatasetError", "InvalidAction", "InvalidFrames", "ModelConfig",
    "ScoreReport", "Session", "SessionSettings", "SessionStateError", "StepResult", "WorldModel", "WorldSimError",
    "bundled_models", "preset",
]
