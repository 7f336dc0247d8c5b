"""`RemoteWorldModel` / `RemoteSession`: the local Session API, served by a BridgeServer over ZeroMQ (DEALER)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import zmq

from worldsim.actions import ActionSpec
from worldsim.errors import ConfigError
from worldsim.plausibility import Verdict
from worldsim.session import StepResult
from worldsim.world_model import ScoreReport

from .auth import curve_client
from .protocol import DTYPES, PROTOCOL_VERSION, BridgeError, BridgeTimeout, Reply, decode, encode


@dataclass(frozen=True)
class RemoteConfig:
    """What `hello` says about the served model: the parts of `ModelConfig` a client needs."""

    name: str
    height: int
    width: int
    fps: float
    actions: tuple[str, ...]
    likelihood_space: str
    dims_per_frame: int


class RemoteWorldModel:
    """A client of a `BridgeServer`. Mirrors `WorldModel.session`, `WorldModel.score`, `.config` and `.vocabulary`,
    so code written for a local model (e.g. `WorldModelEnv`) runs against a server unchanged.

    Args:
        address: the server's endpoint ("tcp://host:port") or a port on loopback.
        timeout_s: how long to wait for each reply.
        retries: how many times to resend the same request (same id and seq) after a timeout before raising
            BridgeTimeout. Session ops are idempotent on the server, so a retry never steps twice.
        server_public_key: the server's CURVE public key (Z85) when it encrypts; None: plain TCP.
        public_key, secret_key: this client's CURVE key pair (Z85); a server with an allow-list admits only listed
            public keys. None with `server_public_key`: a fresh key pair.
    """

    def __init__(self, address: str | int, timeout_s: float = 10.0, retries: int = 2,
                 server_public_key: str | bytes | None = None, public_key: str | bytes | None = None,
                 secret_key: str | bytes | None = None) -> None:
        self.address = f"tcp://127.0.0.1:{address}" if isinstance(address, int) else address
        self.timeout_s, self.retries = timeout_s, retries
        self._ctx = zmq.Context()
        self._sock: zmq.Socket | None = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            if server_public_key is not None:
                curve_client(self._sock, server_public_key, public_key, secret_key)
            elif public_key is not None or secret_key is not None:
                raise ConfigError("a CURVE key pair needs server_public_key as well (the server's public key).")
        except ConfigError:
            self._sock.close(linger=0)
            self._ctx.term()
            raise
        self._sock.connect(self.address)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # one request in flight per client: ZeroMQ sockets are not thread-safe
        self._hello: dict[str, Any] | None = None

    # ----- transport ------------------------------------------------------------------------------------------
    def call(self, op: str, session: str | None = None, seq: int | None = None, args: dict | None = None,
             arrays: Sequence[np.ndarray] = ()) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Send one request and wait for its reply; returns (result, arrays) or raises BridgeError/BridgeTimeout."""
        with self._lock:
            if self._sock is None:
                raise BridgeError("closed", "this RemoteWorldModel is closed; create a new one.")
            rid = next(self._ids)
            header: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": rid, "op": op, "session": session, "seq": seq,
                                      "args": args or {}}
            frames = encode(header, list(arrays))
            for _ in range(self.retries + 1):
                try:
                    self._sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
                except zmq.Again:  # send queue full (server unreachable for long): this attempt waits, then fails
                    pass
                deadline = time.monotonic() + self.timeout_s
                while (left := deadline - time.monotonic()) > 0:
                    if not self._sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                        break
                    reply, out = decode(self._sock.recv_multipart())
                    if not isinstance(reply, Reply):
                        raise BridgeError("bad_header", "the server sent a request header instead of a reply.")
                    if reply.id != rid and not (reply.id == -1 and not reply.ok):
                        continue  # a late reply to an earlier, already timed-out request
                    if reply.error is not None:  # Reply's validator: an error exactly when not ok
                        raise BridgeError(reply.error.code, reply.error.message, rid)
                    return reply.result or {}, out
            raise BridgeTimeout(f"no reply from {self.address} to {op!r} within {self.timeout_s:g} s after "
                                f"{self.retries + 1} attempts. Fix: check that a BridgeServer is running there, or "
                                "raise timeout_s.", rid)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close(linger=0)
                self._ctx.term()
                self._sock = None

    def __enter__(self) -> RemoteWorldModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- API ------------------------------------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        """Protocol version and model description (height, width, fps, actions, likelihood_space, frame_stream,
        limits)."""
        self._hello = self.call("hello")[0]
        return self._hello

    def info(self) -> dict[str, Any]:
        """Model description plus the number of sessions this client holds (`sessions`) and all clients hold
        (`server_sessions`)."""
        return self.call("info")[0]

    @property
    def frame_stream(self) -> str | None:
        """The endpoint of the server's frame stream, for `FrameSubscriber` (None: the server has none). A server
        bound to every interface reports host 0.0.0.0 (or *): this client's host is used instead."""
        stream = (self._hello or self.hello()).get("frame_stream")
        if stream is None:
            return None
        host = self.address.rsplit(":", 1)[0]
        endpoint = stream["endpoint"]
        return f"{host}:{stream['port']}" if endpoint.startswith(("tcp://0.0.0.0:", "tcp://*:")) else endpoint

    def ping(self) -> float:
        """Round-trip time in seconds."""
        t = time.perf_counter()
        self.call("ping")
        return time.perf_counter() - t

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return tuple((self._hello or self.hello())["actions"])

    @property
    def action_spec(self) -> ActionSpec:
        """What the served model's actions are (from `hello`; a server that does not say: text, its `actions`)."""
        h = self._hello or self.hello()
        spec = h.get("action_spec")
        return ActionSpec.text(h["actions"]) if spec is None else ActionSpec.model_validate(spec)

    @property
    def config(self) -> RemoteConfig:
        """The served model's name, frame size, fps, actions and likelihood space (from `hello`, asked once)."""
        h = self._hello or self.hello()
        return RemoteConfig(h["model"], h["height"], h["width"], h["fps"], tuple(h["actions"]), h["likelihood_space"],
                            h["dims_per_frame"])

    def session(self, seed: int = 0, batch_size: int = 1,
                reward_fn: Callable[[np.ndarray, str], float] | None = None, **settings: Any) -> RemoteSession:
        """A remote session; settings as `WorldModel.session` (sampler, guidance, temperature, …).

        Remote sessions have batch_size 1 (the server batches concurrent sessions itself). `reward_fn(frame, action)`
        runs here, on each returned frame, in place of the model's reward head.
        """
        if batch_size != 1:
            raise ConfigError(f"remote sessions have batch_size 1; received batch_size={batch_size!r}. Fix: open one "
                              "session per world (the server runs concurrent steps as one batched pass).")
        result, _ = self.call("create", args={"seed": seed, **settings})
        return RemoteSession(self, result["session"], result.get("stream"), reward_fn)

    def score(self, clip: np.ndarray, actions: list[str | None] | None = None, prompt: str | None = None,
              noise_draws: int = 0, seed: int = 0) -> ScoreReport:
        """Exact per-frame log-likelihoods of one uint8 (T, H, W, 3) clip (see `WorldModel.score`)."""
        args = {"actions": _wire_actions(actions), "prompt": prompt, "noise_draws": noise_draws, "seed": seed}
        result, (lp, bpd, tok, surprise) = self.call("score", args=args, arrays=[_uint8(clip, "clip")])
        v = result.get("verdict")
        verdict = None if v is None else Verdict(
            np.asarray(v["percentile"]), np.asarray(v["z_score"]), np.asarray(v["threshold_bits_per_dim"]),
            np.asarray(v["implausible"]), v["threshold_percentile"])
        return ScoreReport(lp, bpd, tok, result["space"], result["dims_per_frame"], result["noise_draws"],
                           surprise, result["surprise_unit"], verdict)


