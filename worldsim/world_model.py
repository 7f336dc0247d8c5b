"""`WorldModel`: a loaded network plus its config; makes sessions and scores clips with exact likelihoods."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .actions import ActionSpec
from .checkpoint import load_checkpoint, load_weights, save_checkpoint
from .config import PRESETS, ModelConfig, preset
from .counterfactual import counterfactual
from .errors import CheckpointError, ConfigError, InvalidAction, InvalidFrames, suggest
from .frames import check_action_count, check_frames
from .model.flow import LN2, FlowNet
from .plausibility import META_KEY, Calibration, Verdict, judge, surprise_z
from .precision import compute, resolve
from .session import Session

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
SAMPLING_KEY = "sampling"  # meta.json: recommended Session settings
MAX_SCORE_FRAMES = 4096  # frames one `score` call takes (B·T); bounds its memory


def bundled_models() -> list[str]:
    """Names of the checkpoints shipped inside the package."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file())


@dataclass
class ScoreReport:
    """Exact per-frame log-likelihoods of a clip (or batch of clips).

    log_prob: (T,) or (B, T) nats, log p(x_t | x_<t, a_<t, prompt) of frame t's tokens; bits_per_dim: the same
    as −log p / (dims · ln 2). It is a density of `space` ("pixels" in [-1, 1] units, or "latents"): comparable
    across frames and clips of one model, not across models with different codecs.
    token_log_prob: (T, N) or (B, T, N) per-token terms (they sum to log_prob): where in the frame the surprise is.
    surprise: (T, rows, cols) or (B, T, rows, cols) the per-token surprise on the token grid (one token covers
    H/rows × W/cols pixels): −log p standardised per token position against real frames when the model is
    calibrated (`surprise_unit` "z"), raw nats otherwise ("nats").
    verdict: per-frame percentile / z-score / implausible flag against the model's calibration (None when its
    meta.json has no calibration; see `worldsim.plausibility`).
    """

    log_prob: np.ndarray
    bits_per_dim: np.ndarray
    token_log_prob: np.ndarray
    space: str
    dims_per_frame: int
    noise_draws: int
    surprise: np.ndarray | None = None
    surprise_unit: str = "nats"
    verdict: Verdict | None = None


