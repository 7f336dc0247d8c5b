"""`worldsim train`: codec first (then frozen), then the flow, denoiser and heads; resumable, distributed.

Every step draws its data and noise from generators seeded by (seed, step, rank), so an interrupted run that
resumes from a checkpoint follows exactly the trajectory it would have followed uninterrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import ModelConfig, preset
from .dataset import Dataset
from .denoise import fsm_loss
from .errors import WorldSimError
from .fit import codec_mse, train_codec
from .model.flow import FlowNet
from .objectives import Batch, flow_forward, heads_loss, nll_loss
from .optim import EMA, adamw, lr_at
from .train_state import (
    NothingToResume,
    StopSignals,
    TrainingStopped,
    find_state,
    load_state,
    plot_metrics,
    save_state,
    trim_metrics,
)
from .world_model import SAMPLING_KEY, WorldModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 20_000
    batch: int = 8
    frames: int = 12  # frames per training window
    lr: float = 5e-4
    denoiser_lr: float = 1e-3
    warmup: int = 500
    clip: float = 1.0
    ema: float = 0.999
    codec_steps: int = 4000
    codec_batch: int = 16
    codec_lr: float = 3e-3
    start_fraction: float = 0.2  # share of windows taken from an episode's start (they get the caption prompt)
    holdout: float = 0.05
    checkpoint_every_s: float = 300.0
    seed: int = 0
    bf16: bool = False
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", …
    init_from: str | None = None  # warm start: a model name or checkpoint directory (skips the codec phase)


class TrainStep(nn.Module):
    """The whole training loss as one module call (so DistributedDataParallel sees every parameter use)."""

    def __init__(self, net: FlowNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, batch: Batch, gen: torch.Generator, t_fsm: int) -> tuple[torch.Tensor, dict[str, float]]:
        out, x = flow_forward(self.net, batch, gen)
        nll, bpd = nll_loss(out, self.net.dims_per_frame)
        heads = heads_loss(self.net, out, batch)
        loss = nll + heads
        logs = {"bpd": float(bpd), "heads": float(heads.detach())}
        if self.net.denoiser is not None:
            b, t = batch.frames.shape[:2]
            cond = self.net.frame_conditions(self.net.action_embeddings(batch.actions), b, t, 0)
            prompt = self.net.prompt_embeddings(batch.prompts).detach()
            fsm = fsm_loss(self.net, x.detach(), cond.detach(), prompt, t_fsm)
            loss = loss + fsm
            logs["fsm"] = float(fsm.detach())
        return loss, logs


def sample_batch(data: Dataset, episodes: list[int], s: TrainSettings, rng: np.random.Generator) -> Batch:
    """Random windows; a share of them start at frame 0 of their episode and carry its caption as prompt."""
    w = data.sample_windows(s.batch, s.frames, rng, episodes)
    frames, starts = w.frames.copy(), w.starts.copy()
    actions, rewards, term = [list(a) for a in w.actions], w.rewards.copy(), w.terminated.copy()
    for i in np.flatnonzero(rng.random(s.batch) < s.start_fraction):
        ep = data.episode(int(w.episodes[i]))
        frames[i], actions[i] = ep.frames[: s.frames], list(ep.actions[: s.frames - 1])
        rewards[i], term[i], starts[i] = ep.rewards[: s.frames - 1], ep.terminated[: s.frames - 1], 0
    prompts = [c if st == 0 and c else None for c, st in zip(w.captions, starts, strict=True)]
    return Batch(torch.from_numpy(frames), actions, prompts, torch.from_numpy(rewards), torch.from_numpy(term))


def _dist(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises torch.distributed under torchrun (gloo on CPU, NCCL on GPU).

    With CUDA each process takes the GPU of its LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return (torch.distributed.get_rank() if world > 1 else 0), world, dev


def ranks_in_sync(net: nn.Module) -> bool:
    """True when every rank holds bit-identical weights (checked through an all-gather of checksums)."""
    flat = torch.cat([p.detach().double().flatten() for p in net.parameters()])
    index = torch.arange(len(flat), dtype=torch.float64, device=flat.device)
    sums = torch.stack([flat.sum(), flat.abs().sum(), (flat * index).sum()])
    gathered = [torch.zeros_like(sums) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, sums)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def held_out_bpd(net: FlowNet, data: Dataset, episodes: list[int], s: TrainSettings, n: int = 16) -> float:
    """Bits/dim of `n` fixed windows of the held-out episodes; the windows are shortened to the longest held-out
    episode when it is shorter than the training clips (small datasets), so a checkpoint never fails on it."""
    lengths = data.episode_lengths
    longest = max((lengths[i] for i in episodes), default=0)
    if longest < 2:
        return float("nan")
    batch = sample_batch(data, episodes, replace(s, batch=n, frames=min(s.frames, longest)),
                         np.random.default_rng(12345))
    net.eval()
    with torch.no_grad():
        out, _ = flow_forward(net, batch, torch.Generator().manual_seed(0), train=False)
    net.train()
    return float(nll_loss(out, net.dims_per_frame)[1])


def warm_start(net: FlowNet, config: ModelConfig, source: str) -> dict:
    """Load the weights of a model (bundled name or checkpoint directory) into `net`; configs must agree.
    Returns the session settings the source recommends (meta.json "sampling"), which the new model inherits."""
    src = WorldModel.from_pretrained(source)
    theirs, ours = src.config.model_dump(), config.model_dump()
    diff = sorted(k for k in ours if k != "name" and theirs.get(k) != ours[k])
    if diff:
        raise WorldSimError(f"init_from {source!r}: its config differs from the one being trained in {diff} "
                            f"(theirs {[theirs.get(k) for k in diff]}, ours {[ours[k] for k in diff]}). "
                            "Fix: train with the same preset/config and a dataset with the same actions and fps.")
    net.load_state_dict(src.net.state_dict())
    return src.sampling_defaults


def _steps_for_budget(step: int, rate: float, budget_s: float, spent_s: float) -> int:
    """Total steps that end the schedule when `budget_s` seconds (counted from the start of `train`) are up."""
    return step + max(1, int(rate * max(0.0, budget_s - spent_s)))


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on any rank, so that every rank stops after the same step."""
    t = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: ModelConfig, s: TrainSettings,
          resume: bool = False, progress: bool = True, stop_after_s: float | None = None,
          until: int | None = None, budget_s: float | None = None, start_if_no_state: bool = False) -> Path:
    """Train and return the path of the EMA model checkpoint (`out/model`).

    resume: continue from `out/state` at the step it saved (metrics.jsonl loses the rows logged after it); without
    saved state this raises NothingToResume, unless start_if_no_state (then the run starts fresh). A fresh run
    starts metrics.jsonl afresh.
    stop_after_s / until: stop early (with a checkpoint) after that many seconds / at that step; the schedule
    still follows `s.steps`, so a later `resume` continues the same trajectory.
    budget_s: size the schedule to a wall-clock budget instead: after 40 steps the measured speed sets
    `s.steps` so that the cosine decay ends when the budget is spent (the meta records the steps chosen).

    SIGINT and SIGTERM (when called in the main thread): the current step finishes, the state and model are saved,
    and TrainingStopped (a KeyboardInterrupt) is raised; during the codec phase nothing is saved. A second signal
    interrupts at once, keeping the last checkpoint. The previous signal handlers are restored on return.
    """
    with StopSignals() as stops:
        return _train(data_dir, out_dir, config, s, resume, progress, stop_after_s, until, budget_s,
                      start_if_no_state, stops)


