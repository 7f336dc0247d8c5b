"""`Tracks`: what the gateway keeps beside a session: its timeline and its judge, in step with its frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worldsim.plausibility import Calibration
from worldsim.session import Session
from worldsim.world_model import WorldModel

from .judge import Judge, history_actions
from .timeline import Timeline


@dataclass
class Tracks:
    """A session's timeline (`timeline`: (every, keep), from `create` with `timeline: true`) and judge (a
    `calibration`, from `judge: true` on a calibrated model); both are made at each reset."""

    model: WorldModel
    calibration: Calibration | None
    timeline_every_keep: tuple[int, int] | None
    timeline: Timeline | None = None
    judge: Judge | None = None
    frames: int = 0  # the session's frames these tracks have followed
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # of the frames the last op added

    def restart(self, session: Session, prompt: str | None) -> None:
        self.frames = len(session.frames)
        if self.timeline_every_keep is not None:
            self.timeline = Timeline(session, *self.timeline_every_keep)
        self.judge, self.verdicts = None, []
        if self.calibration is not None:
            self.judge = Judge(self.model, self.calibration, prompt)
            self.verdicts = self.judge.add(session.history, history_actions(session.actions, self.frames))

    def advance(self, session: Session, kind: str) -> None:
        """After a `step` or `observe` added one frame."""
        self.frames += 1
        if self.timeline is not None:
            self.timeline.record(session, kind)
        if self.judge is not None:
            self.verdicts = self.judge.add(session.frames[-1], [session.actions[-1][0]])  # (1, H, W, 3)

    def branch(self, child: Session, n: int) -> Tracks:
        """The tracks of `child`, a fork of this session when it held n frames."""
        out = Tracks(self.model, self.calibration, self.timeline_every_keep, frames=len(child.frames))
        out.timeline = None if self.timeline is None else self.timeline.branch(child, n)
        if self.judge is not None and n == self.frames:
            out.judge = self.judge.clone()
        elif self.judge is not None:  # the judge as it was then: the branch's frames scored again, one causal pass
            out.judge = Judge(self.model, self.judge.calibration, self.judge.prompt)
            out.judge.add(child.history, history_actions(child.actions, n))
        return out
