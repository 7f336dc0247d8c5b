"""`SessionSettings`: one frozen, validated set of sampling settings, shared by sessions, envs and the bridge."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, suggest
from .precision import resolve
from .sampling import SamplerSettings

MAX_ITER_CAP = 10_000  # a Jacobi pass cap beyond this is a typo, not a setting


class SessionSettings(BaseModel):
    """How a session samples. Keyword-built and frozen; every bad value is a ConfigError that names it.

    Ints are accepted where floats are expected (JSON and JavaScript send 1.0 as 1); bools are not numbers here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sampler: Literal["jacobi", "sequential"] = Field(
        "jacobi", description="'jacobi' (parallel fixed-point, the fast default) or 'sequential' (token by token, "
        "the exact reference).")
    guidance: float = Field(0.0, ge=0, description="Classifier-free guidance weight on actions/prompt (0: plain "
                            "conditional sampling).")
    temperature: float = Field(1.0, gt=0, description="Scale of the sampling noise z.")
    tol: float = Field(1e-4, gt=0, description="Jacobi stops when max |Δ| over a chunk falls below this.")
    max_iter: int | None = Field(None, ge=1, le=MAX_ITER_CAP, description="Jacobi pass cap per chunk (None: the "
                                 "chunk length, which makes Jacobi exact).")
    chunk: int | None = Field(None, ge=1, description="Deep-block Jacobi chunk in tokens (None: the whole frame).")
    denoise: Literal["learned", "tweedie", "none"] = Field(
        "learned", description="'learned' (causal denoiser), 'tweedie' (autograd through the flow) or 'none'.")
    context: Literal["sample", "frame"] = Field(
        "sample", description="What a generated frame leaves in the context: the sampled noisy tokens ('sample') "
        "or the shown frame re-encoded with fresh σ noise ('frame', one extra parallel pass per frame).")
    strict_actions: bool = Field(True, description="Reject text actions outside the model's vocabulary.")
    freeze_prefix: bool = Field(False, description="Jacobi commits a chunk's converged prefix after each pass and "
                                "iterates only on the rest (faster alone; same output within tol).")
    best_of: int = Field(1, ge=1, le=64, description="Candidates drawn per frame in one batched pass; the one the "
                         "model finds likeliest (exact log p) is kept. 1: plain sampling.")
    dtype: Literal["float32", "bfloat16", "auto"] = Field(
        "float32", description="Precision of the Jacobi passes far from the fixed point: 'bfloat16' runs them in "
        "bf16 and finishes in float32 (same fixed point within tol; likelihoods float32's); 'auto' measures this "
        "machine once and picks bfloat16 where its matmuls are at least 1.5× faster.")

    @field_validator("guidance", "temperature", "tol", mode="before")
    @classmethod
    def _finite_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, received {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, received {value!r}")
        return float(value)

    @field_validator("max_iter", "chunk", "best_of", mode="before")
    @classmethod
    def _integer(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"expected an int, received {type(value).__name__} {value!r}")
        return value

    @field_validator("strict_actions", "freeze_prefix", mode="before")
    @classmethod
    def _boolean(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, received {type(value).__name__} {value!r}")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> SessionSettings:
        if self.sampler == "sequential" and self.freeze_prefix:
            raise ValueError("freeze_prefix applies to the Jacobi sampler only; drop it or use sampler='jacobi'")
        return self

    @classmethod
    def build(cls, **values: Any) -> SessionSettings:
        """Validated settings from keywords; a ConfigError names each bad value (with a suggestion for typos)."""
        unknown = [k for k in values if k not in cls.model_fields]
        if unknown:
            name = unknown[0]
            raise ConfigError(f"unknown session setting {name!r}; expected some of {sorted(cls.model_fields)}."
                              f"{suggest(name, cls.model_fields)}")
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(f"invalid session settings: {describe_errors(exc, values)}.") from None

    def replace(self, **values: Any) -> SessionSettings:
        """A validated copy with `values` changed."""
        return SessionSettings.build(**{**self.model_dump(), **values})

    def sampler_settings(self, low_precision: bool | None = None) -> SamplerSettings:
        """The sampler's view of these settings. low_precision: whether `dtype` resolved to bfloat16 (None: resolve
        it here, "auto" by a bare matmul; a session resolves it with its model's own pass instead)."""
        if low_precision is None:
            low_precision = resolve(self.dtype) == "bfloat16"
        return SamplerSettings(self.sampler, self.tol, self.max_iter, self.chunk, self.guidance, self.temperature,
                               self.freeze_prefix, low_precision=low_precision)


_BOUNDS = {"greater_than": ">", "greater_than_equal": "≥", "less_than": "<", "less_than_equal": "≤"}


def describe_errors(exc: ValidationError, values: dict[str, Any]) -> str:
    """A settings validation error in words: each bad setting, the value received and what was expected."""
    return "; ".join(_problem(e, values) for e in exc.errors())


def _problem(error: Any, values: dict[str, Any]) -> str:
    """One readable clause per pydantic error: the setting, the value received, what was expected."""
    name = str(error["loc"][0]) if error.get("loc") else "settings"
    value = values.get(name, error.get("input"))
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "literal_error":
        choices = list(SessionSettings.model_fields[name].annotation.__args__)  # type: ignore[union-attr]
        return f"{name}={value!r} is not supported; expected one of {choices}.{suggest(str(value), choices)}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        return f"{name}={value!r}: it must be {_BOUNDS[kind]} {bound}"
    return f"{name}={value!r}: {str(error.get('msg', 'invalid')).removeprefix('Value error, ')}"