def _train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: ModelConfig, s: TrainSettings,
           resume: bool, progress: bool, stop_after_s: float | None, until: int | None, budget_s: float | None,
           start_if_no_state: bool, stops: StopSignals) -> Path:
    from tqdm import tqdm

    out = Path(out_dir)
    state_dir = find_state(out)
    if resume and state_dir is None and not start_if_no_state:
        raise NothingToResume(
            f"resume: {str(out)!r} holds no saved training state ({out / 'state'} is missing), so there is nothing "
            "to continue. Fix: leave out --resume to start fresh, or pass --resume-or-start to continue when "
            "there is state and start fresh otherwise."
        )
    if not resume and state_dir is not None:
        logger.warning("%s holds an earlier run's state: this run starts over (metrics.jsonl too) and replaces it "
                       "at its first checkpoint; --resume would continue it", state_dir)
    state_dir = state_dir if resume else None
    rank, world, device = _dist(s.device)
    data = Dataset(data_dir)
    if data.frame_size != (config.height, config.width):
        raise WorldSimError(f"dataset {data_dir} has {data.frame_size[0]}×{data.frame_size[1]} frames but the "
                            f"config expects {config.height}×{config.width}; record at the config's size.")
    if not data.has_actions:
        raise WorldSimError(f"dataset {data_dir} has no actions (single-frame episodes only); record episodes of "
                            "two frames or more.")
    config = config.merged(action_spec=data.action_spec.model_dump(), fps=int(round(data.fps)))
    train_eps, held_eps = data.split(s.holdout, seed=s.seed)
    if s.frames <= config.deep.window and rank == 0:
        logger.warning("training clips of %d frames never fill the %d-frame attention window with a sliding one; "
                       "long rollouts drift (pushworld-64: 16-step error 5.7 px with 8-frame clips, 2.7 px with "
                       "16). Use --frames %d or more.", s.frames, config.deep.window, 2 * config.deep.window)
    torch.manual_seed(s.seed)
    net = FlowNet(config)
    codec_done, step, ema_state, opt_state = False, 0, None, None
    meta: dict[str, Any] = {}
    if state_dir is not None:
        net_state, ema_state, opt_state, meta = load_state(state_dir, net)
        step, codec_done = int(meta["step"]), bool(meta["codec_done"])
        logger.info("resumed from %s at step %d", state_dir, step)
    elif resume:
        logger.warning("no saved state in %s: starting fresh (--resume-or-start)", out)
    if state_dir is None and s.init_from:
        sampling = warm_start(net, config, s.init_from)
        if sampling:
            meta[SAMPLING_KEY] = sampling
        codec_done = True
        logger.info("warm start from %s", s.init_from)
    net.to(device)
    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        dropped = trim_metrics(out / "metrics.jsonl", step if state_dir is not None else None)
        if dropped:
            logger.info("metrics.jsonl: dropped %d rows logged after the state this run starts from", dropped)
    metrics = (out / "metrics.jsonl").open("a") if rank == 0 else None

    def log(row: dict) -> None:
        if metrics is not None:
            metrics.write(json.dumps({**row, "time": time.time()}) + "\n")
            metrics.flush()

    new_codec = not codec_done and net.codec.trainable
    if new_codec:
        frames = np.concatenate([data.episode(i).frames for i in train_eps[:400]])
        done = train_codec(net, frames, s.codec_steps, s.codec_batch, s.codec_lr, s.seed,
                           progress=progress and rank == 0 and sys.stderr.isatty(),
                           stop=lambda: stops.requested,
                           log=lambda i, loss: log({"codec_step": i, "codec_loss": loss}) if i % 25 == 0 else None)
        if stops.signum is not None:
            if metrics is not None:
                metrics.close()
            raise TrainingStopped(stops.signum, f"stopped by {stops.name} in the codec phase (step {len(done)} of "
                                                f"{s.codec_steps}): nothing saved, the codec phase is not resumable; "
                                                "the next run starts over (--resume-or-start does so)")
        held = np.concatenate([data.episode(i).frames[:50] for i in held_eps[:20]]) if held_eps else frames[:500]
        meta["codec_mse"] = codec_mse(net, held)
        meta["codec_mse_noisy"] = codec_mse(net, held, noisy=True)
        log({"codec_mse": meta["codec_mse"], "codec_mse_noisy": meta["codec_mse_noisy"]})
    codec_done = True
    for p in net.codec.parameters():
        p.requires_grad_(False)
    flow_params = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("denoiser.")]
    den_params = [p for n, p in net.named_parameters() if n.startswith("denoiser.")]
    opt = adamw(flow_params, s.lr)
    if den_params:
        opt.add_param_group({"params": den_params, "lr": s.denoiser_lr, "weight_decay": 1e-4})
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    ema = EMA(net, s.ema)
    if ema_state is not None:
        ema.shadow = {k: v.to(device) for k, v in ema_state.items()}
    step_fn: nn.Module = TrainStep(net)
    if world > 1:
        step_fn = nn.parallel.DistributedDataParallel(
            step_fn, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    last_ckpt, t0, done_at_start, saved_at = time.time(), time.time(), step, None
    bar = tqdm(total=s.steps, initial=step, desc="flow", disable=not progress or rank != 0 or not sys.stderr.isatty())
    net.train()

    def checkpoint() -> None:
        nonlocal saved_at
        in_sync = ranks_in_sync(net) if world > 1 else True
        if not in_sync:
            raise WorldSimError(f"distributed ranks hold different weights at step {step}; check that every "
                                "process runs the same code and config (torchrun --nproc_per_node N ...).")
        if rank != 0:
            saved_at = step
            return
        meta_now = {**meta, "step": step, "codec_done": codec_done, "settings": s.__dict__, "ranks_in_sync": in_sync,
                    "wall_time_s": meta.get("wall_time_s", 0.0) + time.time() - t_start, "world_size": world,
                    "data": str(data_dir), "episodes": len(data), "held_out_bpd": held_out_bpd(net, data, held_eps, s)}
        env_id = (data.manifest.get("source") or {}).get("env_id")
        if env_id:  # the world the model learned: its env gives first frames, eval and the demo their real world
            meta_now["env_id"] = str(env_id)
        save_state(out / "state", net, ema.shadow, opt, meta_now)
        model = WorldModel(FlowNet(config), meta={"trained": True, **meta_now})
        model.net.load_state_dict({**net.state_dict(), **ema.shadow})
        model.save(out / "model")
        plot_metrics(out / "metrics.jsonl", out / "loss.png")
        saved_at = step

    if new_codec:
        checkpoint()  # the codec is done: a restart from here skips it
    # (first step timed, step that sets the schedule, the budget it fills)
    probe = (done_at_start + 10, done_at_start + 40, budget_s) if budget_s is not None else None

    def step_inputs(i: int) -> tuple[torch.Generator, Batch, int]:
        """Noise generator, batch and FSM frame of step i, all drawn from a generator seeded by (seed, i, rank)."""
        rng = np.random.default_rng([s.seed, i, rank])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return gen, sample_batch(data, train_eps, s, rng), int(rng.integers(1, s.frames))

    prefetch = ThreadPoolExecutor(1)  # the next batch is drawn while this step computes
    pending = prefetch.submit(step_inputs, step)
    in_update = False  # from the optimiser step to the metrics row: a step half done must not be saved
    try:
        while step < s.steps:
            if probe is not None and step == probe[0]:
                t_probe = time.time()
            if probe is not None and step == probe[1]:
                rate = (probe[1] - probe[0]) / (time.time() - t_probe)
                s = replace(s, steps=_steps_for_budget(step, rate, probe[2], time.time() - t_start))
                bar.total, probe = s.steps, None
                logger.info("%.2f steps/s: the schedule ends at step %d", rate, s.steps)
            gen, batch, t_fsm = pending.result()
            pending = prefetch.submit(step_inputs, step + 1)
            lr = lr_at(step, s.steps, s.lr, s.warmup)
            opt.param_groups[0]["lr"] = lr
            if den_params:
                opt.param_groups[1]["lr"] = lr_at(step, s.steps, s.denoiser_lr, s.warmup)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.bf16):
                loss, logs = step_fn(batch, gen, t_fsm)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(flow_params, s.clip))
            in_update = True
            if np.isfinite(norm) and bool(torch.isfinite(loss)):
                opt.step()
                ema.update(net)
            step += 1
            rate = (step - done_at_start) / (time.time() - t0)
            log({"step": step, **logs, "lr": lr, "grad_norm": norm, "it_s": rate})
            in_update = False
            bar.update(1)
            bar.set_postfix(bpd=f"{logs['bpd']:.3f}", lr=f"{lr:.1e}")
            if time.time() - last_ckpt > s.checkpoint_every_s:
                checkpoint()
                last_ckpt = time.time()
            stop = stops.requested or (stop_after_s is not None and time.time() - t_start > stop_after_s)
            if (_any_rank(stop, device) if world > 1 else stop) or step == until:
                break
    finally:
        prefetch.shutdown(cancel_futures=True)
        if in_update:
            logger.warning("interrupted in the middle of a step's update: %s keeps the state saved at step %s",
                           out / "state", saved_at)
        elif saved_at != step:
            checkpoint()
        bar.close()
        if metrics is not None:
            metrics.close()
    if stops.signum is not None and step < s.steps:
        raise TrainingStopped(stops.signum, f"stopped by {stops.name} at step {step} of {s.steps}: state saved in "
                                            f"{out / 'state'}, model in {out / 'model'}; --resume continues it")
    return out / "model"


