"""Model configuration: one frozen pydantic root (`ModelConfig`) and named presets."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .actions import ActionSpec
from .errors import ConfigError, suggest

FORMAT_VERSION = 1
# The text vocabulary presets start with (training replaces it with the dataset's action spec).
DEFAULT_ACTIONS = ("move up", "move down", "move left", "move right", "stay")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CodecConfig(_Frozen):
    kind: Literal["pixels", "latent"] = Field(
        "latent", description="'pixels': p×p patches, exact pixel likelihood; 'latent': frozen conv autoencoder."
    )
    patch: int = Field(4, ge=1, description="Pixel codec: patch side p (tokens are p·p·3 values).")
    channel_mix: bool = Field(True, description="Pixel codec: learned invertible (LU) mix of each token's values.")
    latent_channels: int = Field(16, ge=1, description="Latent codec: channels per latent position (token dim).")
    downsample: int = Field(8, ge=2, description="Latent codec: spatial reduction factor, a power of two.")
    hidden: int = Field(64, ge=8, description="Latent codec: width of the convolutional layers.")

    @model_validator(mode="after")
    def _power_of_two(self) -> CodecConfig:
        if self.downsample & (self.downsample - 1):
            raise ValueError(f"codec.downsample must be a power of two, got {self.downsample}")
        return self


class TransformerConfig(_Frozen):
    width: int = Field(..., ge=8, description="Model width d.")
    layers: int = Field(..., ge=1, description="Transformer layers.")
    heads: int = Field(..., ge=1, description="Attention heads; width/heads must be even.")

    @model_validator(mode="after")
    def _heads_divide(self) -> TransformerConfig:
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} must split into {self.heads} heads of even size")
        return self


class LocalConfig(TransformerConfig):
    blocks: int = Field(2, ge=1, description="K shallow affine-AR blocks within a frame (orders alternate).")


class DeepConfig(TransformerConfig):
    window: int = Field(16, ge=1, description="Frames a frame can attend to (itself included); sliding window.")
    prompt_tokens: int = Field(4, ge=1, description="Text prompt prefix length in tokens.")


class TextConfig(TransformerConfig):
    max_bytes: int = Field(64, ge=4, description="UTF-8 bytes kept from an action or prompt string.")


class DenoiserConfig(TransformerConfig):
    enabled: bool = Field(True, description="Learned causal denoiser; when off, sampling uses causal Tweedie.")


class ModelConfig(_Frozen):
    format_version: int = Field(FORMAT_VERSION, description="Checkpoint/config format version.")
    name: str = Field("custom", description="Preset or model name, for reports.")
    height: int = Field(64, ge=4, description="Frame height in pixels.")
    width: int = Field(64, ge=4, description="Frame width in pixels.")
    fps: int = Field(16, ge=1, description="Frames per second of the world (time step 1/fps).")
    action_spec: ActionSpec = Field(
        default_factory=lambda: ActionSpec.text(DEFAULT_ACTIONS),
        description="What actions are: text phrases (a vocabulary; free text also encodes) or bounded vectors.")
    noise_std: float = Field(0.2, gt=0, description="σ of the Gaussian noise on tokens in training and sampling.")
    soft_clip: float = Field(4.0, gt=0, description="Bound a·tanh(x/a) on the affine heads' shift and log-scale.")
    cond_drop: float = Field(0.1, ge=0, le=1, description="Probability of dropping action/prompt in training (CFG).")
    rope_base: float = Field(100.0, gt=1, description="Rotary base for the (time, row, column) positions.")
    heads: bool = Field(True, description="Reward and termination heads on the deep block's end-of-frame state.")
    codec: CodecConfig = Field(default_factory=CodecConfig, description="Frame ↔ token codec.")
    local: LocalConfig = Field(..., description="Shallow per-frame blocks.")
    deep: DeepConfig = Field(..., description="Deep block causal over time.")
    text: TextConfig = Field(..., description="Byte-level text encoder for actions and prompts.")
    denoiser: DenoiserConfig = Field(..., description="Causal denoiser (flow-score matching).")

    @model_validator(mode="after")
    def _divisible(self) -> ModelConfig:
        step = self.codec.patch if self.codec.kind == "pixels" else self.codec.downsample
        if self.height % step or self.width % step:
            raise ValueError(
                f"frame {self.height}×{self.width} is not divisible by the codec's "
                f"{'patch' if self.codec.kind == 'pixels' else 'downsample'} {step}"
            )
        return self

    @property
    def actions(self) -> tuple[str, ...]:
        """The text vocabulary (empty for a vector-action model)."""
        return self.action_spec.vocabulary

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, columns) of one frame."""
        step = self.codec.patch if self.codec.kind == "pixels" else self.codec.downsample
        return self.height // step, self.width // step

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def token_dim(self) -> int:
        if self.codec.kind == "pixels":
            return 3 * self.codec.patch**2
        return self.codec.latent_channels

    @property
    def likelihood_space(self) -> str:
        return "pixels" if self.codec.kind == "pixels" else "latents"

    def merged(self, **update: Any) -> ModelConfig:
        """A validated copy with `update` merged into the dump (nested dicts merge)."""
        base = self.model_dump()
        if "actions" in update or "action_spec" in update:
            base.pop("action_spec")  # a new spec replaces the old one whole, never merged into it
        return from_dict(_deep_merge(base, update))


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _migrate(data: dict) -> dict:
    """Older configs name the text vocabulary `actions`; it is now `action_spec`. `merged(actions=[...])` too."""
    if "actions" in data:
        data = dict(data)
        vocab = data.pop("actions")
        data["action_spec"] = {"kind": "text", "vocabulary": list(vocab)}
    return data