class RemoteSession:
    """A server-side session; the methods mirror `worldsim.Session` with batch_size=1."""

    def __init__(self, client: RemoteWorldModel, token: str, stream: str | None = None,
                 reward_fn: Callable[[np.ndarray, str], float] | None = None) -> None:
        self.client, self.token = client, token
        # Topic id of this session's frames on the server's stream; on a private stream, whoever knows it can watch.
        self.stream = stream
        self.reward_fn = reward_fn
        self.seq = 0
        self.closed = False

    def call(self, op: str, args: dict | None = None, arrays: Sequence[np.ndarray] = ()):
        """One session request with the next sequence number (retries inside reuse it)."""
        self.seq += 1
        return self.client.call(op, session=self.token, seq=self.seq, args=args, arrays=arrays)

    def reset(self, frames: np.ndarray | None = None, prompt: str | None = None,
              actions: Sequence[str | None] | None = None) -> np.ndarray:
        """Start from real frames uint8 (t0, H, W, 3), or imagine frame 0 from `prompt`; returns the last frame."""
        arrays = [] if frames is None else [_uint8(frames, "frames")]
        args = {"prompt": prompt, "actions": _wire_actions(actions)}
        return self.call("reset", args, arrays)[1][0]

    def step(self, action: Any, tag: dict[str, Any] | None = None) -> StepResult:
        """Imagine the next frame after `action`. `tag` (e.g. {"pose": [...], "time": t}) is echoed in
        `info["tag"]` and on the frame stream."""
        wire = _wire_action(action)
        r, (frame,) = self.call("step", {"action": wire} if tag is None else {"action": wire, "tag": tag})
        info = {"iterations": r["iterations"], "likelihood_space": r["likelihood_space"], "step": r["step"]}
        if "tag" in r:
            info["tag"] = r["tag"]
        reward = r["reward"] if self.reward_fn is None else float(np.float32(self.reward_fn(frame, action)))  # as local
        return StepResult(frame, r["log_prob"], r["bits_per_dim"], reward, r["terminated"], info)

    def observe(self, frame: np.ndarray, action: Any = None) -> float:
        """Condition on a real uint8 (H, W, 3) frame reached by `action`; returns its log-likelihood (nats)."""
        return self.call("observe", {"action": _wire_action(action)}, [_uint8(frame, "frame")])[0]["log_prob"]

    def fork(self, seed: int | None = None) -> RemoteSession:
        """An independent server-side copy."""
        result = self.call("fork", {"seed": seed})[0]
        return RemoteSession(self.client, result["session"], result.get("stream"), self.reward_fn)

    def info(self) -> dict[str, Any]:
        return self.call("info")[0]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.call("close")
        except BridgeError as e:
            if e.code not in ("not_found", "closed"):  # a retried close whose first attempt already closed it
                raise

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameSubscriber:
    """Receives the frames a BridgeServer publishes (`pub_address`), of one session's `stream` or, from a server whose
    stream is not private, of all (stream=None).

    PUB/SUB drops messages for slow or late subscribers: use it for display, not for bookkeeping.
    """

    def __init__(self, address: str | int, stream: str | None = None, server_public_key: str | bytes | None = None,
                 public_key: str | bytes | None = None, secret_key: str | bytes | None = None) -> None:
        self.address = f"tcp://127.0.0.1:{address}" if isinstance(address, int) else address
        self._ctx = zmq.Context()
        self._sock: zmq.Socket | None = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        if server_public_key is not None:  # keys as for RemoteWorldModel
            curve_client(self._sock, server_public_key, public_key, secret_key)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"frames." + (stream.encode() if stream else b""))
        self._sock.connect(self.address)

    def recv(self, timeout_s: float = 1.0) -> tuple[dict[str, Any], np.ndarray]:
        """The next (header, frame uint8 (H, W, 3)); header has stream, step, action, log_prob, time, tag."""
        if self._sock is None:
            raise BridgeError("closed", "this FrameSubscriber is closed; create a new one.")
        if not self._sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise BridgeTimeout(f"no frame on {self.address} within {timeout_s:g} s.")
        _topic, head, *bufs = self._sock.recv_multipart()
        header = msgpack.unpackb(head, raw=False)
        (frame,) = _stream_buffers(header, bufs)
        return header, frame

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._ctx.term()
            self._sock = None

    def __enter__(self) -> FrameSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stream_buffers(header: dict[str, Any], bufs: list[bytes]) -> list[np.ndarray]:
    specs = header.pop("buffers", [])
    if len(specs) != len(bufs):
        raise BridgeError("bad_buffer", f"stream message lists {len(specs)} buffers but carries {len(bufs)}.")
    return [np.frombuffer(b, DTYPES[s["dtype"]]).reshape(s["shape"]) for s, b in zip(specs, bufs, strict=True)]


def _uint8(a: Any, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise BridgeError("bad_buffer", f"{what} must be a uint8 array; received dtype {a.dtype}. "
                          "Fix: convert with .astype(np.uint8).")
    return a


def _wire_action(action: Any) -> Any:
    """A phrase as is; a vector action (array or sequence of numbers) as a msgpack list of floats."""
    if action is None or isinstance(action, str):
        return action
    if isinstance(action, np.ndarray) or (isinstance(action, (list, tuple)) and action
                                          and all(isinstance(v, (int, float, np.number)) for v in action)):
        return [float(v) for v in np.asarray(action, np.float64).reshape(-1)]
    return action  # anything else goes as given, for the server to refuse with a clear error


def _wire_actions(actions: Any) -> list | None:
    return None if actions is None else [_wire_action(a) for a in actions]