def _decay(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a decay in [0, 1), got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset directory (worldsim record)")
    p.add_argument("--out", required=True, help="output directory: model/, state/, metrics.jsonl, loss.png")
    p.add_argument("--preset", default="small", help="model preset (tiny, tiny-latent, small)")
    p.add_argument("--config", help="JSON file of config overrides merged into the preset")
    p.add_argument("--steps", type=int, default=TrainSettings.steps, help="total flow steps")
    p.add_argument("--batch", type=int, default=TrainSettings.batch, help="clips per step (per process)")
    p.add_argument("--frames", type=int, default=TrainSettings.frames, help="frames per training window")
    p.add_argument("--lr", type=float, default=TrainSettings.lr, help="peak learning rate of the flow")
    p.add_argument("--warmup", type=int, default=TrainSettings.warmup, help="warm-up steps")
    p.add_argument("--codec-steps", type=int, default=TrainSettings.codec_steps, help="latent codec steps")
    p.add_argument("--checkpoint-every", type=float, default=TrainSettings.checkpoint_every_s, help="seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of data order, noise and initialisation")
    p.add_argument("--ema", type=_decay, default=TrainSettings.ema,
                   help="EMA decay of the sampling weights; it averages over about 1/(1-decay) steps, so a short "
                        "fine-tuning leg (a few hundred steps) wants 0.99")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (affine math stays float32)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue from OUT/state at the step it saved (metrics.jsonl keeps one row per step); "
                             "an error when OUT holds no saved state")
    resume.add_argument("--resume-or-start", action="store_true",
                        help="continue from OUT/state when there is one, else start fresh: for jobs a scheduler "
                             "restarts with the same command")
    p.add_argument("--init-from", help="warm start from a model name or checkpoint directory (same config)")
    p.add_argument("--budget-minutes", type=float,
                   help="fit the schedule to this wall-clock budget (the speed is measured after 40 steps)")
    p.add_argument("--stop-after", type=float, help="stop (with a checkpoint) after this many seconds")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.epilog = STOP_NOTE