class WorldModel:
    """A world model: `score` clips, open a stateful `session` to imagine futures.

    `import worldsim` turns on flush-to-zero for denormal floats (`torch.set_flush_denormal(True)`, where the CPU
    supports it): values below 1.2e-38 become 0. The bundled model's activations produce such values, and CPUs
    handle them slowly (docs/benchmarks.md has the figures). Call
    `torch.set_flush_denormal(False)` to undo it.
    """

    def __init__(self, net: FlowNet, meta: dict[str, Any] | None = None, dtype: str = "float32") -> None:
        self.net = net.eval()
        self.config: ModelConfig = net.cfg
        self.meta = dict(meta or {})
        self.dtype = dtype  # default precision of its sessions and scoring: "float32", "bfloat16" or "auto"
        self.resolve_dtype(dtype)  # a bad name fails here; "auto" measures now and logs its choice

    # ----- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | ModelConfig, seed: int = 0, dtype: str = "float32") -> WorldModel:
        """A freshly initialised model from a preset name ('tiny', 'small', …) or a ModelConfig."""
        cfg = preset(config) if isinstance(config, str) else config
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's global RNG
            torch.manual_seed(seed)
            net = FlowNet(cfg)
        return cls(net, meta={"trained": False, "init_seed": seed}, dtype=dtype)

    @classmethod
    def load(cls, name_or_path: str | os.PathLike | WorldModel, seed: int = 0, dtype: str = "float32") -> WorldModel:
        """The one loader behind every `--model`: a WorldModel (returned as is), a bundled name, a checkpoint
        directory, or a preset name ('tiny', 'small', …: a freshly initialised, untrained model; meta says so).
        `dtype`: the default precision of its sessions and scoring (see `from_pretrained`)."""
        if isinstance(name_or_path, WorldModel):
            return name_or_path
        name = str(name_or_path)
        if Path(name).exists() or name in bundled_models():
            return cls.from_pretrained(name_or_path, dtype)
        if name in PRESETS:
            return cls.from_config(name, seed=seed, dtype=dtype)
        if os.sep not in name and (os.altsep or os.sep) not in name:
            raise CheckpointError(f"no checkpoint directory, bundled model or preset named {name!r}."
                                  f"{suggest(name, [*bundled_models(), *PRESETS])} Fix: pass a directory written by "
                                  f"WorldModel.save, a bundled model ({', '.join(bundled_models()) or 'none'}) or a "
                                  f"preset ({', '.join(PRESETS)}; untrained).")
        return cls.from_pretrained(name_or_path, dtype)  # a missing directory: CheckpointError naming the path

    def resolve_dtype(self, dtype: str | None = None) -> str:
        """'float32' or 'bfloat16' for `dtype` (None: the model's own). 'auto' times this model's deep-block Jacobi
        pass (a batch of 16 frames' slots over a one-frame context) in both precisions on this machine, once, and
        takes bfloat16 only where that pass is at least 1.5× faster; the choice is logged."""
        return resolve(dtype or self.dtype, self._pass_seconds, key=("pass", id(self), self.net.device.type))

    @torch.no_grad()
    def _pass_seconds(self, dtype: str, batch: int = 16, reps: int = 3) -> float:
        net, cfg = self.net, self.config
        frames = torch.zeros(batch, 1, cfg.height, cfg.width, 3, dtype=torch.uint8)
        state = net.new_state(net.prompt_embeddings([None] * batch))
        u = net(net.encode_frames(frames), net.frame_conditions(None, batch, 1, 0), state).u  # (B, 1, N, D)
        slots = net.deep.segment_inputs(u, net.null_action.expand(batch, -1)[:, None])[:, 0]
        best = float("inf")
        for _ in range(reps + 1):  # the first run warms up
            t = time.perf_counter()
            with compute(dtype, net.device.type):
                net.deep.frame_params(state, slots, 0, commit=False)
            best = min(best, time.perf_counter() - t)
        return best

    @property
    def trained(self) -> bool:
        """False for a model made from a config (untrained weights)."""
        return self.meta.get("trained", True) is not False

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, dtype: str = "float32") -> WorldModel:
        """Load a bundled model by name (e.g. 'pushworld-64') or a checkpoint directory. `dtype` sets the default
        precision of its sessions and scoring ('float32', 'bfloat16' or 'auto'; see `worldsim.precision`)."""
        path = Path(name_or_path)
        if not path.exists() and isinstance(name_or_path, str) and os.sep not in name_or_path:
            if name_or_path not in bundled_models():
                raise CheckpointError(
                    f"no bundled model or checkpoint directory named {name_or_path!r}; bundled models: "
                    f"{bundled_models() or 'none'}.{suggest(name_or_path, bundled_models())} "
                    "Fix: pass a bundled name or the path of a directory written by WorldModel.save (WorldModel.load "
                    f"also takes a preset name: {', '.join(PRESETS)}; untrained)."
                )
            path = PRETRAINED_DIR / name_or_path
        config, state, meta = load_checkpoint(path)
        net = FlowNet(config)
        load_weights(net, state, str(path))
        return cls(net, meta, dtype)

    def to(self, device: str | torch.device) -> WorldModel:
        """Move the model to a device ('cpu', 'cuda', …); sessions and scoring follow it."""
        self.net.to(device)
        return self

    def save(self, path: str | os.PathLike, half: bool = False) -> Path:
        """Write config.json, model.safetensors and meta.json into the directory `path` (atomically)."""
        return save_checkpoint(path, self.config, self.net.state_dict(), self.meta, half=half)

    # ----- likelihood ---------------------------------------------------------------------------------------
    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The text actions the model knows (empty for a vector-action model)."""
        return self.config.actions

    @property
    def action_spec(self) -> ActionSpec:
        """What this model's actions are: text phrases or bounded vectors (`ActionSpec`)."""
        return self.config.action_spec

    def _clips(self, clip: np.ndarray, actions, prompt, strict_actions: bool):
        clip = check_frames(clip, self.config.height, self.config.width, "clip")
        batched = clip.ndim == 5
        clips = clip if batched else clip[None]
        b, t = clips.shape[:2]
        if t == 0:
            raise InvalidFrames("clip has no frames (shape (0, H, W, 3)); score needs at least one frame.")
        if b * t > MAX_SCORE_FRAMES:
            raise InvalidFrames(
                f"clip has {b * t} frames; score takes at most {MAX_SCORE_FRAMES} per call (memory grows with the "
                "frames scored). Fix: score it in parts of at most that many frames, each part starting with the "
                "last frames of the one before as context.")
        rows: list[list[Any]]  # B lists of T-1 actions (None: no action)
        if actions is None:
            rows = [[None] * (t - 1) for _ in range(b)]
        else:
            rows = actions if batched else [actions]
            if batched and len(rows) != b:
                raise InvalidAction(
                    f"actions, one list per clip: received {len(rows)} lists for a batch of {b} clips. "
                    "Fix: pass actions=[[...], ...] with one list of T-1 actions per clip."
                )
            spec = self.action_spec
            for row in rows:
                check_action_count(row, t)
            rows = [[spec.check(a, strict_actions, "actions") for a in row] for row in rows]
        prompts = list(prompt) if isinstance(prompt, (list, tuple)) else [prompt] * b
        return clips, rows, prompts, batched

    @torch.no_grad()
    def score(self, clip: np.ndarray, actions: Sequence | None = None, prompt: str | list[str] | None = None,
              noise_draws: int = 0, seed: int = 0, progress: bool = False, strict_actions: bool = True,
              dtype: str | None = None) -> ScoreReport:
        """Exact per-frame log-likelihood of a clip in one parallel pass.

        Args:
            clip: uint8 (T, H, W, 3) or (B, T, H, W, 3).
            actions: T-1 actions (or B lists): phrases for a text model, float arrays (d,) (or a (T-1, d) array)
                for a vector model; None scores without actions (null embedding).
            prompt: an optional scene prompt (or B prompts).
            noise_draws: 0 (default) evaluates the density at the clean tokens, deterministic; k > 0 averages
                the log-likelihood over k seeded draws of the training noise σ.
            progress: a tqdm bar over the model's time windows (shown only when stderr is a terminal).
            strict_actions: refuse text actions outside the vocabulary (False: free text is encoded).
            dtype: precision of the pass (None: the model's `dtype`); 'bfloat16' runs the matrix products in bf16
                (the log-determinants and sums stay float32): faster, and close to float32's likelihoods
                (`worldsim bench` reports the largest |Δ bits/dim| on real clips).
        Clips of more than MAX_SCORE_FRAMES frames in all are refused (InvalidFrames); score them in parts.
        """
        if not isinstance(noise_draws, int) or isinstance(noise_draws, bool) or noise_draws < 0:
            raise ConfigError(f"noise_draws must be an int ≥ 0 (0: the clean tokens); received {noise_draws!r}.")
        clips, rows, prompts, batched = self._clips(clip, actions, prompt, strict_actions)
        net = self.net
        b, t = clips.shape[:2]
        x = net.encode_frames(torch.from_numpy(np.ascontiguousarray(clips)))
        cond = net.frame_conditions(net.action_embeddings(rows) if t > 1 else None, b, t, 0)
        prompt_emb = net.prompt_embeddings(prompts)
        gen = torch.Generator().manual_seed(seed)
        draws = [x] if noise_draws <= 0 else [
            x + self.config.noise_std * net.noise(x.shape, gen) for _ in range(noise_draws)]
        lp_draws: list[torch.Tensor] = []
        tok_draws: list[torch.Tensor] = []
        for xi in draws:
            with compute(self.resolve_dtype(dtype), x.device.type):
                lp_i, tok_i = self._score_windows(xi, cond, prompt_emb, progress)
            lp_draws.append(lp_i.float())
            tok_draws.append(tok_i.float())
        lp = torch.stack(lp_draws).mean(0).cpu().numpy()
        tok = torch.stack(tok_draws).mean(0).cpu().numpy()
        bpd = -lp / (net.dims_per_frame * LN2)
        if not batched:
            lp, bpd, tok = lp[0], bpd[0], tok[0]
        calibration = self.calibration  # judge and surprise_z work on (…, T) and (…, N): batched or not
        verdict = None if calibration is None else judge(bpd, calibration, with_actions=actions is not None)
        surprise = surprise_z(tok, calibration).reshape(*tok.shape[:-1], *self.config.grid)
        return ScoreReport(lp, bpd, tok, self.config.likelihood_space, net.dims_per_frame, max(noise_draws, 0),
                           surprise, "nats" if calibration is None else "z", verdict)

    @property
    def calibration(self) -> Calibration | None:
        """The reference distribution of real frames' scores stored in meta.json (None when uncalibrated)."""
        data = self.meta.get(META_KEY)
        return None if data is None else Calibration.from_meta(data, self.config.tokens_per_frame)

    def _score_windows(self, x: torch.Tensor, cond: torch.Tensor, prompt: torch.Tensor,
                       progress: bool = False) -> tuple[torch.Tensor, ...]:
        """One causal pass over a clip in chunks of `window` frames on top of the KV cache: memory and cost stay
        bounded for long clips, and the numbers equal a single pass (frames see the same sliding window)."""
        from tqdm import tqdm

        net, w = self.net, self.config.deep.window
        state = net.new_state(prompt, frames_hint=w)
        starts = range(0, x.shape[1], w)
        bar = tqdm(starts, desc="score", unit="window", leave=False, disable=not (progress and sys.stderr.isatty()))
        outs = [net(x[:, a : a + w], cond[:, a : a + w], state) for a in bar]
        return torch.cat([o.log_prob for o in outs], 1), torch.cat([o.token_log_prob for o in outs], 1)

    def counterfactual(self, clip: np.ndarray, actions: Sequence, new_actions: Sequence, from_step: int,
                       prompt: str | None = None, new_prompt: str | None = None) -> np.ndarray:
        """Replay a recorded clip's exact noise under other actions from `from_step` on ("what if?").

        See `worldsim.counterfactual.counterfactual`; returns uint8 (T, H, W, 3)."""
        return counterfactual(self, clip, actions, new_actions, from_step, prompt, new_prompt)

    @property
    def sampling_defaults(self) -> dict[str, Any]:
        """Session settings the checkpoint recommends (meta.json "sampling", e.g. {"temperature": 0.5}, chosen by
        `worldsim eval`); arguments to `session(...)` override them."""
        return dict(self.meta.get(SAMPLING_KEY) or {})

    def session(self, seed: int = 0, batch_size: int = 1, sampler: str = "jacobi", **settings: Any):
        """A stateful session (see `worldsim.session.Session` for the settings; unset ones take the checkpoint's
        `sampling_defaults`)."""
        return Session(self, seed=seed, batch_size=batch_size, sampler=sampler,
                       **{"dtype": self.dtype, **self.sampling_defaults, **settings})

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.net.parameters())
        return (f"WorldModel({self.config.name!r}, {self.config.height}×{self.config.width}, "
                f"{n / 1e6:.2f}M params, likelihood over {self.config.likelihood_space})")
