"""Bridge under hostile clients, on loopback: seeded fuzzing of every op, failures inside a step, a reconnect flood.

Whatever a request does, the server answers it (an error at worst), keeps serving, and a healthy session next to
the hostile ones steps bit for bit as an in-process session with the same seed.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

import msgpack
import numpy as np
import pytest
import zmq

from worldsim.bridges import PROTOCOL_VERSION, BridgeError, BridgeServer, RemoteWorldModel, Reply, decode, encode
from worldsim.bridges.protocol import ARGS, MAX_HEADER_BYTES, MAX_TAG_BYTES, OPS

TIMEOUT_MS = 10_000
# Every code a bad request may get. Not "internal": that is a server bug.
CODES = {"bad_header", "bad_version", "bad_op", "bad_buffer", "too_large", "bad_request", "not_found", "stale_seq",
         "seq_reused", "too_many_sessions", "busy", "bad_config", "invalid_frames", "invalid_action", "session_state",
         "worldsim_error"}


def frames_like(n: int, seed: int = 0, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def header(op, rid: int = 1, session=None, seq=None, args=None) -> dict:
    return {"v": PROTOCOL_VERSION, "id": rid, "op": op, "session": session, "seq": seq, "args": args or {}}


class Raw:
    """A DEALER socket speaking the wire format directly (what a hostile client would send)."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def rpc(self, frames: list[bytes], timeout_ms: int = TIMEOUT_MS) -> tuple[Reply, list[np.ndarray]]:
        self.sock.send_multipart(frames)
        assert self.sock.poll(timeout_ms, zmq.POLLIN), "no reply from the server"
        reply, arrays = decode(self.sock.recv_multipart())
        assert isinstance(reply, Reply)
        return reply, arrays

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


def junk(rng: np.random.Generator, depth: int = 0):
    """A random msgpack value: wrong types, extremes, NaN, huge strings, nesting."""
    pool = [None, True, False, 0, -1, 1, 2**63 - 1, -(2**63), 2**64 - 1, 0.0, -0.0, 1.5, -1e308, math.nan, math.inf,
            -math.inf, "", "stay", "move up", "é" * 3, b"\0\xff", "x" * int(rng.integers(1, 3000))]
    kind = int(rng.integers(0, 10 if depth < 2 else 8))
    if kind < 8:
        return pool[int(rng.integers(0, len(pool)))]
    if kind == 8:
        return [junk(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))]
    return {str(rng.integers(0, 5)): junk(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))}


