"""`BridgeServer`: serves a WorldModel's sessions over ZeroMQ (ROUTER socket). Every request gets a reply (an error
at worst), a failed op leaves its session as it was, and the server keeps serving."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator

from worldsim.errors import ConfigError
from worldsim.session import batch_key, step_sessions
from worldsim.world_model import WorldModel

from .auth import as_key, curve_server, start_authenticator
from .ops import CHANGES_SESSION, Entry, Ops, exception_reply, ok_reply
from .protocol import SESSION_OPS, BridgeError, Request, decode, encode, parse_args, request_digest

log = logging.getLogger(__name__)


@dataclass
class _Job:
    """A validated session request, not yet run (steps wait here for the batch window)."""

    identity: bytes
    req: Request
    args: Any
    arrays: list[np.ndarray]
    entry: Entry
    digest: bytes  # of op, args and buffers: a reused seq must carry the same request


class BridgeServer(Ops):
    """Serve `model` to DEALER clients speaking the protocol in bridges/PROTOCOL.md.

    Args:
        model: the world model whose sessions clients create.
        address: a ZeroMQ endpoint ("tcp://127.0.0.1:0" picks a free port) or a port number (loopback).
        max_message_bytes: largest request (all frames together); larger ones get "too_large".
        max_sessions_per_client: open sessions one client identity may hold.
        max_sessions: open sessions of all clients together (bounds memory: a new ZeroMQ identity per connection
            gets round the per-client limit). At the cap a `create`/`fork` closes the longest-idle session if it
            has been idle `evict_idle_s`, else it is refused with "busy".
        evict_idle_s: how long a session must have been idle before a full server closes it for a new one; None:
            never, a full server answers "busy" until sessions close or expire.
        idle_timeout_s: sessions unused this long are closed.
        max_frames_per_request: most frames a reset or score buffer may hold.
        pub_address: optional endpoint (or loopback port) of a PUB socket that publishes every generated frame on
            topic "frames.<stream>" (see PROTOCOL.md, "Frame stream"); None: no stream.
        private_stream: True: a subscriber receives only the sessions whose `stream` id it subscribes to exactly (ids
            are random and told only to each session's owner); False: any subscriber may subscribe to "frames." and
            read every session's frames and tags.
        batch_window_ms: dynamic batching: after a `step` arrives, wait up to this long for `step`s of other
            sessions that can share its forward pass (same settings, same number of frames), then run them as one
            batched pass. Results are the same as stepping alone. It never waits when no other open session could
            join; 0: batch only the steps already queued.
        max_batch: most sessions in one batched pass.
        curve_secret_key, curve_public_key: the server's CURVE key pair (Z85, from `zmq.curve_keypair()`): both
            sockets encrypt, and clients must know `curve_public_key`. None: no encryption.
        allowed_client_keys: with CURVE, the public keys of the clients allowed to connect (others get no
            connection, so their requests time out); None: any client that knows the server's public key.
        name: the served model's name for `hello` ("served"), e.g. the bundled model's; None: the preset name.
    """

    def __init__(self, model: WorldModel, address: str | int = "tcp://127.0.0.1:0",
                 max_message_bytes: int = 64 * 2**20, max_sessions_per_client: int = 8,
                 idle_timeout_s: float = 300.0, max_frames_per_request: int = 1024,
                 pub_address: str | int | None = None, batch_window_ms: float = 2.0, max_batch: int = 32,
                 curve_secret_key: str | bytes | None = None, curve_public_key: str | bytes | None = None,
                 allowed_client_keys: list[str | bytes] | None = None, max_sessions: int = 256,
                 evict_idle_s: float | None = 60.0, private_stream: bool = False, name: str | None = None) -> None:
        self.model = model
        self.name = name or model.config.name
        self.address = f"tcp://127.0.0.1:{address}" if isinstance(address, int) else address
        if min(max_message_bytes, max_sessions_per_client, max_sessions, max_frames_per_request) < 1 or not (
                idle_timeout_s > 0 and (evict_idle_s is None or evict_idle_s >= 0)):
            raise ConfigError("limits must be positive: max_message_bytes, max_sessions_per_client, max_sessions, "
                              "max_frames_per_request ≥ 1, idle_timeout_s > 0, evict_idle_s ≥ 0 or None; received "
                              f"{max_message_bytes}, {max_sessions_per_client}, {max_sessions}, "
                              f"{max_frames_per_request}, {idle_timeout_s}, {evict_idle_s}.")
        self.max_message_bytes = max_message_bytes
        self.max_sessions_per_client, self.max_sessions = max_sessions_per_client, max_sessions
        self.idle_timeout_s, self.evict_idle_s = idle_timeout_s, evict_idle_s
        self.max_frames_per_request = max_frames_per_request
        self.pub_address = f"tcp://127.0.0.1:{pub_address}" if isinstance(pub_address, int) else pub_address
        self.private_stream = private_stream
        if not batch_window_ms >= 0 or max_batch < 1:
            raise ConfigError(f"need batch_window_ms ≥ 0 and max_batch ≥ 1; received {batch_window_ms}, {max_batch}.")
        self.batch_window_s, self.max_batch = batch_window_ms / 1000, max_batch
        self.batching = {"passes": 0, "batched_steps": 0, "steps": 0, "largest": 0}  # see PROTOCOL.md, `info`
        self._sizes: dict[int, int] = {}  # batched passes by number of sessions
        if (curve_secret_key is None) != (curve_public_key is None):
            raise ConfigError("CURVE needs both curve_secret_key and curve_public_key (zmq.curve_keypair()).")
        if allowed_client_keys is not None and curve_secret_key is None:
            raise ConfigError("allowed_client_keys needs CURVE: pass curve_secret_key and curve_public_key too.")
        self._curve = None if curve_secret_key is None or curve_public_key is None else (
            as_key(curve_public_key, "curve_public_key"), as_key(curve_secret_key, "curve_secret_key"))
        self.allowed_client_keys = None if allowed_client_keys is None else list(allowed_client_keys)
        self._auth: ThreadAuthenticator | None = None
        self._pub: zmq.Socket | None = None
        self._pub_endpoint: str | None = None
        self.sessions: dict[str, Entry] = {}
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
            if self._curve is not None:
                self._auth = start_authenticator(self._ctx, self.allowed_client_keys)
            self._sock = self._ctx.socket(zmq.ROUTER)
            self._sock.setsockopt(zmq.LINGER, 0)
            if self._curve is not None:
                curve_server(self._sock, *self._curve)
            # A single frame above the whole-message limit is dropped by libzmq (peer disconnected, no reply).
            self._sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
            address = self.address[:-2] + ":*" if self.address.endswith(":0") else self.address
            self._sock.bind(address)
            self._endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
            log.info("bridge server listening on %s", self._endpoint)
            if self.pub_address is not None:
                # A private stream is an XPUB that applies only the subscriptions it accepts (see Ops._subscriptions).
                self._pub = self._ctx.socket(zmq.XPUB if self.private_stream else zmq.PUB)
                self._pub.setsockopt(zmq.LINGER, 0)
                if self.private_stream:
                    self._pub.setsockopt(zmq.XPUB_MANUAL, 1)
                self._pub.setsockopt(zmq.SNDHWM, 64)  # slow subscribers lose frames instead of stalling the server
                if self._curve is not None:
                    curve_server(self._pub, *self._curve)
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
        """Serve in a background thread; returns self (use `.port`, then `.stop()`). Starting a server that is
        already serving does nothing (a second loop on the same socket would crash: zmq sockets are not
        thread-safe)."""
        if self._thread is not None and self._thread.is_alive():
            return self
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
            self._thread.join()  # the loop checks the flag every 100 ms; a step under way finishes first
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
            if self._auth is not None:
                self._auth.stop()
                self._auth = None
            if self._ctx is not None:
                self._ctx.term()
            self._sock = self._ctx = None

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- loop -----------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        sock = self._sock
        assert sock is not None  # start() binds before it runs the loop
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if self.private_stream and self._pub is not None:
            poller.register(self._pub, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                ready = dict(poller.poll(100))
                if self._pub is not None and ready.get(self._pub):
                    self._subscriptions()
                if ready.get(sock):
                    self._drain(sock)
                self._expire()
            except Exception:  # the last guard: log it and keep serving (every request already gets a reply)
                log.exception("bridge: unexpected failure in the server loop")

    def _drain(self, sock: zmq.Socket) -> None:
        """Answer the queued requests in arrival order. A `step` that can share a pass waits, at most the batch
        window and never behind a later request of its own session, for other sessions' steps; then they run
        together (dynamic batching)."""
        steps: list[_Job] = []
        deadline = 0.0
        for _ in range(4 * self.max_batch + 64):  # then return, so that expiry and stop() get their turn
            try:
                msg = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                wait = deadline - time.monotonic()
                if not steps or wait <= 0 or not self._others_could_join(steps):
                    break
                if not sock.poll(max(1, int(wait * 1000)), zmq.POLLIN):
                    break
                continue
            identity, frames = msg[0], msg[1:]
            job = self._accept(identity, frames)
            if isinstance(job, _Job) and any(j.entry is job.entry for j in steps):
                self._run_steps(sock, steps)  # its session has a step waiting: run that first, then look again
                steps = []
                job = self._accept(identity, frames)  # (a retry of that step now gets its cached reply)
            if isinstance(job, _Job) and self._batchable(job):
                if len(steps) >= self.max_batch:
                    self._run_steps(sock, steps)
                    steps = []
                if not steps:
                    deadline = time.monotonic() + self.batch_window_s
                steps.append(job)
                continue
            self._run_steps(sock, steps)  # first the waiting steps: each session's requests stay in order
            steps = []
            self._send(sock, identity, job if isinstance(job, list) else self._run(job))
        self._run_steps(sock, steps)

    def _send(self, sock: zmq.Socket, identity: bytes, frames: list[bytes]) -> None:
        try:
            sock.send_multipart([identity, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as e:  # client gone or its queue full: drop the reply
            log.warning("bridge: could not send a reply (%s)", e)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, e in self.sessions.items() if now - e.last_used > self.idle_timeout_s]:
            log.info("bridge: closing idle session %s…", token[:6])
            self.sessions.pop(token).session.close()
        for identity in [i for i, (_, r) in self._last_create.items() if r["session"] not in self.sessions]:
            del self._last_create[identity]

    def handle(self, identity: bytes, frames: list[bytes]) -> list[bytes]:
        """Answer one request (the frames after the ROUTER identity) with the frames of its reply."""
        job = self._accept(identity, frames)
        return job if isinstance(job, list) else self._run(job)

    def _accept(self, identity: bytes, frames: list[bytes]) -> list[bytes] | _Job:
        """Decode and check one request. Returns the reply frames (errors, retries, ops without a session: run now)
        or a `_Job` (a session op to run). Never raises."""
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
            args = parse_args(req.op, req.args, req.id)
            if req.op in SESSION_OPS or (req.op == "info" and req.session is not None):
                entry = self._entry(identity, req)
                digest = b"" if req.seq is None else request_digest(req, arrays)
                if req.seq is not None and entry.last_seq is not None:
                    if req.seq == entry.last_seq and entry.last_reply is not None:
                        if digest != entry.last_digest:
                            raise BridgeError("seq_reused", f"seq {req.seq} already answered another request on this "
                                              "session (a different op, args or buffers). Fix: give every new "
                                              f"request the next seq ({entry.last_seq + 1}); resend a seq only "
                                              "with the identical request, to retry it.", req.id)
                        head, out = entry.last_reply  # an idempotent retry: same answer, no second step
                        return encode({**head, "id": req.id}, out)
                    if req.seq < entry.last_seq:
                        raise BridgeError("stale_seq", f"seq {req.seq} is older than this session's last seq "
                                          f"{entry.last_seq}. Fix: increase seq by one for every new request; "
                                          "resend the last seq only to retry.", req.id)
                entry.last_used = time.monotonic()  # a waiting step keeps its session from eviction
                return _Job(identity, req, args, arrays, entry, digest)
            if req.session is not None:
                raise BridgeError("bad_request", f"op {req.op!r} takes no session token; received one.", req.id)
            result, out = getattr(self, f"_op_{req.op}")(identity, req, args, arrays)
            return encode(ok_reply(req.id, result), out)
        except Exception as e:
            request_id = getattr(e, "request_id", None)
            if rid < 0 and request_id is not None:
                rid = request_id
            return encode(exception_reply(rid, e))

    def _run(self, job: _Job) -> list[bytes]:
        """Run one session op and encode its reply; any failure (the op's or the reply's) rolls the session back and
        is answered with an error. The reply is remembered for retries of the same seq. Never raises."""
        entry, rid = job.entry, job.req.id
        entry.last_used = time.monotonic()
        op = "session_info" if job.req.op == "info" else job.req.op
        snapshot = None
        try:
            if op in CHANGES_SESSION and not entry.session.closed:
                snapshot = entry.session.snapshot()
            result, out = getattr(self, f"_op_{op}")(entry, job.args, job.arrays)
            head = ok_reply(rid, result)
            frames = encode(head, out)  # before publishing: a reply that cannot be sent undoes the op
        except Exception as e:
            if snapshot is not None:
                entry.session.restore(snapshot)
            head, out = exception_reply(rid, e), []
            frames = encode(head)
        else:
            self._announce(entry, job.req.op, job.args, job.arrays, result, out)
        self._remember(job, head, out)
        return frames

    def _remember(self, job: _Job, head: dict[str, Any], out: list[np.ndarray]) -> None:
        if job.req.seq is not None:
            e = job.entry
            e.last_seq, e.last_reply, e.last_digest = job.req.seq, (head, out), job.digest

    # ----- dynamic batching -------------------------------------------------------------------------------------
    def _batchable(self, job: _Job) -> bool:
        """A well-formed `step` of a session that can share a pass (bad ones run alone and get their error)."""
        if job.req.op != "step" or job.arrays or batch_key(job.entry.session) is None:
            return False
        try:
            job.entry.session._actions(job.args.action)
        except Exception:  # it runs alone and gets its error there
            return False
        return True

    def _others_could_join(self, steps: list[_Job]) -> bool:
        """Whether a session of another client (one with no step waiting: a client waiting for a reply sends nothing
        more) could still share a pass with the waiting steps."""
        keys = {batch_key(j.entry.session) for j in steps}
        owners = {j.identity for j in steps}
        return any(e.owner not in owners and batch_key(e.session) in keys for e in self.sessions.values())

    def _run_steps(self, sock: zmq.Socket, steps: list[_Job]) -> None:
        """Run the waiting steps, one batched pass per group of sessions with the same batch key, and reply."""
        groups: dict[Any, list[_Job]] = {}
        for job in steps:
            groups.setdefault(batch_key(job.entry.session), []).append(job)
        for group in groups.values():
            replies = [self._run(group[0])] if len(group) == 1 else self._run_group(group)
            for job, reply in zip(group, replies, strict=True):
                self._send(sock, job.identity, reply)

    def _run_group(self, group: list[_Job]) -> list[list[bytes]]:
        """One batched pass for the group. If it fails, every session is rolled back and steps alone, so that only
        the one at fault gets an error. Never raises."""
        now = time.monotonic()
        for job in group:
            job.entry.last_used = now
        snapshots = []
        try:
            snapshots = [j.entry.session.snapshot() for j in group]
            results = step_sessions([j.entry.session for j in group], [j.args.action for j in group])
            built = [self._step_reply(j.entry, j.args, r) for j, r in zip(group, results, strict=True)]
            replies = [encode(ok_reply(j.req.id, result), out) for j, (result, out) in zip(group, built, strict=True)]
        except Exception:
            log.exception("bridge: a batched step of %d sessions failed; stepping them one by one", len(group))
            for job, snapshot in zip(group, snapshots, strict=False):
                job.entry.session.restore(snapshot)
            return [self._run(j) for j in group]
        n = len(group)
        stats = self.batching
        stats["passes"] += 1
        stats["batched_steps"] += n
        stats["largest"] = max(stats["largest"], n)
        self._sizes[n] = self._sizes.get(n, 0) + 1
        for job, (result, out) in zip(group, built, strict=True):
            self._announce(job.entry, "step", job.args, job.arrays, result, out)
            self._remember(job, ok_reply(job.req.id, result), out)
        return replies

    def _entry(self, identity: bytes, req: Request) -> Entry:
        if req.session is None:
            raise BridgeError("bad_request", f"op {req.op!r} needs a session token in 'session'; create one with "
                              "the 'create' op.", req.id)
        entry = self.sessions.get(req.session)
        if entry is None or not secrets.compare_digest(entry.owner, identity):
            # The same answer whether the token never existed, expired, or belongs to another client.
            raise BridgeError("not_found", f"no session {req.session[:8]!r}… for this client (closed, expired "
                              "after idle timeout, closed to make room on a full server, or never created here). "
                              "Fix: create a new session.", req.id)
        return entry