def from_dict(data: dict) -> ModelConfig:
    data = _migrate(data)
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid model config: {exc}") from None


PRESETS: dict[str, dict[str, Any]] = {
    # 16×16 frames, pixel patches: for tests, seconds on a CPU.
    "tiny": dict(
        name="tiny", height=16, width=16, noise_std=0.05,
        codec=dict(kind="pixels", patch=4),
        local=dict(blocks=2, layers=1, width=32, heads=2),
        deep=dict(layers=2, width=64, heads=2, window=4, prompt_tokens=2),
        text=dict(layers=1, width=32, heads=2, max_bytes=32),
        denoiser=dict(layers=1, width=32, heads=2),
    ),
    # The same scale with the latent codec (16×16 → 4×4×8).
    "tiny-latent": dict(
        name="tiny-latent", height=16, width=16, noise_std=0.2,
        codec=dict(kind="latent", latent_channels=16, downsample=4, hidden=32),
        local=dict(blocks=2, layers=1, width=32, heads=2),
        deep=dict(layers=2, width=64, heads=2, window=4, prompt_tokens=2),
        text=dict(layers=1, width=32, heads=2, max_bytes=32),
        denoiser=dict(layers=1, width=32, heads=2),
    ),
    # 64×64 frames → 8×8×16 latents: the scale of the bundled model.
    "small": dict(
        name="small", height=64, width=64, noise_std=0.2,
        codec=dict(kind="latent", latent_channels=16, downsample=8, hidden=64),
        local=dict(blocks=2, layers=1, width=128, heads=2),
        deep=dict(layers=8, width=192, heads=3, window=8, prompt_tokens=4),
        text=dict(layers=2, width=128, heads=2, max_bytes=64),
        denoiser=dict(layers=2, width=128, heads=2),
    ),
}


def preset(name: str) -> ModelConfig:
    """The named preset's config; unknown names raise ConfigError with a suggestion."""
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}; expected one of {sorted(PRESETS)}.{suggest(name, PRESETS)}"
        )
    return from_dict(PRESETS[name])
