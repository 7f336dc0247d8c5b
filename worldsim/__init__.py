"""worldsim: an interactive world simulator on a strictly causal normalizing-flow video model."""

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
from .world_model import ScoreReport, WorldModel, bundled_models

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "ConfigError", "DatasetError", "InvalidAction", "InvalidFrames", "ModelConfig",
    "ScoreReport", "Session", "SessionStateError", "StepResult", "WorldModel", "WorldSimError",
    "bundled_models", "preset",
]
