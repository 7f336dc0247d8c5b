"""`WebSocketGateway`: the bridge protocol's ops over WebSocket (JSON headers, binary frames) for browsers, WebXR, Unity
and Godot, with the ZeroMQ server's checks, limits, errors and isolation (bridges/PROTOCOL.md, "WebSocket gateway")."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from worldsim.bridges.ops import Entry, error_reply, exception_reply
from worldsim.bridges.protocol import DTYPES, PROTOCOL_VERSION, BridgeError
from worldsim.bridges.server import BridgeServer
from worldsim.session import Session
from worldsim.world_model import WorldModel

from .envelope import encode_message, request_id, split_message
from .tracks import Tracks

log = logging.getLogger(__name__)

Reply = tuple[dict[str, Any], list[np.ndarray]]
TIMED_OPS = ("reset", "step", "observe", "fork")  # replies that carry `time` and `compute_ms`


@dataclass(frozen=True)
class ExtraOp:
    """An op a gateway adds to the protocol: `fn(session, args) -> (result, reply arrays)`. With `needs_session` the
    request's token is checked like any session op's and `fn` gets that session, else None. It raises BridgeError
    or a WorldSimError for a bad request, answered like the protocol's own errors."""

    fn: Callable[[Session | None, dict[str, Any]], Reply]
    needs_session: bool = True


