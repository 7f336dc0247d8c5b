"""The action spec: what a model's actions are (text phrases or bounded vectors), and their validation."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import InvalidAction, suggest

log = logging.getLogger(__name__)

Action = str | np.ndarray  # a text phrase, or a float vector of shape (d,)


class ActionSpec(BaseModel):
    """What a model's actions are. Text: phrases from a vocabulary (free text also encodes). Vector: `dim` floats,
    each within [low_i, high_i]; the model sees them normalised to [-1, 1] by that box."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["text", "vector"] = Field("text", description="'text' (phrases) or 'vector' (bounded floats).")
    vocabulary: tuple[str, ...] = Field((), description="Text: the known phrases, in a fixed order.")
    dim: int = Field(0, ge=0, description="Vector: number of components d.")
    low: tuple[float, ...] = Field((), description="Vector: lower bound of each component (d values).")
    high: tuple[float, ...] = Field((), description="Vector: upper bound of each component (d values).")
    out_of_bounds: Literal["refuse", "clip"] = Field(
        "refuse", description="Vector: what a session does with a component outside [low, high]: refuse it "
        "(InvalidAction) or clip it into the box (and report the clip in the step's info).")

    @model_validator(mode="after")
    def _consistent(self) -> ActionSpec:
        if self.kind == "text":
            if not self.vocabulary:
                raise ValueError("a text action spec needs a non-empty vocabulary")
            if self.dim or self.low or self.high:
                raise ValueError("a text action spec takes no dim, low or high")
            return self
        if self.vocabulary:
            raise ValueError("a vector action spec takes no vocabulary")
        if self.dim < 1 or len(self.low) != self.dim or len(self.high) != self.dim:
            raise ValueError(f"a vector action spec needs dim ≥ 1 and dim values in low and high; received dim="
                             f"{self.dim}, {len(self.low)} low, {len(self.high)} high")
        for i, (lo, hi) in enumerate(zip(self.low, self.high, strict=True)):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"component {i}: need finite low < high; received [{lo}, {hi}]")
        return self

    @classmethod
    def text(cls, vocabulary: Sequence[str]) -> ActionSpec:
        return cls(kind="text", vocabulary=tuple(vocabulary))

    @classmethod
    def vector(cls, low: Sequence[float], high: Sequence[float], out_of_bounds: str = "refuse") -> ActionSpec:
        return cls(kind="vector", dim=len(low), low=tuple(float(v) for v in low), high=tuple(float(v) for v in high),
                   out_of_bounds=out_of_bounds)

    @property
    def is_vector(self) -> bool:
        return self.kind == "vector"

    def describe(self) -> str:
        """One line for `worldsim info` and error messages."""
        if self.kind == "text":
            return f"text, {len(self.vocabulary)} phrases {list(self.vocabulary)}"
        box = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(self.low, self.high, strict=True))
        return f"vector, d={self.dim}, bounds {box}, out of bounds: {self.out_of_bounds}"

    # ----- vectors ----------------------------------------------------------------------------------------------
    def normalise(self, actions: np.ndarray) -> np.ndarray:
        """(..., d) values in the box → (..., d) float32 in [-1, 1] (what the model sees)."""
        lo, hi = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        return ((np.asarray(actions, np.float32) - lo) / (hi - lo) * 2 - 1).astype(np.float32)

    def denormalise(self, unit: np.ndarray) -> np.ndarray:
        """(..., d) values in [-1, 1] → (..., d) float32 in the box."""
        lo, hi = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        return (lo + (np.asarray(unit, np.float32) + 1) / 2 * (hi - lo)).astype(np.float32)

    def check_vector(self, action: Any, what: str = "action") -> tuple[np.ndarray, bool]:
        """A vector action as float32 (d,), and whether it was clipped; InvalidAction for a wrong kind, shape,
        non-finite value, or (with out_of_bounds='refuse') a component outside the box."""
        if isinstance(action, str):
            raise InvalidAction(f"{what}: this model takes vector actions ({self.describe()}); received the text "
                                f"{action!r}. Fix: pass a float array of shape ({self.dim},).")
        if isinstance(action, (bool, np.bool_)):
            raise InvalidAction(f"{what}: received a bool; expected a float array of shape ({self.dim},).")
        try:
            arr = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidAction(f"{what}: received {type(action).__name__} {action!r}, which is not numeric; "
                                f"expected a float array of shape ({self.dim},).") from None
        if arr.shape != (self.dim,):
            raise InvalidAction(f"{what}: received shape {arr.shape}; expected ({self.dim},) for this model's "
                                f"vector actions ({self.describe()}). Fix: pass one value per component.")
        if not np.isfinite(arr).all():
            raise InvalidAction(f"{what}: received non-finite values {arr.tolist()}; expected finite floats.")
        # compared in float32, the precision actions are stored and used in: a stored float32(0.4) is on a 0.4 bound
        arr = arr.astype(np.float32)
        lo, hi = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        outside = (arr < lo) | (arr > hi)
        if outside.any():
            if self.out_of_bounds == "refuse":
                i = int(np.argmax(outside))
                raise InvalidAction(f"{what}: component {i} is {arr[i]:g}, outside its bounds [{lo[i]:g}, {hi[i]:g}]"
                                    f" (received {arr.tolist()}). Fix: clip it, or open the model with "
                                    "out_of_bounds='clip' in its action spec.")
            return np.clip(arr, lo, hi), True
        return arr, False

    # ----- text -------------------------------------------------------------------------------------------------
    def check_text(self, action: Any, strict: bool, what: str = "action") -> str:
        """A text action; in strict mode it must be one of the vocabulary (with a suggestion when misspelt)."""
        vocab = self.vocabulary
        if not isinstance(action, str):
            raise InvalidAction(f"{what}: an action must be a string such as {vocab[0]!r}; received "
                                f"{type(action).__name__} {action!r}. Known actions: {list(vocab)}.")
        if strict and action not in vocab:
            raise InvalidAction(f"{what}: unknown action {action!r}; expected one of {list(vocab)}."
                                f"{suggest(action, vocab)} Fix: use a known phrase, or open the session with "
                                "strict_actions=False for free text.")
        return action

    def check(self, action: Any, strict: bool = True, what: str = "action") -> Action:
        """One action of this spec's kind, validated (vectors clipped or refused as the spec says)."""
        if self.kind == "text":
            return self.check_text(action, strict, what)
        vector, clipped = self.check_vector(action, what)
        if clipped:
            log.warning("%s %s was outside the action bounds and was clipped to %s", what, action, vector.tolist())
        return vector

    def check_many(self, actions: Any, strict: bool = True, what: str = "actions") -> list[Action]:
        """A sequence of actions (a list, or for vectors an array (T, d)) → a checked list."""
        if isinstance(actions, str):
            raise InvalidAction(f"{what}: received one string {actions!r}; expected a list of actions.")
        try:
            items = list(actions)
        except TypeError:
            raise InvalidAction(f"{what}: received {type(actions).__name__}; expected a list of actions.") from None
        return [self.check(a, strict, f"{what}[{i}]") for i, a in enumerate(items)]

    def index(self, action: str) -> int:
        """Position of a text action in the vocabulary."""
        return self.vocabulary.index(action)
