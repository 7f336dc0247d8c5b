"""`Session`: the only stateful object — KV cache, generator, frame/action history — behind envs and bridges."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .actions import Action
from .denoise import denoise
from .errors import ConfigError, InvalidAction, InvalidFrames, SessionStateError
from .frames import check_action_count, check_frames
from .model.cache import DeepState, cat_rows, stack_states
from .model.flow import LN2
from .sampling import SamplerSettings, sample_best_of, sample_frame
from .settings import SessionSettings

if TYPE_CHECKING:
    from .world_model import WorldModel

Snapshot = tuple[dict[str, Any], torch.Tensor]  # opaque to callers: what `Session.restore` takes back



@dataclass
class StepResult:
    """One generated frame. With batch_size=1 the fields are unbatched; otherwise they lead with B."""

    frame: np.ndarray  # uint8 (H, W, 3) or (B, H, W, 3), the denoised frame
    log_prob: np.ndarray | float  # nats, exact log p(x̃_t | past) of the sampled (noisy) tokens
    bits_per_dim: np.ndarray | float
    reward: np.ndarray | float
    terminated: np.ndarray | bool
    info: dict[str, Any] = field(default_factory=dict)


class Session:
    """A rollout in imagination. Create with `WorldModel.session(...)`; use as a context manager.

    Args:
        seed: seeds the session's generator (sampling noise and the noise added to observed frames).
        batch_size: B parallel worlds in one forward pass; with B > 1 every call takes and returns a leading B.
        settings: a `SessionSettings` (sampler, guidance, temperature, Jacobi tol/max_iter/chunk, denoise, context,
            strict_actions, freeze_prefix, best_of, dtype); keywords in `values` build or change it, each validated.
        reward_fn: optional f(frame uint8 (H, W, 3), action) -> float replacing the reward head.
        batched: with batch_size 1, still take and return a leading batch axis of 1 (as batch_size > 1 does), for
            code written for any B (the vector env with num_envs=1).
    """

    def __init__(self, model: WorldModel, seed: int = 0, batch_size: int = 1,
                 settings: SessionSettings | None = None,
                 reward_fn: Callable[[np.ndarray, Any], float] | None = None, batched: bool = False,
                 **values: Any) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int ≥ 1; received {batch_size!r}.")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed must be an int; received {type(seed).__name__} {seed!r}.")
        base = settings if settings is not None else SessionSettings()
        self.settings: SessionSettings = base.replace(**values) if values else base
        self.model, self.net, self.cfg = model, model.net, model.config
        low = model.resolve_dtype(self.settings.dtype) == "bfloat16"
        self.sampling: SamplerSettings = self.settings.sampler_settings(low_precision=low)
        self.batch_size = batch_size
        self.batched = bool(batched) or batch_size > 1  # calls take and return a leading batch axis
        learned = self.settings.denoise == "learned" and self.net.denoiser is None
        self.denoise_mode = "tweedie" if learned else self.settings.denoise
        self.reward_fn = reward_fn
        self.generator = torch.Generator().manual_seed(int(seed))
        self.state: DeepState | None = None
        self.closed = False
        self.frames: list[np.ndarray] = []  # (B, H, W, 3) per step, as shown to the user
        self.actions: list[list[Action | None]] = []  # B actions per transition
        self._x_prev: torch.Tensor | None = None  # noisy tokens of the last frame (B, N, D)
        self._levels: list[torch.Tensor] | None = None  # local-block values of the last frame (warm start)

    # ----- helpers ------------------------------------------------------------------------------------------
    @property
    def strict_actions(self) -> bool:
        return self.settings.strict_actions

    @property
    def context(self) -> str:
        return self.settings.context

    @property
    def best_of(self) -> int:
        return self.settings.best_of

    @property
    def single(self) -> bool:
        """One world without a batch axis: calls take and return unbatched values (batch_size 1, not `batched`)."""
        return not self.batched

    @property
    def guided(self) -> bool:
        return self.sampling.guidance > 0

    def _check_open(self, need_reset: bool) -> None:
        if self.closed:
            raise SessionStateError("this session is closed; open a new one with WorldModel.session(...).")
        if need_reset:
            self._context()

    def _context(self) -> DeepState:
        """The deep block's state; SessionStateError before the first reset."""
        if self.state is None:
            raise SessionStateError(
                "step/observe called before reset; call session.reset(frames=...) or reset(prompt=...) first."
            )
        return self.state

    def _batch(self, value: Any, what: str) -> list:
        if self.single:
            return [value]
        if isinstance(value, np.ndarray) and self.model.action_spec.is_vector and value.ndim == 2:
            value = list(value)  # (B, d) vector actions
        if not isinstance(value, (list, tuple)) or len(value) != self.batch_size:
            got = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
            raise InvalidAction(f"{what}: this session has batch_size={self.batch_size}; expected a list of "
                                f"{self.batch_size} values, received {got}.")
        return list(value)

    def _unbatch(self, x: np.ndarray) -> Any:
        return x[0].item() if self.single and x.ndim == 1 else (x[0] if self.single else x)

    def _cond(self, actions: Sequence[Action | None]) -> torch.Tensor:
        """Action embeddings (B, d), doubled to [cond; null] (2B, d) when guided."""
        emb = self.net.action_embeddings([[a] for a in actions])[:, 0]
        if self.guided:
            emb = torch.cat([emb, self.net.null_action.expand_as(emb)])
        return emb

    def _dup(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x]) if self.guided else x

    def _actions(self, action: Any, what: str = "action") -> list[Action]:
        """B checked actions: phrases (strict: from the vocabulary) or float32 (d,) vectors in the spec's box."""
        spec = self.model.action_spec
        return [spec.check(a, self.strict_actions, what) for a in self._batch(action, what)]

    # ----- public API ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def reset(self, frames: np.ndarray | None = None, prompt: str | Sequence[str | None] | None = None,
              actions: Sequence | None = None) -> np.ndarray:
        """Start a rollout from real frames (uint8 (t0, H, W, 3), or (B, t0, H, W, 3)), or imagine frame 0 from a
        text prompt (with batch_size B, a list of B, None for a world without one). `actions` optionally gives the
        t0-1 actions between the given frames. Returns the last frame."""
        self._check_open(need_reset=False)
        if frames is None and prompt is None:
            raise SessionStateError("reset needs frames=... (real first frames) or prompt=... (imagine frame 0).")
        prompts = self._batch(prompt, "prompt") if prompt is not None else [None] * self.batch_size
        emb = self.net.prompt_embeddings(prompts)
        if self.guided:
            emb = torch.cat([emb, self.net.text.null_prompt.expand_as(emb)])
        self.state = self.net.new_state(emb, frames_hint=self.cfg.deep.window)
        self.frames, self.actions, self._x_prev, self._levels = [], [], None, None
        if frames is None:
            start = self.net.deep.start.expand(self.batch_size * (2 if self.guided else 1), -1)
            self._generate(start, [None] * self.batch_size, record_action=False)
            return self._unbatch(self.frames[-1])
        layout = (4,) if self.single else (5,)
        frames = check_frames(frames, self.cfg.height, self.cfg.width, "frames", ndim=layout)
        clips = frames[None] if self.single else frames
        if clips.shape[1] == 0:
            raise InvalidFrames(f"reset received frames of shape {frames.shape}, with no frames; expected at least "
                                "one real frame (or reset(prompt=...) to imagine frame 0).")
        if actions is not None:
            check_action_count(actions, clips.shape[1], "actions between the reset frames")
        acts = actions if actions is not None else [None if self.single else [None] * self.batch_size
                                                     for _ in range(clips.shape[1] - 1)]
        spec = self.model.action_spec
        for i in range(clips.shape[1]):
            step = None if i == 0 else [None if a is None else spec.check(a, self.strict_actions, "actions")
                                        for a in self._batch(acts[i - 1], "actions")]
            self._observe(clips[:, i], step, first=i == 0)
        return self._unbatch(self.frames[-1])

    @torch.no_grad()
    def step(self, action: Action | Sequence[Action]) -> StepResult:
        """Imagine the next frame after `action`: a phrase (text model) or a float array (d,) (vector model); with
        batch_size B, a list of B of them (or a (B, d) array)."""
        self._check_open(need_reset=True)
        acts = self._actions(action)
        return self._generate(self._cond(acts), acts, record_action=True)

    @torch.no_grad()
    def observe(self, frame: np.ndarray, action: str | Sequence[str] | None = None) -> np.ndarray | float:
        """Condition on a real frame (uint8 (H, W, 3) or (B, H, W, 3)) reached by `action`; returns its
        log-likelihood (nats; of the σ-noised tokens that enter the context)."""
        self._check_open(need_reset=True)
        layout = (3,) if self.single else (4,)
        frame = check_frames(frame, self.cfg.height, self.cfg.width, "frame", ndim=layout)
        acts = self._actions(action) if action is not None else None
        return self._unbatch(self._observe(frame[None] if self.single else frame, acts, first=False))

    def fork(self, seed: int | None = None, batch_size: int | None = None) -> Session:
        """An independent copy (cache, generator, history). seed=None continues the parent's generator state.

        batch_size=K on a batch-1 session gives K copies of its world in one batched session (planners imagine
        K futures in one forward pass per step).
        """
        self._check_open(need_reset=False)
        k = batch_size or self.batch_size
        if k != self.batch_size and self.batch_size != 1:
            raise ConfigError(f"fork(batch_size={k}) needs a batch-1 session; this one has batch_size="
                              f"{self.batch_size}. Fork it per world, or keep the batch size.")
        child = Session.__new__(Session)
        child.__dict__.update(self.__dict__)
        child.generator = torch.Generator()
        if seed is None:
            child.generator.set_state(self.generator.get_state())
        else:
            child.generator.manual_seed(seed)
        rows = torch.arange(self.batch_size * (2 if self.guided else 1)).repeat_interleave(k // self.batch_size)

        def rep(t: torch.Tensor) -> torch.Tensor:
            return t[rows[: t.shape[0] * k // self.batch_size]].clone()

        child.batch_size = k
        child.batched = self.batched or k > 1
        child.state = None if self.state is None else self.state.select(rows.to(self.net.device))
        child._x_prev = None if self._x_prev is None else rep(self._x_prev)
        child._levels = None if self._levels is None else [rep(t) for t in self._levels]
        child.frames = [np.repeat(f, k // self.batch_size, axis=0) for f in self.frames]
        child.actions = [list(a) * (k // self.batch_size) for a in self.actions]
        return child

    def close(self) -> None:
        self.closed, self.state = True, None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def history(self) -> np.ndarray:
        """Frames so far: uint8 (T, H, W, 3), or (B, T, H, W, 3) with batch_size > 1."""
        h = np.stack(self.frames, axis=1)
        return h[0] if self.single else h

    # ----- internals ----------------------------------------------------------------------------------------
    def _observe(self, frame: np.ndarray, acts: Sequence[Action | None] | None, first: bool) -> np.ndarray:
        net, b = self.net, self.batch_size
        x = net.encode_frames(torch.from_numpy(np.ascontiguousarray(frame))[:, None])[:, 0]
        x = x + self.cfg.noise_std * net.noise(x.shape, self.generator)
        cond = self.net.deep.start.expand(b * (2 if self.guided else 1), -1) if first else self._cond(
            acts if acts is not None else [None] * b)
        out = net(self._dup(x)[:, None], cond[:, None], self._context())
        self._x_prev, self._levels = x, None
        self.frames.append(np.array(frame))
        if not first:
            self.actions.append(list(acts) if acts is not None else [None] * b)
        return out.log_prob[:b, 0].cpu().numpy()

    def _generate(self, cond: torch.Tensor, acts: Sequence[Action | None], record_action: bool) -> StepResult:
        net, b, s = self.net, self.batch_size, self.sampling
        k = self.best_of
        z = s.temperature * net.noise((b * k, self.cfg.tokens_per_frame, self.cfg.token_dim), self.generator)
        state = self._context()
        before = state.clone() if self.denoise_mode == "tweedie" else None
        if k > 1:
            sample, levels, kept = sample_best_of(net, state, cond, z, s, k, self._levels)
            if self.context == "sample":
                self.state = kept
        else:
            target = state if self.context == "sample" else state.clone()
            sample, levels = sample_frame(net, target, cond, z, s, self._levels)
        x_hat = denoise(net, sample.x, self._x_prev, before, cond[:b], self.denoise_mode)
        frames = net.decode_tokens(x_hat[:, None])[:, 0].cpu().numpy()
        reward, term = (t.cpu().numpy() for t in net.deep.heads(sample.h_end))
        if self.reward_fn is not None:
            reward = np.array([self.reward_fn(f, a) for f, a in zip(frames, acts, strict=True)], dtype=np.float32)
        if self.context == "sample":
            self._x_prev = sample.x
            self.frames.append(frames)
            if record_action:
                self.actions.append(list(acts))
        else:  # re-anchor: the shown frame enters the context as an observation (its latents + fresh σ noise)
            self._observe(frames, list(acts) if record_action else None, first=not record_action)
        self._levels = levels
        lp = sample.log_prob.cpu().numpy()
        bpd = -lp / (net.dims_per_frame * LN2)
        return StepResult(self._unbatch(frames), self._unbatch(lp), self._unbatch(bpd), self._unbatch(reward),
                          self._unbatch(term > 0.5), {"iterations": sample.iterations,
                                                      "likelihood_space": self.cfg.likelihood_space})

    # ----- roll-back ------------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """An opaque copy of everything a call can change (context, generator, history), for `restore`; a server
        takes one before each step and rolls the session back with it when the step fails. Costs one copy of
        the KV cache (it is changed in place: written, and compacted when old frames leave the window)."""
        saved = dict(self.__dict__)
        saved["state"] = None if self.state is None else self.state.clone()
        saved["frames"], saved["actions"] = list(self.frames), list(self.actions)
        saved["_levels"] = None if self._levels is None else list(self._levels)
        return saved, self.generator.get_state()

    def restore(self, snapshot: Snapshot) -> None:
        """Put the session back as it was when `snapshot = self.snapshot()` was taken; a snapshot can be restored
        more than once. Later steps give what they would have given from that point (same frames, same noise)."""
        saved, generator_state = snapshot
        self.__dict__.clear()
        self.__dict__.update(saved)
        self.state = None if saved["state"] is None else saved["state"].clone()
        self.frames, self.actions = list(saved["frames"]), list(saved["actions"])
        self._levels = None if saved["_levels"] is None else list(saved["_levels"])
        self.generator.set_state(generator_state)


# ----- several sessions in one pass (the bridge server's dynamic batching) ----------------------------------------
def batch_key(session: Session) -> Hashable | None:
    """Sessions with equal keys can be stepped together by `step_sessions`; None: this one cannot (closed, not
    reset, batched, a per-session reward function, the sequential sampler, whose one-token passes round differently
    in a batch, `freeze_prefix`, whose per-session commits a batched pass does not reproduce bit for bit, or
    best_of > 1). Equal keys mean the same model, settings and KV-cache layout (same number of frames so far)."""
    st = session.state
    if (session.closed or st is None or session.batch_size != 1 or session.reward_fn is not None
            or session.sampling.method != "jacobi" or session.sampling.freeze_prefix or session.best_of != 1):
        return None
    c = st.cache
    return (id(session.net), session.sampling, session.denoise_mode, session.context, session.guided,
            session._levels is None, session._x_prev is None, st.next_frame, c.length, c.total)


@torch.no_grad()
def step_sessions(sessions: Sequence[Session], actions: Sequence[Any]) -> list[StepResult]:
    """Step each `sessions[i]` with `actions[i]` in one batched pass; the results (frames, log-likelihoods, states)
    equal `sessions[i].step(actions[i])` alone: noise comes from each session's own generator and Jacobi stops per
    session (`sample_frame(per_row=True)`). One exception: small Jacobi chunks capped by `max_iter` can differ in the
    last float bits on some CPUs, whose kernels for small matrix products depend on the batch size.

    All sessions need the same `batch_key` (ConfigError otherwise). Actions are checked per session first
    (InvalidAction), before any session changes.
    """
    if not sessions or len(sessions) != len(actions):
        raise ConfigError(f"step_sessions needs one action per session; received {len(sessions)} sessions and "
                          f"{len(actions)} actions.")
    keys = {batch_key(x) for x in sessions}
    if len(keys) != 1 or None in keys:
        raise ConfigError("step_sessions needs reset batch-1 sessions with one batch_key; group them by batch_key.")
    acts = [x._actions(a)[0] for x, a in zip(sessions, actions, strict=True)]
    first, b = sessions[0], len(sessions)
    net, s, cfg = first.net, first.sampling, first.cfg
    # Rows session-major [c0, u0, c1, u1, …] → [c0, c1, …, u0, u1, …] when guided, as one guided session lays them.
    rows = torch.arange(2 * b).view(b, 2).T.reshape(-1) if first.guided else torch.arange(b)
    # Draw in the order a lone step would: the sampling noise first (context="frame" draws again in _observe).
    z = torch.cat([s.temperature * net.noise((1, cfg.tokens_per_frame, cfg.token_dim), x.generator)
                   for x in sessions])
    cond = torch.cat([x._cond([a]) for x, a in zip(sessions, acts, strict=True)])[rows]
    state = stack_states([x.state for x in sessions if x.state is not None], rows)
    levels = None if first._levels is None else [cat_rows(list(t)) for t in zip(*(x._levels or [] for x in sessions),
                                                                                  strict=True)]
    x_prev = None if first._x_prev is None else cat_rows([x._x_prev for x in sessions if x._x_prev is not None])
    sample, levels = sample_frame(net, state, cond, z, s, levels, per_row=True)
    sampled_u = state.prev_u
    assert sampled_u is not None  # sample_frame leaves the sampled frame's u there
    iters = sample.row_iterations if sample.row_iterations is not None else torch.full((b,), sample.iterations)
    if first.denoise_mode == "tweedie":  # autograd through the flow, per session on its own (unchanged) state
        x_hat = torch.cat([denoise(net, sample.x[i : i + 1], None, x.state, cond[i : i + 1], "tweedie")
                           for i, x in enumerate(sessions)])
    else:
        x_hat = denoise(net, sample.x, x_prev, None, None, first.denoise_mode)
    # Decoded one by one: the codec's convolutions round differently for a batch of frames than for one.
    frames = np.concatenate([net.decode_tokens(x_hat[i : i + 1, None])[:, 0].cpu().numpy() for i in range(b)])
    # Row by row: a (1, d) → (1, 1) head takes another float path than the (B, d) one (last-bit differences).
    heads = [net.deep.heads(h[None]) for h in sample.h_end]
    reward, term = (torch.cat(t).cpu().numpy() for t in zip(*heads, strict=True))
    lp = sample.log_prob.cpu().numpy()
    bpd = -lp / (net.dims_per_frame * LN2)
    out = []
    for i, x in enumerate(sessions):
        mine = slice(i, i + 1)
        if x.context == "sample":
            own = [i, i + b] if x.guided else [i]
            x.state = state.select(torch.tensor(own, device=net.device))
            x.state.prev_u = cat_rows([sampled_u[j : j + 1] for j in own])  # keeps the memory layout
            x._x_prev = sample.x[mine].clone()
            x.frames.append(frames[mine].copy())
            x.actions.append([acts[i]])
        else:  # re-anchor on the shown frame, as Session._generate does (its own state never saw the sample)
            x._observe(frames[mine], [acts[i]], first=False)
        x._levels = [t[mine].clone() for t in levels]
        out.append(StepResult(frames[i], float(lp[i]), float(bpd[i]), float(reward[i]), bool(term[i] > 0.5),
                              {"iterations": int(iters[i]), "likelihood_space": cfg.likelihood_space}))
    return out
