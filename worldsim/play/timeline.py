"""`Timeline`: a session as it was at any earlier frame, exactly: forks kept every few frames, the rest re-run."""

from __future__ import annotations

from typing import Any

import numpy as np

from worldsim.session import Session


class Timeline:
    """Copies (forks) of one session at some of its frames, so that the session can be had as it was when it held
    any earlier number of frames: the nearest copy at or before it is forked and the transitions after it are run
    again with the same actions, which draw the same noise and so give the same frames, bit for bit.

    A copy is taken every `every` new frames; beyond `keep` copies the one whose removal leaves the smallest gap goes.
    Copies hold no history (the session's own lists are shared back when one is used), only the model state."""

    def __init__(self, session: Session, every: int, keep: int) -> None:
        self.every, self.keep = every, max(keep, 2)
        self.first = len(session.frames)  # frames given to reset: the earliest point that can be had
        self.kinds: list[str] = []  # "step" or "observe", per frame after `first`
        self.marks: dict[int, Session] = {self.first: _bare(session)}

    def record(self, session: Session, kind: str) -> None:
        """After a `step` or `observe` of `session` succeeded (a retried request answered from the cache adds no
        frame and is ignored)."""
        n = len(session.frames)
        if n != self.first + len(self.kinds) + 1:
            return
        self.kinds.append(kind)
        if n - max(self.marks) >= self.every:
            self.marks[n] = _bare(session)
            while len(self.marks) > self.keep:
                points = sorted(self.marks)
                gaps = [(points[i + 1] - points[i - 1], points[i]) for i in range(1, len(points) - 1)]
                del self.marks[min(gaps)[1]]

    def at(self, session: Session, n: int) -> tuple[Session, int, bool]:
        """`session` as it was when it held `n` frames, as a new session: (it, frames re-run, whether they equal
        the history bit for bit)."""
        start = max(k for k in self.marks if k <= n)
        s = self.marks[start].fork()
        s.frames, s.actions = list(session.frames[:start]), list(session.actions[: start - 1])
        exact = True
        for m in range(start, n):  # frame m comes from transition m-1
            action: Any = session.actions[m - 1][0]  # a phrase or a vector; None: an observation without one
            if self.kinds[m - self.first - 1] == "observe":
                s.observe(session.frames[m][0], action=action)
            else:
                s.step(action)
            exact = exact and bool(np.array_equal(s.frames[m], session.frames[m]))
        return s, n - start, exact

    def branch(self, child: Session, n: int) -> Timeline:
        """The timeline of `child`, forked from this session when it held `n` frames."""
        tl = Timeline.__new__(Timeline)
        tl.every, tl.keep, tl.first = self.every, self.keep, self.first
        tl.kinds = self.kinds[: n - self.first]
        tl.marks = {k: s for k, s in self.marks.items() if k <= n}  # copies are only ever forked: safe to share
        tl.marks.setdefault(n, _bare(child))
        return tl


def _bare(session: Session) -> Session:
    copy = session.fork()
    copy.frames, copy.actions = [], []
    return copy