def hostile(rng: np.random.Generator, token: str, seq: int, others: list[str]) -> tuple[list[bytes], bool]:
    """One hostile request (frames) for a client that owns session `token` (next free seq `seq`); `others` are tokens
    of other clients. Returns the frames and whether it is a request on `token`."""
    op = str(rng.choice(OPS))
    kind = int(rng.integers(0, 12))
    rid = int(rng.integers(0, 2**31))
    session = token if op in ("reset", "step", "observe", "fork", "close") else None
    if kind == 0:  # the op's own fields with junk values, and a stray key now and then
        fields = list(ARGS[op].model_fields) or ["x"]
        args = {str(rng.choice(fields)): junk(rng) for _ in range(int(rng.integers(1, 4)))}
        if rng.random() < 0.2:
            args["nonsense"] = 1
        return encode(header(op, rid, session, seq, args)), session is not None
    if kind == 1:  # hostile create settings: NaN, inf, zero, negative, huge, wrong types
        key = str(rng.choice(["temperature", "tol", "guidance", "chunk", "max_iter", "best_of", "seed", "sampler",
                              "denoise", "context"]))
        value = [math.nan, math.inf, -math.inf, 0, -1, 0.0, -1.0, 2**40, 65, "3", None, True][int(rng.integers(0, 12))]
        return encode(header("create", rid, args={key: value, "freeze_prefix": bool(rng.random() < 0.5)})), False
    if kind == 2:  # tags around and over the limit
        size = int(rng.choice([MAX_TAG_BYTES - 64, MAX_TAG_BYTES + 1, 20_000, MAX_HEADER_BYTES - 200]))
        return encode(header("step", rid, token, seq, {"action": "stay", "tag": {"t": "x" * size}})), True
    if kind == 3:  # frames of the wrong size, dtype, rank, count
        shape = [(1, 8, 8, 3), (0, 16, 16, 3), (5, 16, 16, 3), (16, 16, 3), (1, 16, 16, 4), (2, 16, 16, 3)][
            int(rng.integers(0, 6))]
        dtype = np.uint8 if rng.random() < 0.8 else np.float32
        op = str(rng.choice(["reset", "observe", "score"]))
        arrays = [np.zeros(shape, dtype)] * (1 if rng.random() < 0.9 else 2)
        return encode(header(op, rid, None if op == "score" else token, seq), arrays), op != "score"
    if kind == 4:  # somebody else's token, or made-up ones
        other = others[int(rng.integers(0, len(others)))] if others and rng.random() < 0.5 else rng.bytes(16).hex()
        return encode(header(str(rng.choice(["step", "reset", "close", "fork", "info"])), rid, other, 1,
                             {"action": "stay"} if rng.random() < 0.5 else {})), False
    if kind == 5:  # the last seq again with another request, or an older one
        back = int(rng.integers(1, 3))
        return encode(header("step", rid, token, max(0, seq - back),
                             {"action": str(rng.choice(["stay", "move up", "jump"]))})), True
    if kind == 6:  # unknown ops, versions and header fields of the wrong type
        h = header(op, rid, session, seq)
        h[str(rng.choice(["op", "v", "id", "seq", "session", "args"]))] = junk(rng)
        return [msgpack.packb(h)], False
    if kind == 7:  # a message above max_message_bytes (100 kB), spread over frames each below it
        return encode(header("score", rid), [np.zeros(60_000, np.uint8)] * 2), False
    if kind == 8:  # bytes that are not msgpack at all
        return [rng.bytes(int(rng.integers(0, 80))) for _ in range(int(rng.integers(1, 4)))], False
    if kind == 9:  # valid requests the session may or may not be ready for
        act = str(rng.choice(["stay", "move up", "move left"]))
        args = {"step": {"action": act}, "observe": {"action": act}, "reset": {"prompt": "a room"},
                "fork": {"seed": 1}, "info": {}, "close": {}}
        op = str(rng.choice(list(args)))
        arrays = [frames_like(1)[0]] if op == "observe" else []
        return encode(header(op, rid, token, seq, args[op]), arrays), True
    if kind == 10:  # actions: unknown, empty, huge, non-strings
        action = ["", "jump", "stay " * 300, "x" * 5000, 3, None, ["stay"]][int(rng.integers(0, 7))]
        return encode(header("step", rid, token, seq, {"action": action})), True
    return encode(header(str(rng.choice(["hello", "ping", "info"])), rid)), False  # kind 11: harmless ones


def test_fuzz_every_op_then_a_healthy_session_steps_bit_for_bit(tiny):
    """Seeded random hostile requests of every op (bounded in count and time); after each batch the server answers
    `ping` and a healthy session steps exactly as an in-process session with its seed does."""
    rng = np.random.default_rng(30)
    actions = ["move up", "move left", "stay", "move right", "move down"]
    with BridgeServer(tiny, max_message_bytes=100_000, max_frames_per_request=4, max_sessions_per_client=3,
                      max_sessions=8, pub_address="tcp://127.0.0.1:0", private_stream=True) as srv, \
            RemoteWorldModel(srv.port, timeout_s=10.0) as good_client, good_client.session(seed=7) as good, \
            tiny.session(seed=7) as reference:
        start = frames_like(1, seed=2)
        assert np.array_equal(good.reset(frames=start), reference.reset(frames=start))
        raw = Raw(srv.endpoint)
        token, seq, sent, codes, forks = None, 1, 0, set(), []
        deadline = time.monotonic() + 60  # a bound on the test's time, not a measurement: it stops early if slow
        try:
            for batch in range(12):
                for _ in range(40):
                    if token is None:
                        for child in forks:  # make room: this client may hold 3 sessions
                            raw.rpc(encode(header("close", 1, child)))
                        forks = []
                        reply, _ = raw.rpc(encode(header("create", int(rng.integers(0, 2**31)), args={"seed": 1})))
                        assert reply.ok, reply.error
                        token, seq = reply.result["session"], 1
                        raw.rpc(encode(header("reset", 1, token, seq), [frames_like(1)]))
                        seq += 1
                    frames, mine = hostile(rng, token, seq, [good.token])
                    reply, arrays = raw.rpc(frames)
                    sent += 1
                    seq += 1
                    if reply.ok:
                        decode(frames)  # anything accepted must have been a valid request
                        if mine and "closed" in reply.result:
                            token = None
                        elif "session" in reply.result:  # a fork, or a create whose settings were valid
                            forks.append(reply.result["session"])
                    else:
                        codes.add(reply.error.code)
                        assert reply.error.code in CODES, reply.error
                        assert arrays == [] and len(reply.error.message) <= 2000
                assert good_client.ping() >= 0
                a = actions[batch % len(actions)]
                want, got = reference.step(a), good.step(a)
                assert np.array_equal(want.frame, got.frame) and want.log_prob == got.log_prob, batch
                if time.monotonic() > deadline:
                    break
        finally:
            raw.close()
        assert srv._thread.is_alive() and sent >= 40
        assert {"bad_request", "too_large", "seq_reused", "not_found", "bad_header"} <= codes, codes
        assert len(srv.sessions) <= srv.max_sessions


