"""`BridgeServer`: serves a WorldModel's sessions over ZeroMQ (ROUTER socket); bad input gets an error reply."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from worldsim.errors import ConfigError, InvalidAction, InvalidFrames, SessionStateError, WorldSimError
from worldsim.frames import check_action_count
from worldsim.session import Session
from worldsim.world_model import WorldModel

from .protocol import PROTOCOL_VERSION, SESSION_OPS, BridgeError, Request, decode, encode, parse_args

log = logging.getLogger(__name__)

# WorldSimError subclasses → stable error codes (anything else from the model is "worldsim_error").
CODES: tuple[tuple[type[Exception], str], ...] = (
    (BridgeError, ""), (InvalidFrames, "invalid_frames"), (InvalidAction, "invalid_action"),
    (SessionStateError, "session_state"), (ConfigError, "bad_config"), (WorldSimError, "worldsim_error"))


@dataclass
class _Entry:
    session: Session
    owner: bytes
    last_used: float
    stream: str = field(default_factory=lambda: secrets.token_hex(8))  # public id of its PUB topic (not the token)
    last_seq: int | None = None
    last_reply: tuple[dict[str, Any], list[np.ndarray]] | None = field(default=None, repr=False)


class BridgeServer:
    """Serve `model` to DEALER clients speaking the protocol in bridges/PROTOCOL.md.

    Args:
        model: the world model whose sessions clients create.
        address: a ZeroMQ endpoint ("tcp://127.0.0.1:0" picks a free port) or a port number (loopback).
        max_message_bytes: largest request (all frames together); larger ones get "too_large".
        max_sessions_per_client: open sessions one client identity may hold.
        idle_timeout_s: sessions unused this long are closed.
        max_frames_per_request: most frames a reset or score buffer may hold.
        pub_address: optional endpoint (or loopback port) of a PUB socket that publishes every generated frame on
            topic "frames.<stream>" (see PROTOCOL.md, "Frame stream"); None: no stream.
    """

    def __init__(self, model: WorldModel, address: str | int = "tcp://127.0.0.1:0",
                 max_message_bytes: int = 64 * 2**20, max_sessions_per_client: int = 8,
                 idle_timeout_s: float = 300.0, max_frames_per_request: int = 1024,
                 pub_address: str | int | None = None) -> None:
        self.model = model
        self.address = f"tcp://127.0.0.1:{address}" if isinstance(address, int) else address
        self.max_message_bytes = max_message_bytes
        self.max_sessions_per_client = max_sessions_per_client
        self.idle_timeout_s = idle_timeout_s
        self.max_frames_per_request = max_frames_per_request
        self.pub_address = f"tcp://127.0.0.1:{pub_address}" if isinstance(pub_address, int) else pub_address
        self._pub: zmq.Socket | None = None
        self._pub_endpoint: str | None = None
        self.sessions: dict[str, _Entry] = {}
        self._last_create: dict[bytes, tuple[int, dict[str, Any]]] = {}  # identity → (request id, result)
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._endpoint = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----- lifecycle ------------------------------------------------------------------------------------------
    def bind(self) -> str:
        """Create and bind the ROUTER socket (idempotent); returns the bound endpoint."""
        if self._sock is None:
            self._ctx = zmq.Context()
            self._sock = self._ctx.socket(zmq.ROUTER)
            self._sock.setsockopt(zmq.LINGER, 0)
            # A single frame above the whole-message limit is dropped by libzmq (peer disconnected, no reply).
            self._sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
            address = self.address[:-2] + ":*" if self.address.endswith(":0") else self.address
            self._sock.bind(address)
            self._endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
            log.info("bridge server listening on %s", self._endpoint)
            if self.pub_address is not None:
                self._pub = self._ctx.socket(zmq.PUB)
                self._pub.setsockopt(zmq.LINGER, 0)
                self._pub.setsockopt(zmq.SNDHWM, 64)  # slow subscribers lose frames instead of stalling the server
                pub = self.pub_address
                self._pub.bind(pub[:-2] + ":*" if pub.endswith(":0") else pub)
                self._pub_endpoint = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
                log.info("bridge frame stream on %s", self._pub_endpoint)
        return self._endpoint

    @property
    def endpoint(self) -> str:
        return self.bind()

    @property
    def pub_endpoint(self) -> str | None:
        """The bound endpoint of the frame stream, or None without `pub_address`."""
        self.bind()
        return self._pub_endpoint

    @property
    def port(self) -> int:
        return int(self.bind().rsplit(":", 1)[1])

    def start(self) -> BridgeServer:
        """Serve in a background thread; returns self (use `.port`, then `.stop()`)."""
        self.bind()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="worldsim-bridge", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until `stop()` (from another thread) or Ctrl-C."""
        self.bind()
        self._stop.clear()
        try:
            self._loop()
        except KeyboardInterrupt:
            pass
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, close every session and the socket (linger 0)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
            self._close()

    def _close(self) -> None:
        for entry in self.sessions.values():
            entry.session.close()
        self.sessions.clear()
        if self._sock is not None:
            if self._pub is not None:
                self._pub.close(linger=0)
                self._pub = None
            self._sock.close(linger=0)
            self._ctx.term()
            self._sock = self._ctx = None

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- loop -----------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            if sock.poll(100, zmq.POLLIN):
                try:
                    msg = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                identity, frames = msg[0], msg[1:]
                try:
                    out = self.handle(identity, frames)
                except Exception:  # never let one message end the loop
                    log.exception("bridge: unexpected failure while handling a message")
                    out = encode(_error(-1, "internal", "the server failed to build a reply; see its log."))
                try:
                    sock.send_multipart([identity, *out], zmq.NOBLOCK)
                except zmq.ZMQError as e:  # client gone or its queue full: drop the reply
                    log.warning("bridge: could not send a reply (%s)", e)
            self._expire()

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, e in self.sessions.items() if now - e.last_used > self.idle_timeout_s]:
            log.info("bridge: closing idle session %s…", token[:6])
            self.sessions.pop(token).session.close()
        for identity in [i for i, (_, r) in self._last_create.items() if r["session"] not in self.sessions]:
            del self._last_create[identity]

    def handle(self, identity: bytes, frames: list[bytes]) -> list[bytes]:
        """Answer one request (the frames after the ROUTER identity) with the frames of its reply."""
        rid = -1
        try:
            req, arrays = decode(frames)  # cheap: arrays are views of the received frames
            rid = req.id
            if not isinstance(req, Request):
                raise BridgeError("bad_header", "received a reply header; the server expects requests (with 'op').")
            size = sum(len(f) for f in frames)
            if size > self.max_message_bytes:
                raise BridgeError("too_large", f"message of {size} bytes; this server accepts at most "
                                  f"{self.max_message_bytes}. Fix: send fewer frames per request.")
            return encode(*self._dispatch(identity, req, arrays))
        except Exception as e:
            if rid < 0 and getattr(e, "request_id", None) is not None:
                rid = e.request_id
            code = next((c or getattr(e, "code", "") for t, c in CODES if isinstance(e, t)), None)
            if code is None:
                log.exception("bridge: internal error answering request %s", rid)
                code, message = "internal", f"{type(e).__name__}: {e}"
            else:
                message = e.message if isinstance(e, BridgeError) else str(e)
            return encode(_error(rid, code, message))

    def _dispatch(self, identity: bytes, req: Request, arrays: list[np.ndarray]) -> tuple[dict, list[np.ndarray]]:
        args = parse_args(req.op, req.args, req.id)
        if req.op in SESSION_OPS or (req.op == "info" and req.session is not None):
            entry = self._entry(identity, req)
            if req.seq is not None and entry.last_seq is not None:
                if req.seq == entry.last_seq and entry.last_reply is not None:
                    head, out = entry.last_reply  # an idempotent retry: same answer, no second step
                    return {**head, "id": req.id}, out
                if req.seq < entry.last_seq:
                    raise BridgeError("stale_seq", f"seq {req.seq} is older than this session's last seq "
                                      f"{entry.last_seq}. Fix: increase seq by one for every new request; resend "
                                      "the last seq only to retry.", req.id)
            entry.last_used = time.monotonic()
            try:
                op = "session_info" if req.op == "info" else req.op
                result, out = getattr(self, f"_op_{op}")(entry, args, arrays)
                head = _ok(req.id, result)
            except BridgeError as e:
                head, out = _error(req.id, e.code, e.message), []
            except WorldSimError as e:
                code = next(c for t, c in CODES if isinstance(e, t))
                head, out = _error(req.id, code, str(e)), []
            if req.seq is not None:
                entry.last_seq, entry.last_reply = req.seq, (head, out)
            return head, out
        if req.session is not None:
            raise BridgeError("bad_request", f"op {req.op!r} takes no session token; received one.", req.id)
        result, out = getattr(self, f"_op_{req.op}")(identity, req, args, arrays)
        return _ok(req.id, result), out

    def _entry(self, identity: bytes, req: Request) -> _Entry:
        if req.session is None:
            raise BridgeError("bad_request", f"op {req.op!r} needs a session token in 'session'; create one with "
                              "the 'create' op.", req.id)
        entry = self.sessions.get(req.session)
        if entry is None or not secrets.compare_digest(entry.owner, identity):
            # The same answer whether the token never existed, expired, or belongs to another client.
            raise BridgeError("not_found", f"no session {req.session[:8]!r}… for this client (closed, expired "
                              "after idle timeout, or never created here). Fix: create a new session.", req.id)
        return entry

    def _new_token(self, identity: bytes, session: Session, rid: int | None) -> dict[str, str]:
        held = sum(e.owner == identity for e in self.sessions.values())
        if held >= self.max_sessions_per_client:
            session.close()
            raise BridgeError("too_many_sessions", f"this client holds {held} sessions; the limit is "
                              f"{self.max_sessions_per_client}. Fix: close sessions you no longer need.", rid)
        token = secrets.token_hex(16)
        self.sessions[token] = entry = _Entry(session, identity, time.monotonic())
        return {"session": token, "stream": entry.stream}

    def _frames(self, arrays: list[np.ndarray], n: int, what: str, rid: int | None = None) -> list[np.ndarray]:
        if len(arrays) != n:
            raise BridgeError("bad_request", f"{what}: expected {n} buffer(s), received {len(arrays)}.", rid)
        for a in arrays:
            if a.ndim == 4 and a.shape[0] > self.max_frames_per_request:
                raise BridgeError("too_large", f"{what}: {a.shape[0]} frames in one request; at most "
                                  f"{self.max_frames_per_request}. Fix: split the clip.", rid)
        return [np.array(a) for a in arrays]  # writable copies (torch warns on read-only memory)

    # ----- ops without a session ------------------------------------------------------------------------------
    def model_info(self) -> dict[str, Any]:
        cfg = self.model.config
        return {"protocol": PROTOCOL_VERSION, "model": cfg.name, "height": cfg.height, "width": cfg.width,
                "fps": cfg.fps, "actions": list(cfg.actions), "likelihood_space": cfg.likelihood_space,
                "dims_per_frame": int(self.model.net.dims_per_frame),
                "limits": {"max_message_bytes": self.max_message_bytes,
                           "max_sessions_per_client": self.max_sessions_per_client,
                           "idle_timeout_s": self.idle_timeout_s,
                           "max_frames_per_request": self.max_frames_per_request}}

    def _op_hello(self, identity, req, args, arrays):
        return self.model_info(), []

    def _op_info(self, identity, req, args, arrays):
        return {**self.model_info(), "sessions": sum(e.owner == identity for e in self.sessions.values())}, []

    def _op_ping(self, identity, req, args, arrays):
        return {"pong": True, "time": time.time()}, []

    def _op_create(self, identity, req, args, arrays):
        last = self._last_create.get(identity)
        if last is not None and last[0] == req.id and last[1]["session"] in self.sessions:
            return last[1], []  # a retried create returns the session it already made
        session = self.model.session(batch_size=1, **args.model_dump())
        result = self._new_token(identity, session, req.id)
        self._last_create[identity] = (req.id, result)
        return result, []

    def _op_score(self, identity, req, args, arrays):
        (clip,) = self._frames(arrays, 1, "score needs the clip as one uint8 (T, H, W, 3) buffer", req.id)
        rep = self.model.score(clip, actions=args.actions, prompt=args.prompt, noise_draws=args.noise_draws,
                               seed=args.seed)
        result = {"space": rep.space, "dims_per_frame": rep.dims_per_frame, "noise_draws": rep.noise_draws}
        return result, [np.asarray(rep.log_prob, np.float32), np.asarray(rep.bits_per_dim, np.float32),
                        np.asarray(rep.token_log_prob, np.float32)]

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
            self._publish(entry, {"step": 1, "action": None, "log_prob": None, "tag": None}, np.asarray(last, np.uint8))
        else:
            raise BridgeError("bad_request", "reset needs a frames buffer (uint8 (t0, H, W, 3)) or args.prompt.")
        return {"frames": len(s.frames)}, [np.asarray(last, np.uint8)]

    def _op_step(self, entry, args, arrays):
        if arrays:
            raise BridgeError("bad_request", f"step takes no buffers; received {len(arrays)}.")
        r = entry.session.step(args.action)
        result = {"log_prob": float(r.log_prob), "bits_per_dim": float(r.bits_per_dim), "reward": float(r.reward),
                  "terminated": bool(r.terminated), "iterations": int(r.info.get("iterations", 0)),
                  "likelihood_space": str(r.info.get("likelihood_space", "")), "step": len(entry.session.frames)}
        if args.tag is not None:
            result["tag"] = args.tag
        frame = np.asarray(r.frame, np.uint8)
        self._publish(entry, {"step": result["step"], "action": args.action, "log_prob": result["log_prob"],
                              "tag": args.tag}, frame)
        return result, [frame]

    def _publish(self, entry: _Entry, info: dict[str, Any], frame: np.ndarray) -> None:
        if self._pub is None:
            return
        head = {"v": PROTOCOL_VERSION, "stream": entry.stream, "time": time.time(), **info}
        try:
            self._pub.send_multipart([f"frames.{entry.stream}".encode(), *encode(head, [frame])], zmq.NOBLOCK)
        except zmq.ZMQError as e:
            log.debug("bridge: frame stream message dropped (%s)", e)

    def _op_observe(self, entry, args, arrays):
        (frame,) = self._frames(arrays, 1, "observe needs the frame as one uint8 (H, W, 3) buffer")
        lp = entry.session.observe(frame, action=args.action)
        return {"log_prob": float(lp), "step": len(entry.session.frames)}, []

    def _op_fork(self, entry, args, arrays):
        child = entry.session.fork(seed=args.seed)
        return self._new_token(entry.owner, child, None), []

    def _op_close(self, entry, args, arrays):
        token = next(t for t, e in self.sessions.items() if e is entry)
        self.sessions.pop(token).session.close()
        return {"closed": True}, []

    def _op_session_info(self, entry, args, arrays):
        s, st = entry.session, entry.session.settings
        return {"steps": len(s.frames), "actions": len(s.actions), "reset": s.state is not None,
                "settings": {"sampler": st.method, "guidance": st.guidance, "temperature": st.temperature},
                "last_seq": entry.last_seq, "stream": entry.stream}, []


def _ok(rid: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": True, "result": result, "error": None}


def _error(rid: int, code: str, message: str) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": False, "result": None, "error": {"code": code, "message": message}}
