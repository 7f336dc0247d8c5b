"""What each bridge op does, given a checked request: `Ops`, the op handlers of `BridgeServer` (with the session
caps and the frame stream), and the session table entry they work on."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from worldsim.errors import ConfigError, InvalidAction, InvalidFrames, SessionStateError, WorldSimError
from worldsim.frames import check_action_count
from worldsim.session import Session, StepResult
from worldsim.world_model import WorldModel

from .protocol import MAX_ACTION_CHARS, MAX_MESSAGE_CHARS, MAX_TAG_BYTES, PROTOCOL_VERSION, BridgeError, encode

log = logging.getLogger(__name__)

# WorldSimError subclasses → stable error codes (anything else from the model is "worldsim_error"; any other
# exception is a server bug: "internal", logged with its traceback).
CODES: tuple[tuple[type[Exception], str], ...] = (
    (BridgeError, ""), (InvalidFrames, "invalid_frames"), (InvalidAction, "invalid_action"),
    (SessionStateError, "session_state"), (ConfigError, "bad_config"), (WorldSimError, "worldsim_error"))
CHANGES_SESSION = ("reset", "step", "observe")  # ops rolled back when they fail


@dataclass
class Entry:
    """One open session in the server's table: its owner (ZeroMQ identity), stream id and the last reply (with a
    digest of the request it answers, so that a reused seq with another request is refused)."""

    session: Session
    owner: bytes
    last_used: float
    # Its frame-stream topic id: random, told only to the owner, never the token (with a private stream, knowing it
    # is what lets a subscriber receive the session's frames).
    stream: str = field(default_factory=lambda: secrets.token_hex(16))
    last_seq: int | None = None
    last_reply: tuple[dict[str, Any], list[np.ndarray]] | None = field(default=None, repr=False)
    last_digest: bytes = b""


class Ops:
    """The op handlers: `_op_<op>(identity, req, args, arrays)` without a session, `_op_<op>(entry, args, arrays)`
    on one; each returns (result map, reply arrays) or raises BridgeError / WorldSimError."""

    model: WorldModel
    name: str
    sessions: dict[str, Entry]
    max_sessions: int
    evict_idle_s: float | None
    max_sessions_per_client: int
    max_frames_per_request: int
    max_message_bytes: int
    idle_timeout_s: float
    batch_window_s: float
    max_batch: int
    batching: dict[str, int]
    _sizes: dict[int, int]
    _last_create: dict[bytes, tuple[int, dict[str, Any]]]
    _pub: zmq.Socket | None
    _pub_endpoint: str | None
    private_stream: bool

    # ----- session caps -----------------------------------------------------------------------------------------
    def _admit(self, identity: bytes, rid: int | None) -> None:
        """Make room for one more session of `identity` (before it is made), or raise 'too_many_sessions' (this
        client's limit) or 'busy' (the server's). A full server first closes its longest-idle session, if that one has
        been idle `evict_idle_s`: a flood of new connections cannot hold more than `max_sessions` sessions."""
        held = sum(e.owner == identity for e in self.sessions.values())
        if held >= self.max_sessions_per_client:
            raise BridgeError("too_many_sessions", f"this client holds {held} sessions; the limit is "
                              f"{self.max_sessions_per_client}. Fix: close sessions you no longer need.", rid)
        if len(self.sessions) < self.max_sessions:
            return
        token, oldest = min(self.sessions.items(), key=lambda kv: kv[1].last_used)
        idle = time.monotonic() - oldest.last_used
        if self.evict_idle_s is not None and idle >= self.evict_idle_s:
            log.info("bridge: %d sessions open (the limit): closing session %s…, idle %.0f s", len(self.sessions),
                     token[:6], idle)
            self.sessions.pop(token).session.close()
            return
        wait = "" if self.evict_idle_s is None else (f"; the longest-idle one has been idle {idle:.0f} s, and one "
                                                     f"idle {self.evict_idle_s:g} s makes room")
        raise BridgeError("busy", f"the server holds {len(self.sessions)} sessions, its limit (max_sessions){wait}. "
                          "Fix: retry later, and close sessions you no longer need.", rid)

    def _new_token(self, identity: bytes, session: Session) -> dict[str, str]:
        """Register a session `_admit` made room for; returns its token and stream id."""
        token = secrets.token_hex(16)
        self.sessions[token] = entry = Entry(session, identity, time.monotonic())
        return {"session": token, "stream": entry.stream}

    def _frames(self, arrays: list[np.ndarray], n: int, what: str, rid: int | None = None) -> list[np.ndarray]:
        if len(arrays) != n:
            raise BridgeError("bad_request", f"{what}: expected {n} buffer(s), received {len(arrays)}.", rid)
        for a in arrays:
            if a.ndim == 4 and a.shape[0] > self.max_frames_per_request:
                raise BridgeError("too_large", f"{what}: {a.shape[0]} frames in one request; at most "
                                  f"{self.max_frames_per_request}. Fix: split the clip.", rid)
            if a.ndim == 4 and a.shape[0] == 0:
                raise BridgeError("invalid_frames", f"{what}: the buffer holds 0 frames (shape {list(a.shape)}); "
                                  "expected at least 1.", rid)
        return [np.array(a) for a in arrays]  # writable copies (torch warns on read-only memory)

    # ----- ops without a session ------------------------------------------------------------------------------
    def model_info(self) -> dict[str, Any]:
        cfg = self.model.config
        stream = None if self._pub_endpoint is None else {
            "endpoint": self._pub_endpoint, "port": int(self._pub_endpoint.rsplit(":", 1)[1]),
            "private": self.private_stream}
        return {"protocol": PROTOCOL_VERSION, "model": cfg.name, "served": self.name, "height": cfg.height,
                "width": cfg.width, "fps": cfg.fps, "actions": list(cfg.actions),
                "action_spec": cfg.action_spec.model_dump(mode="json"),
                "likelihood_space": cfg.likelihood_space, "dims_per_frame": int(self.model.net.dims_per_frame),
                "sampling_defaults": dict(getattr(self.model, "sampling_defaults", {})), "frame_stream": stream,
                "limits": {"max_message_bytes": self.max_message_bytes,
                           "max_sessions_per_client": self.max_sessions_per_client,
                           "max_sessions": self.max_sessions, "evict_idle_s": self.evict_idle_s,
                           "idle_timeout_s": self.idle_timeout_s,
                           "max_frames_per_request": self.max_frames_per_request,
                           "max_tag_bytes": MAX_TAG_BYTES, "max_action_chars": MAX_ACTION_CHARS}}

    def _op_hello(self, identity, req, args, arrays):
        return self.model_info(), []

    def _op_info(self, identity, req, args, arrays):
        batching = {"window_ms": self.batch_window_s * 1000, "max_batch": self.max_batch, **self.batching,
                    "sizes": {str(k): v for k, v in sorted(self._sizes.items())}}
        return {**self.model_info(), "sessions": sum(e.owner == identity for e in self.sessions.values()),
                "server_sessions": len(self.sessions), "batching": batching}, []

    def _op_ping(self, identity, req, args, arrays):
        return {"pong": True, "time": time.time()}, []

    def _op_create(self, identity, req, args, arrays):
        last = self._last_create.get(identity)
        if last is not None and last[0] == req.id and last[1]["session"] in self.sessions:
            return last[1], []  # a retried create returns the session it already made
        self._admit(identity, req.id)
        # Settings the client left out take the model's recommended ones, as `WorldModel.session` does locally.
        session = self.model.session(batch_size=1, **args.model_dump(exclude_unset=True))
        result = self._new_token(identity, session)
        self._last_create[identity] = (req.id, result)
        return result, []

    def _op_score(self, identity, req, args, arrays):
        (clip,) = self._frames(arrays, 1, "score needs the clip as one uint8 (T, H, W, 3) buffer", req.id)
        rep = self.model.score(clip, actions=args.actions, prompt=args.prompt, noise_draws=args.noise_draws,
                               seed=args.seed)
        v = rep.verdict
        verdict = None if v is None else {
            "percentile": v.percentile.tolist(), "z_score": v.z_score.tolist(), "implausible": v.implausible.tolist(),
            "threshold_bits_per_dim": v.threshold_bits_per_dim.tolist(), "threshold_percentile": v.threshold_percentile}
        result = {"space": rep.space, "dims_per_frame": rep.dims_per_frame, "noise_draws": rep.noise_draws,
                  "surprise_unit": rep.surprise_unit, "verdict": verdict}
        return result, [np.asarray(a, np.float32) for a in (rep.log_prob, rep.bits_per_dim, rep.token_log_prob,
                                                               rep.surprise)]

    # ----- session ops ------------------------------------------------------------------------------------------
    def _op_reset(self, entry, args, arrays):
        s = entry.session
        if arrays:
            (frames,) = self._frames(arrays, 1, "reset takes at most one uint8 (t0, H, W, 3) buffer")
            if args.actions is not None and frames.ndim == 4:  # Session.reset does not check the count itself
                check_action_count(args.actions, frames.shape[0])
            last = s.reset(frames=frames, actions=args.actions)
        elif args.prompt is not None:
            last = s.reset(prompt=args.prompt)
        else:
            raise BridgeError("bad_request", "reset needs a frames buffer (uint8 (t0, H, W, 3)) or args.prompt.")
        return {"frames": len(s.frames)}, [np.asarray(last, np.uint8)]

    def _op_step(self, entry, args, arrays):
        if arrays:
            raise BridgeError("bad_request", f"step takes no buffers; received {len(arrays)}.")
        return self._step_reply(entry, args, entry.session.step(args.action))

    def _step_reply(self, entry: Entry, args: Any, r: StepResult) -> tuple[dict[str, Any], list[np.ndarray]]:
        result = {"log_prob": float(r.log_prob), "bits_per_dim": float(r.bits_per_dim), "reward": float(r.reward),
                  "terminated": bool(r.terminated), "iterations": int(r.info.get("iterations", 0)),
                  "likelihood_space": str(r.info.get("likelihood_space", "")), "step": len(entry.session.frames)}
        if args.tag is not None:
            result["tag"] = args.tag
        return result, [np.asarray(r.frame, np.uint8)]

    # ----- frame stream -------------------------------------------------------------------------------------------
    def _announce(self, entry: Entry, op: str, args: Any, arrays: list[np.ndarray], result: dict[str, Any],
                  out: list[np.ndarray]) -> None:
        """After a session op succeeded and its reply was built: count a step, and publish the frame a `step` or a
        prompt `reset` generated."""
        if op == "step":
            self.batching["steps"] += 1
            self._publish(entry, {"step": result["step"], "action": args.action, "log_prob": result["log_prob"],
                                  "tag": args.tag}, out[0])
        elif op == "reset" and not arrays:
            self._publish(entry, {"step": 1, "action": None, "log_prob": None, "tag": None}, out[0])

    def _publish(self, entry: Entry, info: dict[str, Any], frame: np.ndarray) -> None:
        if self._pub is None:
            return
        head = {"v": PROTOCOL_VERSION, "stream": entry.stream, "time": time.time(), **info}
        try:
            self._pub.send_multipart([f"frames.{entry.stream}".encode(), *encode(head, [frame])], zmq.NOBLOCK)
        except Exception as e:  # the stream is for display: a message that cannot go is dropped, the step stands
            log.warning("bridge: frame stream message dropped (%s: %s)", type(e).__name__, e)

    def _subscriptions(self) -> None:
        """Private stream (XPUB, manual subscriptions): honour a subscription only to the exact topic of an open
        session, so that a subscriber receives the frames of the sessions whose stream id it was told, and nothing
        else (a subscription to "frames." or "" gets nothing)."""
        pub = self._pub
        if pub is None:  # no frame stream
            return
        topics = {f"frames.{e.stream}".encode() for e in self.sessions.values()}
        while True:
            try:
                msg = pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01" and msg[1:] in topics:
                pub.setsockopt(zmq.SUBSCRIBE, msg[1:])  # applies to the subscriber this message came from
            elif msg[:1] == b"\x00":
                pub.setsockopt(zmq.UNSUBSCRIBE, msg[1:])
            elif msg[:1] == b"\x01":
                log.debug("bridge: frame stream subscription to %r refused (no open session has that topic)", msg[1:40])

    def _op_observe(self, entry, args, arrays):
        (frame,) = self._frames(arrays, 1, "observe needs the frame as one uint8 (H, W, 3) buffer")
        lp = entry.session.observe(frame, action=args.action)
        return {"log_prob": float(lp), "step": len(entry.session.frames)}, []

    def _op_fork(self, entry, args, arrays):
        self._admit(entry.owner, None)
        return self._new_token(entry.owner, entry.session.fork(seed=args.seed)), []

    def _op_close(self, entry, args, arrays):
        token = next(t for t, e in self.sessions.items() if e is entry)
        self.sessions.pop(token).session.close()
        return {"closed": True}, []

    def _op_session_info(self, entry, args, arrays):
        s = entry.session
        return {"steps": len(s.frames), "actions": len(s.actions), "reset": s.state is not None,
                "settings": s.settings.model_dump(),
                "last_seq": entry.last_seq, "stream": entry.stream}, []


def ok_reply(rid: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": True, "result": result, "error": None}


def error_reply(rid: int, code: str, message: str) -> dict[str, Any]:
    """An error reply; a long message (one that quotes a large request) is cut, so the reply always fits."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": False, "result": None, "error": {"code": code, "message": message}}


def exception_reply(rid: int, e: Exception) -> dict[str, Any]:
    """The error reply for an exception: its stable code; an unexpected exception is a server bug, "internal"."""
    code = next((c or getattr(e, "code", "") for t, c in CODES if isinstance(e, t)), None)
    if code is None:
        log.error("bridge: internal error answering request %s", rid, exc_info=e)
        return error_reply(rid, "internal", f"the server failed ({type(e).__name__}: {e}); the session is as it "
                           "was before this request. Fix: report it with the server's log.")
    return error_reply(rid, code, e.message if isinstance(e, BridgeError) else str(e))
