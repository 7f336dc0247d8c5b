"""Importers of datasets in other formats (LeRobot, Minari) as worldsim datasets."""

from .lerobot import import_lerobot
from .minari import import_minari

__all__ = ["import_lerobot", "import_minari"]