def test_a_failing_step_answers_and_leaves_its_session_as_it_was(tiny):
    """A step that fails inside the model (here: a server-side reward function that raises, after the KV cache was
    written) gets an 'internal' error; the session is rolled back, so its next steps equal a reference's."""
    with BridgeServer(tiny) as srv, RemoteWorldModel(srv.port, timeout_s=10.0) as c, c.session(seed=3) as s, \
            tiny.session(seed=3) as reference:
        start = frames_like(1, seed=4)
        s.reset(frames=start)
        reference.reset(frames=start)
        assert np.array_equal(s.step("stay").frame, reference.step("stay").frame)
        served = srv.sessions[s.token].session
        served.reward_fn = lambda frame, action: 1 / 0
        with pytest.raises(BridgeError, match=r"ZeroDivisionError.*the session is as it was") as info:
            s.step("move up")
        assert info.value.code == "internal"
        served.reward_fn = None
        assert s.info()["steps"] == 2
        for a in ["move up", "stay"]:
            want, got = reference.step(a), s.step(a)
            assert np.array_equal(want.frame, got.frame) and want.log_prob == got.log_prob
        # a failed reset (wrong frame size, zero frames) leaves the history it had, too
        for bad, code in ((np.zeros((1, 8, 8, 3), np.uint8), "invalid_frames"),
                          (np.zeros((0, 16, 16, 3), np.uint8), "invalid_frames")):
            with pytest.raises(BridgeError) as info:
                s.reset(frames=bad)
            assert info.value.code == code
        want, got = reference.step("move left"), s.step("move left")
        assert np.array_equal(want.frame, got.frame) and want.log_prob == got.log_prob
        assert c.ping() >= 0