class WebSocketGateway:
    """Serve `model`'s sessions over WebSocket, and a few static pages over plain HTTP on the same port.

    Requests are answered by a `BridgeServer` that binds no socket (`BridgeServer.handle`): the ops, their checks,
    limits, error codes, roll-back on failure and the per-client session table are the ZeroMQ server's. A client is
    one WebSocket connection; its sessions close when it closes. Model work runs on one worker thread in arrival
    order; the event loop only moves messages. Serve once: `start()` … `stop()`.

    Args:
        model: the world model whose sessions clients create.
        host, port: where to listen (loopback by default; port 0 picks a free one).
        path: the WebSocket endpoint.
        max_message_bytes: the largest request; one up to twice as large gets a "too_large" reply, a larger one
            closes the connection (close code 1009, "message too big") rather than being read into memory.
        max_sessions_per_client, max_sessions, evict_idle_s, idle_timeout_s, max_frames_per_request: as for
            `BridgeServer`.
        timeline_every, timeline_keep: a session created with `timeline: true` keeps a fork of itself every
            `timeline_every` frames, at most `timeline_keep` of them (each holds one KV cache), for `fork` at an
            earlier frame.
        pages: URL path → (content type, body), served to plain HTTP GETs.
        extra_ops: ops added to the protocol (see `ExtraOp`).
        origins: browser origins allowed to connect besides this server's own pages ("http://host:port"); None:
            any. Clients that send no Origin header (programs, not browsers) are always allowed.
        name: the served model's name for `hello`.
    """

    def __init__(self, model: WorldModel, host: str = "127.0.0.1", port: int = 0, *, path: str = "/ws",
                 max_message_bytes: int = 16 * 2**20, max_sessions_per_client: int = 8, max_sessions: int = 64,
                 evict_idle_s: float | None = 60.0, idle_timeout_s: float = 300.0,
                 max_frames_per_request: int = 1024, timeline_every: int = 4, timeline_keep: int = 16,
                 pages: Mapping[str, tuple[str, bytes]] | None = None, extra_ops: Mapping[str, ExtraOp] | None = None,
                 origins: Sequence[str] | None = None, name: str | None = None) -> None:
        self.model = model
        self.bridge = BridgeServer(model, max_message_bytes=max_message_bytes,
                                   max_sessions_per_client=max_sessions_per_client, max_sessions=max_sessions,
                                   evict_idle_s=evict_idle_s, idle_timeout_s=idle_timeout_s,
                                   max_frames_per_request=max_frames_per_request, name=name)
        self.host, self.path, self.max_message_bytes = host, path, max_message_bytes
        self.timeline_every, self.timeline_keep = max(1, timeline_every), max(2, timeline_keep)
        self.pages, self.extra_ops = dict(pages or {}), dict(extra_ops or {})
        self.origins = None if origins is None else set(origins)
        self.calibration = model.calibration
        self._port = port
        self._tracks: dict[str, Tracks] = {}  # token → its timeline and judge; touched on the worker thread only
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="worldsim-gateway")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: Exception | None = None

    # ----- lifecycle ----------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The address of the pages; the WebSocket endpoint is `ws_url`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}/"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:-1] + self.path

    def start(self) -> WebSocketGateway:
        """Serve on a background thread; returns once listening (then `.port`, `.url`); `stop()` ends it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="worldsim-websocket", daemon=True)
            self._thread.start()
            self._ready.wait()
            if self._error is not None:
                self._thread.join()
                raise self._error
        return self

    def stop(self) -> None:
        """Close every connection and session, and stop serving."""
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join()
        self._worker.shutdown()

    def __enter__(self) -> WebSocketGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as e:  # a port in use, say: start() raises it
            self._error = e
        finally:
            self._ready.set()
            self._worker.submit(self._close_all).result()

    async def _main(self) -> None:
        from websockets.asyncio.server import serve  # imported when serving: building the CLI parser stays cheap

        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self._connection, self.host, self._port, process_request=self._http,
                         max_size=2 * self.max_message_bytes, max_queue=4, compression=None) as server:
            self._port = server.sockets[0].getsockname()[1]
            log.info("websocket gateway on %s", self.ws_url)
            self._ready.set()
            while not self._stopping.is_set():
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    await self._in_worker(self._expire)

    # ----- HTTP and connections (event loop) ---------------------------------------------------------------------
    def _http(self, connection: Any, request: Any) -> Any:
        """Upgrade requests to `path` become WebSocket connections; other GETs get a page or 404."""
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        route = request.path.split("?", 1)[0]
        if route == self.path and "websocket" in request.headers.get("Upgrade", "").lower():
            origin = request.headers.get("Origin")
            if origin is None or self._origin_allowed(origin):
                return None
            return connection.respond(http.HTTPStatus.FORBIDDEN, f"pages from {origin} may not connect here; allow "
                                      f"them with --allow-origin {origin}\n")
        if route not in self.pages:
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"no page {route}; the WebSocket endpoint is "
                                      f"{self.path}\n")
        kind, body = self.pages[route]
        headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                           ("X-Content-Type-Options", "nosniff"), ("Connection", "close")])
        return Response(200, "OK", headers, body)

    def _origin_allowed(self, origin: str) -> bool:
        """Any origin without an allow-list; else the listed ones and this server's own pages (on a wildcard
        address, any page on this port)."""
        if self.origins is None or origin in self.origins:
            return True
        scheme, _, rest = origin.partition("://")
        host, _, port = rest.rpartition(":")
        own = {self.host, "localhost", "127.0.0.1", "[::1]"}
        return scheme == "http" and port == str(self._port) and (host in own or self.host in ("0.0.0.0", "::"))

    async def _connection(self, ws: Any) -> None:
        """One client: its requests answered in order; its sessions closed when it goes."""
        from websockets.exceptions import ConnectionClosed
        from websockets.protocol import State

        identity = b"ws-" + secrets.token_bytes(16)
        try:
            async for message in ws:
                if ws.state is not State.OPEN:  # closing: requests still queued are dropped
                    break
                reply = await self._in_worker(self._answer, identity, message)
                if ws.state is not State.OPEN:  # (a send now would wait for the closing handshake to end)
                    break
                await ws.send(reply)
        except ConnectionClosed:
            pass
        finally:
            await self._in_worker(self._forget, identity)

    async def _in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # ----- requests (worker thread) ------------------------------------------------------------------------------
    def _answer(self, identity: bytes, message: str | bytes) -> str | bytes:
        """The reply to one message; never raises."""
        start, rid = time.perf_counter(), -1
        header: dict[str, Any] = {}
        try:
            if len(message) > self.max_message_bytes:
                raise BridgeError("too_large", f"message of {len(message)} bytes; this server accepts at most "
                                  f"{self.max_message_bytes}. Fix: send fewer frames per request.")
            header, bufs = split_message(message)
            rid = request_id(header)
            head, arrays = self._dispatch(identity, header, bufs)
        except Exception as e:
            head, arrays = exception_reply(rid, e), []
        if head["ok"] and isinstance(head["result"], dict):
            head["result"].update(self._extras(header, head["result"], start))
        try:
            return encode_message(head, arrays)
        except ValueError as e:  # a value JSON cannot hold (a non-finite float): an error instead
            return encode_message(error_reply(rid, "internal", f"the reply cannot be written as JSON ({e})."))

    def _dispatch(self, identity: bytes, header: dict[str, Any], bufs: list[bytes]) -> Reply:
        op, args, token = header.get("op"), header.get("args"), header.get("session")
        if isinstance(op, str) and op in self.extra_ops:
            return self._extra(identity, header)
        wants = {}
        if op == "create" and isinstance(args, dict):
            for key in ("timeline", "judge"):
                wants[key] = args.pop(key, False)
                if not isinstance(wants[key], bool):
                    raise BridgeError("bad_request", f"create: {key} {wants[key]!r:.40}; expected true or false.",
                                      request_id(header))
        if op == "fork" and isinstance(args, dict) and "frames" in args:
            return self._fork_at(identity, header, bufs, args.pop("frames"))
        head, arrays = self._handle(identity, header, bufs)
        if head["ok"]:
            if op == "create" and any(wants.values()):  # (a retried create returns the session it made)
                self._tracks.setdefault(head["result"]["session"], Tracks(
                    self.model, self.calibration if wants["judge"] else None,
                    (self.timeline_every, self.timeline_keep) if wants["timeline"] else None))
            self._follow(op, token, header.get("args"), head["result"])
        return head, arrays

    def _handle(self, identity: bytes, header: dict[str, Any], bufs: list[bytes]) -> Reply:
        """The ZeroMQ server's reply to this request, packed as msgpack the way it arrives there."""
        try:
            packed = msgpack.packb(header, use_bin_type=True)
        except (OverflowError, ValueError, TypeError) as e:
            raise BridgeError("bad_header", f"the header does not fit the protocol's types ({e}); integers lie in "
                              "−2⁶³ … 2⁶⁴−1.", request_id(header)) from None
        frames = self.bridge.handle(identity, [packed, *bufs])
        head = msgpack.unpackb(frames[0], raw=False)
        arrays = [np.frombuffer(buf, DTYPES[spec["dtype"]]).reshape(spec["shape"])
                  for spec, buf in zip(head.pop("buffers"), frames[1:], strict=True)]
        return head, arrays

    def _follow(self, op: Any, token: Any, args: Any, result: dict[str, Any]) -> None:
        """Keep a session's timeline and judge in step with an op of it that succeeded (a retry answered from the
        cache adds no frame and changes nothing)."""
        tracks = self._tracks.get(token) if isinstance(token, str) else None
        entry = self.bridge.sessions.get(token) if tracks is not None else None
        if tracks is None or entry is None:
            return
        session = entry.session
        if op == "reset":
            tracks.restart(session, args.get("prompt") if isinstance(args, dict) else None)
        elif op in ("step", "observe") and len(session.frames) == tracks.frames + 1:
            tracks.advance(session, op)
        elif op == "fork" and result["session"] in self.bridge.sessions:
            child = self.bridge.sessions[result["session"]].session
            self._tracks[result["session"]] = tracks.branch(child, len(child.frames))
            return
        if op in ("reset", "step", "observe") and tracks.verdicts:
            result["verdict"] = tracks.verdicts[-1]

    def _fork_at(self, identity: bytes, header: dict[str, Any], bufs: list[bytes], n: Any) -> Reply:
        """`fork` with `frames: n`: a new session that is this one as it was when it held n frames."""
        rid = request_id(header)
        entry = self._entry(identity, header.get("session"), rid)
        tracks = self._tracks.get(header["session"])
        if tracks is None or tracks.timeline is None:
            raise BridgeError("bad_request", "fork: 'frames' needs a session created with timeline: true, after its "
                              "reset; this one keeps no timeline.", rid)
        tl, last = tracks.timeline, len(entry.session.frames)
        if isinstance(n, bool) or not isinstance(n, int) or not tl.first <= n <= last:
            raise BridgeError("bad_request", f"fork: frames {n!r:.40}; expected an int from {tl.first} (the frames "
                              f"given to reset) to {last} (all of them).", rid)
        earlier, replayed, exact = tl.at(entry.session, n)
        current, entry.session = entry.session, earlier  # the protocol's own fork, of the session as it was
        try:
            head, arrays = self._handle(identity, header, bufs)
        finally:
            entry.session = current
        if head["ok"]:
            child = head["result"]["session"]
            self._tracks[child] = tracks.branch(self.bridge.sessions[child].session, n)
            head["result"].update({"frames": n, "replayed": replayed, "exact": exact})
        return head, arrays

    def _extra(self, identity: bytes, header: dict[str, Any]) -> Reply:
        rid, op = request_id(header), header["op"]
        if header.get("v") != PROTOCOL_VERSION:
            raise BridgeError("bad_version", f"protocol version {header.get('v')!r:.40}; this side speaks "
                              f"v={PROTOCOL_VERSION}.", rid)
        extra, args = self.extra_ops[op], header.get("args", {})
        if not isinstance(args, dict):
            raise BridgeError("bad_request", f"{op}: args {args!r:.60}; expected an object.", rid)
        if header.get("buffers"):
            raise BridgeError("bad_request", f"{op} takes no buffers.", rid)
        session = self._entry(identity, header.get("session"), rid).session if extra.needs_session else None
        try:
            result, arrays = extra.fn(session, args)
        except BridgeError as e:
            raise BridgeError(e.code, e.message, rid) from None
        return {"v": PROTOCOL_VERSION, "id": rid, "ok": True, "result": result, "error": None}, list(arrays)

    def _entry(self, identity: bytes, token: Any, rid: int) -> Entry:
        entry = self.bridge.sessions.get(token) if isinstance(token, str) else None
        if entry is None or not secrets.compare_digest(entry.owner, identity):
            raise BridgeError("not_found", f"no session {str(token)[:8]!r}… for this connection (closed, expired, or "
                              "never created here). Fix: create a new session.", rid)
        entry.last_used = time.monotonic()
        return entry

    def _extras(self, header: dict[str, Any], result: dict[str, Any], start: float) -> dict[str, Any]:
        """What the gateway adds to a reply: when a frame was ready and what the request cost; its own features
        in `hello`."""
        op = header.get("op")
        out: dict[str, Any] = {}
        if op in TIMED_OPS:
            out = {"time": time.time(), "compute_ms": (time.perf_counter() - start) * 1000}
        if op == "hello":
            out["websocket"] = {"path": self.path, "close_above_bytes": 2 * self.max_message_bytes,
                                "calibrated": self.calibration is not None, "extra_ops": sorted(self.extra_ops),
                                "timeline": {"every": self.timeline_every, "keep": self.timeline_keep}}
        return out

    # ----- session upkeep (worker thread) ------------------------------------------------------------------------
    def _forget(self, identity: bytes) -> None:
        """A connection closed: close its sessions."""
        for token in [t for t, e in self.bridge.sessions.items() if e.owner == identity]:
            self.bridge.sessions.pop(token).session.close()
        self._prune()

    def _expire(self) -> None:
        self.bridge._expire()  # the ZeroMQ server's idle timeout, on its session table
        self._prune()

    def _prune(self) -> None:
        for token in [t for t in self._tracks if t not in self.bridge.sessions]:
            del self._tracks[token]

    def _close_all(self) -> None:
        for entry in self.bridge.sessions.values():
            entry.session.close()
        self.bridge.sessions.clear()
        self._tracks.clear()