STOP_NOTE = ("SIGINT (Ctrl-C) or SIGTERM: the current step finishes, OUT/state and OUT/model are saved, and the "
             "command exits 130 (SIGINT) or 143 (SIGTERM); --resume then continues from that step. A second signal "
             "stops at once, keeping the last checkpoint. During the codec phase a stop saves nothing.")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = preset(args.preset)
    if args.config:
        cfg = cfg.merged(**json.loads(Path(args.config).read_text()))
    s = TrainSettings(steps=args.steps, batch=args.batch, frames=args.frames, lr=args.lr, warmup=args.warmup,
                      codec_steps=args.codec_steps, checkpoint_every_s=args.checkpoint_every, seed=args.seed,
                      bf16=args.bf16, device=args.device, init_from=args.init_from, ema=args.ema)
    budget = args.budget_minutes * 60 if args.budget_minutes else None
    try:
        path = train(args.data, args.out, cfg, s, resume=args.resume or args.resume_or_start,
                     start_if_no_state=args.resume_or_start, stop_after_s=args.stop_after, budget_s=budget)
    except TrainingStopped as stop:
        print(stop, file=sys.stderr)
        return 128 + stop.signum  # the shell's code for death by that signal: a scheduler sees the run did not end
    print(f"model written to {path}")
    return 0