def test_a_failing_batched_pass_falls_back_to_lone_steps(tiny, caplog):
    """Killer 1 of the hardening issue: a session with chunk=-1 stepped in a batched pass ended the server
    (UnboundLocalError). `create` now refuses chunk < 1; a pass that fails anyway (settings forced here, past
    validation) rolls every session back and steps each alone: the broken ones get 'internal', the others their
    frames, and the server keeps serving."""
    with BridgeServer(tiny, batch_window_ms=200) as srv, RemoteWorldModel(srv.port, timeout_s=10.0) as c1, \
            RemoteWorldModel(srv.port, timeout_s=10.0) as c2:
        with pytest.raises(BridgeError, match="chunk=-1: it must be ≥ 1") as info:
            c1.session(chunk=-1, freeze_prefix=False)
        assert info.value.code == "bad_config"
        sessions = [c.session(seed=i, freeze_prefix=False) for i, c in enumerate((c1, c2))]
        references = [tiny.session(seed=i, freeze_prefix=False) for i in range(2)]
        for s, r in zip(sessions, references, strict=True):
            s.reset(frames=frames_like(1))
            r.reset(frames=frames_like(1))
        for s in sessions:  # both broken alike, so that they still share a batch key
            served = srv.sessions[s.token].session
            served.sampling = replace(served.sampling, chunk=-1)
        errors = [None, None]

        def step(i: int) -> None:
            try:
                sessions[i].step("stay")
            except BridgeError as e:
                errors[i] = e.code

        threads = [threading.Thread(target=step, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == ["internal", "internal"]
        assert "a batched step of 2 sessions failed; stepping them one by one" in caplog.text
        for s in sessions:
            served = srv.sessions[s.token].session
            served.sampling = replace(served.sampling, chunk=None)
        for s, r in zip(sessions, references, strict=True):
            want, got = r.step("move up"), s.step("move up")
            assert np.array_equal(want.frame, got.frame) and want.log_prob == got.log_prob
        assert c1.ping() >= 0


def test_huge_tags_are_refused_before_the_step(tiny):
    """Killer 2: a tag of ~65,400 characters made the frame-stream header too large and ended the server; a bit
    smaller, the client got too_large but the session had advanced. Now the tag is refused before the step."""
    with BridgeServer(tiny, pub_address="tcp://127.0.0.1:0") as srv, \
            RemoteWorldModel(srv.port, timeout_s=10.0) as c, c.session(seed=1) as s, tiny.session(seed=1) as ref:
        s.reset(frames=frames_like(1))
        ref.reset(frames=frames_like(1))
        for size in (MAX_TAG_BYTES, 65_000, 65_400):
            with pytest.raises(BridgeError, match=f"tag of {size + 6} bytes as msgpack; at most {MAX_TAG_BYTES}") \
                    as info:
                s.step("stay", tag={"t": "x" * size})
            assert info.value.code == "too_large"
        with pytest.raises(BridgeError, match="header of .* bytes; at most 65536") as info:
            s.step("stay", tag={"t": "x" * 70_000})
        assert info.value.code == "too_large" and s.info()["steps"] == 1
        tag = {"t": "x" * (MAX_TAG_BYTES - 100)}
        want, got = ref.step("stay"), s.step("stay", tag=tag)
        assert np.array_equal(want.frame, got.frame) and got.info["tag"] == tag
        assert c.ping() >= 0


def test_reconnect_flood_is_capped(tiny):
    """New connections get round the per-client limit; the global cap holds: past max_sessions a create (or fork)
    gets 'busy', the server holds at most max_sessions sessions (each one KV cache), and it keeps serving."""
    cap = 6
    with BridgeServer(tiny, max_sessions_per_client=3, max_sessions=cap, evict_idle_s=None) as srv:
        clients = [RemoteWorldModel(srv.port, timeout_s=10.0) for _ in range(8)]
        try:
            held, busy = [], []
            for c in clients:  # 8 connections × 2 sessions, each reset (so each holds its cache)
                for _ in range(2):
                    try:
                        s = c.session()
                    except BridgeError as e:
                        busy.append(e)
                        continue
                    s.reset(frames=frames_like(1))
                    held.append(s)
            assert len(held) == cap == len(srv.sessions) and len(busy) == 16 - cap
            assert {e.code for e in busy} == {"busy"}
            assert "the server holds 6 sessions, its limit (max_sessions)" in busy[0].message
            with pytest.raises(BridgeError, match="its limit") as info:
                held[0].fork()
            assert info.value.code == "busy"
            per_session = {sum(t.numel() * t.element_size() for t in e.session.state.cache.k + e.session.state.cache.v)
                           for e in srv.sessions.values()}
            assert len(per_session) == 1  # memory is cap × one session's cache, however many connections came
            assert clients[-1].info()["server_sessions"] == cap and clients[-1].hello()["limits"]["max_sessions"] == cap
            held[0].close()
            assert clients[-1].session().token  # room again
        finally:
            for c in clients:
                c.close()


def test_a_full_server_closes_its_longest_idle_session(tiny):
    with BridgeServer(tiny, max_sessions=2, evict_idle_s=0.5) as srv, \
            RemoteWorldModel(srv.port, timeout_s=10.0) as c1, RemoteWorldModel(srv.port, timeout_s=10.0) as c2:
        a, b = c1.session(), c1.session()
        with pytest.raises(BridgeError, match="idle 0.5 s makes room") as info:
            c2.session()
        assert info.value.code == "busy"
        threading.Event().wait(0.7)
        b.reset(frames=frames_like(1))  # b is in use; a has been idle longest
        c = c2.session()
        assert set(srv.sessions) == {b.token, c.token}
        with pytest.raises(BridgeError, match="closed to make room on a full server") as info:
            a.reset(frames=frames_like(1))
        assert info.value.code == "not_found"
