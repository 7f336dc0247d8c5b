"""Bridge: codec properties, and a real BridgeServer on loopback against RemoteWorldModel and raw DEALER sockets."""

from __future__ import annotations

import threading

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from worldsim.bridges import (
    PROTOCOL_VERSION,
    BridgeError,
    BridgeServer,
    BridgeTimeout,
    RemoteWorldModel,
    Reply,
    Request,
    decode,
    encode,
)
from worldsim.bridges.protocol import MAX_BUFFERS, MAX_HEADER_BYTES

TIMEOUT_MS = 5000


def frames_like(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def header(op: str = "ping", **kw) -> dict:
    return {"v": PROTOCOL_VERSION, "id": kw.pop("id", 1), "op": op, "session": None, "seq": None, "args": {}, **kw}


@pytest.fixture(scope="module")
def server(tiny):
    srv = BridgeServer(tiny, max_sessions_per_client=3).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    with RemoteWorldModel(server.port, timeout_s=5.0) as c:
        yield c


@pytest.fixture
def raw(server):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    yield sock
    sock.close(linger=0)
    ctx.term()


def rpc(sock: zmq.Socket, frames: list[bytes]) -> tuple[Reply, list[np.ndarray]]:
    sock.send_multipart(frames)
    assert sock.poll(TIMEOUT_MS, zmq.POLLIN), "no reply from the server"
    reply, arrays = decode(sock.recv_multipart())
    assert isinstance(reply, Reply)
    return reply, arrays


# ----- codec ----------------------------------------------------------------------------------------------------
def test_encode_decode_round_trip():
    arrays = [frames_like(2), np.arange(6, dtype=np.float32).reshape(2, 3), np.array([-1, 2**40], np.int64),
              np.zeros((0, 3), np.uint8)]
    frames = encode(header("step", session="ab", seq=3, args={"action": "stay"}), arrays)
    assert len(frames) == 5 and all(isinstance(f, bytes) for f in frames)
    assert msgpack.unpackb(frames[0])["buffers"][0] == {"dtype": "uint8", "shape": [2, 16, 16, 3]}
    assert frames[1] == arrays[0].tobytes()  # raw C-order bytes, not element-wise msgpack
    req, out = decode(frames)
    assert isinstance(req, Request) and req.op == "step" and req.seq == 3 and req.args == {"action": "stay"}
    for a, b in zip(arrays, out, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    rep, out = decode(encode({"v": 1, "id": 7, "ok": False, "result": None,
                              "error": {"code": "x", "message": "y"}}))
    assert isinstance(rep, Reply) and rep.error.code == "x" and out == []


def test_encode_non_contiguous_and_big_endian():
    a = np.arange(12, dtype=">f4").reshape(3, 4).T  # Fortran order, big-endian
    _, (b,) = decode(encode(header(), [a]))
    assert np.array_equal(a, b) and b.dtype == np.dtype("<f4")


BAD = [
    ([b"\xc1"], "bad_header", "not a single msgpack value"),
    ([msgpack.packb([1, 2])], "bad_header", "expected a map"),
    ([msgpack.packb({"v": 1, "id": 1})], "bad_header", "neither 'op'"),
    ([msgpack.packb(header(id="1"))], "bad_header", "id: Input should be a valid integer"),
    ([msgpack.packb(header(args=[1]))], "bad_header", "args: Input should be a valid dictionary"),
    ([msgpack.packb(header(extra=1))], "bad_header", "extra: Extra inputs are not permitted"),
    ([msgpack.packb(header(id=-5))], "bad_header", "greater than or equal to 0"),
    ([msgpack.packb({"v": 1, "id": 1, "ok": True, "error": {"code": "x", "message": "y"}})], "bad_header",
     "ok=true with no error"),
    ([msgpack.packb(header(v=2))], "bad_version", "protocol version 2; this side speaks v=1"),
    ([msgpack.packb({k: v for k, v in header().items() if k != "v"})], "bad_version", "protocol version None"),
    ([msgpack.packb(header("stepp"))], "bad_op", "unknown op 'stepp'.*Did you mean 'step'"),
    ([msgpack.packb(header(7))], "bad_op", "unknown op 7"),
    ([msgpack.packb(header(buffers={}))], "bad_buffer", "'buffers' is dict"),
    ([msgpack.packb(header(buffers=[{"dtype": "uint8", "shape": [1]}]))], "bad_buffer", "lists 1 buffers but 0"),
    ([msgpack.packb(header(buffers=[{"dtype": "float64", "shape": [1]}])), b"\0" * 8], "bad_buffer",
     "dtype 'float64'; expected one of"),
    ([msgpack.packb(header(buffers=[{"dtype": "uint8", "shape": [2, 3]}])), b"\0" * 5], "bad_buffer",
     r"needs 6 bytes; the frame has 5"),
    ([msgpack.packb(header(buffers=[{"dtype": "int64", "shape": [2**62, 2**62]}])), b"\0"], "bad_buffer",
     "needs 170141183460469231731687303715884105728 bytes"),
    ([msgpack.packb(header(buffers=[{"dtype": "uint8", "shape": [-1]}])), b""], "bad_buffer", "non-negative ints"),
    ([msgpack.packb(header(buffers=[{"dtype": "uint8"}])), b""], "bad_buffer", "expected exactly"),
    ([b"\x80" + b"\0" * MAX_HEADER_BYTES], "too_large", f"at most {MAX_HEADER_BYTES}"),
    ([msgpack.packb(header())] + [b""] * (MAX_BUFFERS + 1), "too_large", f"at most {MAX_BUFFERS} allowed"),
    ([], "bad_header", "empty message"),
]


@pytest.mark.parametrize(("frames", "code", "message"), BAD)
def test_decode_rejects(frames, code, message):
    with pytest.raises(BridgeError, match=message) as info:
        decode(frames)
    assert info.value.code == code


def test_decode_raises_only_bridge_errors_on_corrupted_messages():
    """Byte flips, truncations and extensions of valid messages: decode returns a valid model or a BridgeError."""
    rng = np.random.default_rng(1)
    base = [encode(header("step", session="ab" * 16, seq=2, args={"action": "stay", "tag": {"t": 1.5}})),
            encode(header("observe", session="cd" * 16, seq=3), [frames_like(1)]),
            encode({"v": 1, "id": 4, "ok": True, "result": {"log_prob": -3.0}, "error": None},
                   [np.ones(4, np.float32)])]
    codes = set()
    for _ in range(2000):
        frames = [bytearray(f) for f in base[int(rng.integers(0, len(base)))]]
        head = frames[0]
        for _ in range(int(rng.integers(1, 4))):
            kind = int(rng.integers(0, 3))
            if kind == 0 and head:
                head[int(rng.integers(0, len(head)))] = int(rng.integers(0, 256))
            elif kind == 1 and head:
                del head[int(rng.integers(0, len(head))):]
            else:
                head.extend(rng.bytes(int(rng.integers(1, 8))))
        try:
            model, arrays = decode([bytes(f) for f in frames])
            assert isinstance(model, (Request, Reply)) and all(isinstance(a, np.ndarray) for a in arrays)
        except BridgeError as e:
            codes.add(e.code)
    assert codes <= {"bad_header", "bad_version", "bad_op", "bad_buffer", "too_large"} and "bad_header" in codes


def test_encode_rejects_dtype():
    with pytest.raises(BridgeError, match="dtype bool; expected one of") as info:
        encode(header(), [np.zeros(3, bool)])
    assert info.value.code == "bad_buffer"


# ----- server against the in-process model ------------------------------------------------------------------------
def test_remote_matches_local(tiny, client):
    start = frames_like(2, seed=3)
    with tiny.session(seed=5) as local, client.session(seed=5) as remote:
        assert np.array_equal(local.reset(frames=start, actions=["stay"]),
                              remote.reset(frames=start, actions=["stay"]))
        for action in ["move up", "move left", "stay"]:
            a, b = local.step(action), remote.step(action)
            assert np.array_equal(a.frame, b.frame) and b.frame.dtype == np.uint8
            assert a.log_prob == pytest.approx(b.log_prob, abs=0) and a.bits_per_dim == pytest.approx(b.bits_per_dim)
            assert (a.reward, a.terminated) == (pytest.approx(b.reward), b.terminated)
            assert a.info["iterations"] == b.info["iterations"]
        real = frames_like(1, seed=9)[0]
        assert local.observe(real, "stay") == pytest.approx(remote.observe(real, "stay"), abs=0)
        la, ra = local.fork(seed=2), remote.fork(seed=2)
        assert np.array_equal(la.step("move down").frame, ra.step("move down").frame)
        ra.close()
    clip = frames_like(4, seed=4)
    want, got = tiny.score(clip, ["stay"] * 3), client.score(clip, ["stay"] * 3)
    assert np.allclose(want.log_prob, got.log_prob) and got.log_prob.dtype == np.float32
    assert np.allclose(want.bits_per_dim, got.bits_per_dim) and got.token_log_prob.shape == want.token_log_prob.shape
    assert got.space == want.space
    assert np.allclose(want.surprise, got.surprise) and got.surprise_unit == "nats" and got.verdict is None


def test_remote_scores_carry_the_calibrated_verdict():
    from worldsim import WorldModel
    from worldsim.envs.pushworld_eval import held_out_clip

    wm = WorldModel.from_pretrained("pushworld-64")  # ships with a calibration
    clip = held_out_clip(64, seed=5, index=0, episodes=1, length=4)
    with BridgeServer(wm) as srv, RemoteWorldModel(srv.port, timeout_s=10.0) as remote:
        want, got = wm.score(clip.frames, clip.actions), remote.score(clip.frames, clip.actions)
    assert got.surprise_unit == "z" and got.surprise.shape == (4, 8, 8)
    np.testing.assert_allclose(got.surprise, want.surprise, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.verdict.percentile, want.verdict.percentile)
    assert got.verdict.implausible.tolist() == want.verdict.implausible.tolist()
    assert got.verdict.threshold_percentile == want.verdict.threshold_percentile


def test_prompt_reset_and_info(tiny, client):
    info = client.hello()
    assert info["protocol"] == PROTOCOL_VERSION and (info["height"], info["width"]) == (16, 16)
    assert info["model"] == info["served"] == "tiny" and info["frame_stream"] is None
    assert info["limits"]["max_tag_bytes"] == 8192 and info["limits"]["max_sessions"] == 256
    assert tuple(info["actions"]) == tiny.vocabulary == client.vocabulary
    assert client.ping() >= 0
    with tiny.session(seed=1) as local, client.session(seed=1) as remote:
        assert np.array_equal(local.reset(prompt="a room"), remote.reset(prompt="a room"))
        assert remote.info()["steps"] == 1
        assert client.info()["sessions"] == 1


def test_retried_seq_does_not_advance(tiny, raw):
    reply, _ = rpc(raw, encode(header("create", args={"seed": 4})))
    token = reply.result["session"]
    rpc(raw, encode(header("reset", id=2, session=token, seq=1), [frames_like(1)]))
    step = encode(header("step", id=3, session=token, seq=2, args={"action": "stay"}))
    first, (f1,) = rpc(raw, step)
    again, (f2,) = rpc(raw, step)  # the same request again: a retry
    assert again.result == first.result and np.array_equal(f1, f2)
    _, (f3,) = rpc(raw, encode(header("step", id=4, session=token, seq=3, args={"action": "stay"})))
    with tiny.session(seed=4) as local:
        local.reset(frames=frames_like(1))
        assert np.array_equal(local.step("stay").frame, f1)
        assert np.array_equal(local.step("stay").frame, f3)  # one step per seq, not two for the retry
    stale, _ = rpc(raw, encode(header("step", id=5, session=token, seq=2, args={"action": "stay"})))
    assert stale.error.code == "stale_seq" and "seq 2 is older than this session's last seq 3" in stale.error.message
    create = encode(header("create", id=6))
    assert rpc(raw, create)[0].result == rpc(raw, create)[0].result  # a retried create makes one session
    rpc(raw, encode(header("close", id=7, session=token, seq=4)))


def test_reused_seq_with_another_request_is_refused(tiny, raw):
    """The same seq is a retry only with the same request: another op, action or buffer gets 'seq_reused' (not the
    cached reply as if it had run), and the session is unchanged."""
    token = rpc(raw, encode(header("create", id=11, args={"seed": 2})))[0].result["session"]
    rpc(raw, encode(header("reset", id=12, session=token, seq=1), [frames_like(1)]))
    first, (frame,) = rpc(raw, encode(header("step", id=13, session=token, seq=2, args={"action": "stay"})))
    for other in (encode(header("step", id=14, session=token, seq=2, args={"action": "move up"})),
                  encode(header("step", id=14, session=token, seq=2, args={"action": "stay", "tag": {"t": 1}})),
                  encode(header("observe", id=14, session=token, seq=2), [frames_like(1)[0]]),
                  encode(header("reset", id=14, session=token, seq=1), [frames_like(1, seed=5)])):
        reply, _ = rpc(raw, other)
        assert not reply.ok and reply.id == 14
        assert reply.error.code in ("seq_reused", "stale_seq"), reply.error
    assert reply.error.code == "stale_seq"
    reply, _ = rpc(raw, encode(header("step", id=15, session=token, seq=2, args={"action": "move up"})))
    assert reply.error.code == "seq_reused" and "seq 2 already answered another request" in reply.error.message
    assert "give every new request the next seq (3)" in reply.error.message
    again, (same,) = rpc(raw, encode(header("step", id=16, session=token, seq=2, args={"action": "stay"})))
    assert again.ok and again.id == 16 and again.result == first.result and np.array_equal(same, frame)
    info, _ = rpc(raw, encode(header("info", id=17, session=token, seq=3)))
    assert info.result["steps"] == 2 and info.result["last_seq"] == 2  # the last seq before this request
    rpc(raw, encode(header("close", id=18, session=token, seq=4)))


def test_client_retries_same_request_then_gets_reply():
    """A ROUTER that ignores the first attempt: the client resends the same id/seq and accepts the late answer."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    seen = []

    def fake_server():
        for _ in range(2):
            if not router.poll(TIMEOUT_MS, zmq.POLLIN):
                return
            ident, *frames = router.recv_multipart()
            seen.append(decode(frames)[0])
        router.send_multipart([ident, *encode({"v": 1, "id": seen[-1].id, "ok": True, "result": {"log_prob": 1.0},
                                               "error": None})])

    thread = threading.Thread(target=fake_server)
    thread.start()
    try:
        with RemoteWorldModel(port, timeout_s=0.3, retries=2) as c:
            assert c.call("step", session="t", seq=9, args={"action": "stay"})[0] == {"log_prob": 1.0}
    finally:
        thread.join(timeout=10)
        router.close(linger=0)
        ctx.term()
    assert len(seen) == 2 and seen[0] == seen[1] and seen[0].seq == 9


def test_unreachable_server_times_out():
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    s.close(linger=0)
    ctx.term()
    with RemoteWorldModel(port, timeout_s=0.2, retries=1) as c:
        with pytest.raises(BridgeTimeout, match=r"no reply from .* to 'ping' within 0.2 s after 2 attempts") as info:
            c.ping()
        assert isinstance(info.value, TimeoutError) and info.value.code == "timeout"


def test_token_bound_to_its_client(server, client):
    other = RemoteWorldModel(server.port, timeout_s=5.0)
    try:
        with client.session(seed=0) as mine:
            mine.reset(frames=frames_like(1))
            with pytest.raises(BridgeError, match="no session .* for this client") as stolen:
                other.call("step", session=mine.token, seq=1, args={"action": "stay"})
            with pytest.raises(BridgeError) as unknown:
                other.call("step", session="0" * 32, seq=1, args={"action": "stay"})
            assert stolen.value.code == unknown.value.code == "not_found"
            assert mine.step("stay").frame.shape == (16, 16, 3)  # the owner is unaffected
    finally:
        other.close()


ERRORS = [  # (op, args, buffers, needs a reset session, code, message)
    ("step", {"action": "jump"}, [], True, "invalid_action", "unknown action 'jump'"),
    ("step", {}, [], True, "bad_request", "step: invalid args .*action: Field required"),
    ("step", {"action": 3}, [], True, "bad_request", "action.*Input should be a valid (string|list)"),
    ("step", {"action": "stay"}, [frames_like(1)], True, "bad_request", "step takes no buffers"),
    ("step", {"action": "stay"}, [], False, "session_state", "step/observe called before reset"),
    ("observe", {}, [frames_like(1)], True, "invalid_frames", "frame"),
    ("observe", {}, [], True, "bad_request", "expected 1 buffer"),
    ("reset", {}, [], False, "bad_request", "reset needs a frames buffer"),
    ("reset", {}, [np.zeros((1, 8, 8, 3), np.uint8)], False, "invalid_frames", "frames"),
    ("reset", {"actions": ["stay"]}, [frames_like(3)], False, "invalid_action", "received 1 for a clip of 3 frames"),
    ("fork", {"seed": "1"}, [], False, "bad_request", "seed: Input should be a valid integer"),
]


@pytest.mark.parametrize(("op", "args", "arrays", "reset", "code", "message"), ERRORS)
def test_session_error_replies(client, op, args, arrays, reset, code, message):
    with client.session(seed=0) as s:
        if reset:
            s.reset(frames=frames_like(1))
        with pytest.raises(BridgeError, match=message) as info:
            s.call(op, args, arrays)
        assert info.value.code == code
        s.reset(frames=frames_like(1))  # the session still works after the error
        assert s.step("stay").frame.shape == (16, 16, 3)


def test_request_level_error_replies(server, client, raw):
    cases = [
        (lambda: client.session(sampler="magic"), "bad_config", "sampler='magic' is not supported"),
        (lambda: client.session(seeed=1), "bad_request", "seeed: Extra inputs are not permitted"),
        (lambda: client.session(seed=2**64), "bad_header", "cannot be packed as msgpack"),
        (lambda: client.session(seed=np.int64(1)), "bad_header", "not numpy scalars"),
        (lambda: client.session(guidance=-1.0), "bad_config", "guidance"),
        (lambda: client.call("step", args={"action": "stay"}), "bad_request", "needs a session token"),
        (lambda: client.call("ping", session="abc"), "bad_request", "takes no session token"),
        (lambda: client.call("score", arrays=[frames_like(2)], args={"actions": ["a", "b"]}), "invalid_action",
         "received 2 actions|expected 1"),
        (lambda: client.call("score"), "bad_request", "expected 1 buffer"),
    ]
    for call, code, message in cases:
        with pytest.raises(BridgeError, match=message) as info:
            call()
        assert info.value.code == code, message
    # an unparseable message gets id -1; a reply header sent to the server is refused with its id
    reply, _ = rpc(raw, [b"\xc1"])
    assert (reply.id, reply.error.code) == (-1, "bad_header")
    reply, _ = rpc(raw, [msgpack.packb(header(v=9, id=42))])
    assert (reply.id, reply.error.code) == (42, "bad_version")
    reply, _ = rpc(raw, encode({"v": 1, "id": 8, "ok": True, "result": {}, "error": None}))
    assert (reply.id, reply.error.code) == (8, "bad_header") and "expects requests" in reply.error.message


def test_limits(tiny):
    with BridgeServer(tiny, max_message_bytes=4096, max_sessions_per_client=2, max_frames_per_request=2) as srv, \
            RemoteWorldModel(srv.port, timeout_s=5.0) as c:
        with pytest.raises(BridgeError, match="message of .* bytes; this server accepts at most 4096") as info:
            c.call("score", arrays=[frames_like(3), frames_like(3)])  # each frame < 4096, together more
        assert info.value.code == "too_large"
        with pytest.raises(BridgeError, match="3 frames in one request; at most 2") as info:
            c.score(frames_like(3))
        assert info.value.code == "too_large"
        a, b = c.session(), c.session()
        with pytest.raises(BridgeError, match="holds 2 sessions; the limit is 2") as info:
            c.session()
        assert info.value.code == "too_many_sessions"
        with pytest.raises(BridgeError, match="the limit is 2"):
            a.fork()
        b.close()
        assert c.session().token != b.token
        ctx = zmq.Context()
        big = ctx.socket(zmq.DEALER)
        big.setsockopt(zmq.LINGER, 0)
        big.connect(srv.endpoint)
        big.send_multipart(encode(header("score"), [frames_like(6)]))  # one frame above the limit: dropped by libzmq
        assert not big.poll(300, zmq.POLLIN)
        big.close(linger=0)
        ctx.term()
        assert c.ping() >= 0  # and the server keeps serving


def test_idle_sessions_expire(tiny):
    with BridgeServer(tiny, idle_timeout_s=0.2) as srv, RemoteWorldModel(srv.port, timeout_s=5.0) as c:
        s = c.session()
        threading.Event().wait(0.8)
        with pytest.raises(BridgeError, match="expired after idle timeout") as info:
            s.reset(frames=frames_like(1))
        assert info.value.code == "not_found"


def malformed(rng: np.random.Generator) -> list[bytes]:
    """One bad message of a random kind."""
    good = encode(header("step", id=int(rng.integers(0, 1000)), session="x" * 32, seq=1, args={"action": "stay"}),
                  [frames_like(1)])
    kind = int(rng.integers(0, 8))
    if kind == 0:
        return [rng.bytes(int(rng.integers(0, 64))) for _ in range(int(rng.integers(1, 4)))]
    if kind == 1:
        return [good[0][: int(rng.integers(0, len(good[0])))], *good[1:]]
    if kind == 2:
        h = header(str(rng.choice(["hello", "create", "reset", "step", "observe", "score", "fork", "info"])))
        key = str(rng.choice(list(h)))
        h[key] = [None, "x", 1.5, -1, [1], {"a": 1}, b"\0", True][int(rng.integers(0, 8))]
        return [msgpack.packb(h)]
    if kind == 3:
        return [msgpack.packb(header(rng.bytes(4).hex()))]
    if kind == 4:
        return [msgpack.packb(header(v=int(rng.integers(2, 2**31))))]
    if kind == 5:
        shape = [int(d) for d in rng.integers(0, 2**31, int(rng.integers(1, 6)))]
        return [msgpack.packb(header("observe", buffers=[{"dtype": "uint8", "shape": shape}])), rng.bytes(16)]
    if kind == 6:
        return [good[0], *good[1:], rng.bytes(int(rng.integers(0, 32)))]
    op = str(rng.choice(["reset", "step", "observe", "fork", "close", "info"]))  # kind 7: unknown sessions
    return [msgpack.packb(header(op, session=rng.bytes(8).hex(), seq=int(rng.integers(0, 9)), args={}))]


def test_malformed_messages_never_kill_the_server(server, client, raw):
    with client.session(seed=0) as good:
        good.reset(frames=frames_like(1))
        rng = np.random.default_rng(0)
        for _ in range(1000):
            message = malformed(rng)
            reply, arrays = rpc(raw, message)
            if reply.ok:  # a random edit can land on a valid request (e.g. a hello): then it must decode
                decode(message)
                continue
            assert not reply.ok and reply.error.code in {"bad_header", "bad_version", "bad_op", "bad_buffer",
                                                         "too_large", "bad_request", "not_found"}, reply
            assert arrays == []
        assert good.step("stay").frame.shape == (16, 16, 3)
    assert client.ping() >= 0


def test_protocol_md_examples_decode(server, raw):
    """The byte-level examples in PROTOCOL.md are valid messages, and the server answers them."""
    import re
    from pathlib import Path

    import worldsim.bridges

    text = (Path(worldsim.bridges.__file__).parent / "PROTOCOL.md").read_text()
    block = text.split("## Example: `ping`, byte by byte", 1)[1].split("```")[1]
    request = bytes.fromhex(" ".join(re.findall(r"^((?:[0-9a-f]{2} )*[0-9a-f]{2})", block, re.M)))
    assert len(request) == 45
    assert decode([request])[0] == Request(v=1, id=1, op="ping")
    shortest = re.search(r"shortest valid ping is `([0-9a-f ]+)`", text).group(1)
    reply, _ = rpc(raw, [bytes.fromhex(shortest)])
    assert reply.ok and reply.id == 1 and reply.result["pong"] is True


def test_serve_forever_until_stop(tiny):
    srv = BridgeServer(tiny, address=0)
    assert srv.endpoint.startswith("tcp://127.0.0.1:") and srv.port > 0
    thread = threading.Thread(target=srv.serve_forever)
    thread.start()
    try:
        with RemoteWorldModel(srv.endpoint, timeout_s=5.0) as c:
            assert c.ping() >= 0
    finally:
        srv.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_frame_stream(tiny):
    from worldsim.bridges import FrameSubscriber

    with BridgeServer(tiny, pub_address="tcp://127.0.0.1:0") as srv, \
            RemoteWorldModel(srv.port, timeout_s=5.0) as c, c.session(seed=0) as s:
        assert s.stream and s.stream not in s.token  # the public topic does not reveal the token
        other = c.session(seed=1)
        other.reset(frames=frames_like(1))
        with FrameSubscriber(srv.pub_endpoint, s.stream) as sub:
            s.reset(frames=frames_like(1))
            for _ in range(100):  # PUB/SUB drops messages until the subscription has reached the server
                other.step("stay")  # frames of other sessions are filtered out by topic
                out = s.step("move up", tag={"pose": [0.0, 1.0, 2.0], "time": 7.5})
                try:
                    head, frame = sub.recv(timeout_s=0.05)
                except BridgeTimeout:
                    continue
                break
            else:
                pytest.fail("no frame arrived on the stream")
            while head["step"] != out.info["step"]:  # an earlier step's frame may arrive first
                head, frame = sub.recv(timeout_s=5.0)
        assert out.info["tag"] == {"pose": [0.0, 1.0, 2.0], "time": 7.5}
        assert head["stream"] == s.stream and head["action"] == "move up" and head["tag"] == out.info["tag"]
        assert head["log_prob"] == out.log_prob and head["time"] > 0
        assert np.array_equal(frame, out.frame)
        with FrameSubscriber(srv.pub_endpoint, "nothing") as quiet, pytest.raises(BridgeTimeout, match="no frame on"):
            quiet.recv(timeout_s=0.05)
        assert c.hello()["frame_stream"]["private"] is False and c.frame_stream == srv.pub_endpoint


def test_private_stream_reaches_only_subscribers_that_know_the_id(tiny):
    """With private_stream, a subscriber to every session ("frames." or "") or to a made-up id gets nothing; the
    owner, who alone was told the session's stream id, gets its frames."""
    from worldsim.bridges import FrameSubscriber

    with BridgeServer(tiny, pub_address="tcp://127.0.0.1:0", private_stream=True) as srv, \
            RemoteWorldModel(srv.port, timeout_s=5.0) as c, c.session(seed=0) as s:
        stream = c.hello()["frame_stream"]
        assert stream == {"endpoint": srv.pub_endpoint, "port": int(srv.pub_endpoint.rsplit(":", 1)[1]),
                          "private": True} and c.frame_stream == srv.pub_endpoint
        assert len(s.stream) == 32 and s.stream not in s.token
        s.reset(frames=frames_like(1))
        ctx = zmq.Context()
        snoop = ctx.socket(zmq.SUB)
        snoop.setsockopt(zmq.LINGER, 0)
        for topic in (b"", b"frames.", b"frames." + s.stream[:8].encode(), b"frames." + b"0" * 32):
            snoop.setsockopt(zmq.SUBSCRIBE, topic)
        snoop.connect(srv.pub_endpoint)
        try:
            with FrameSubscriber(srv.pub_endpoint) as everything, FrameSubscriber(c.frame_stream, s.stream) as mine:
                for _ in range(100):  # until the owner's subscription has reached the server
                    out = s.step("stay", tag={"secret": 1})
                    try:
                        head, frame = mine.recv(timeout_s=0.05)
                        break
                    except BridgeTimeout:
                        continue
                else:
                    pytest.fail("no frame reached the subscriber that knows the stream id")
                for _ in range(3):
                    out = s.step("move up")
                while head["step"] != out.info["step"]:
                    head, frame = mine.recv(timeout_s=5.0)
                assert np.array_equal(frame, out.frame) and head["stream"] == s.stream
                with pytest.raises(BridgeTimeout):
                    everything.recv(timeout_s=0.2)
                assert not snoop.poll(100, zmq.POLLIN)
        finally:
            snoop.close(linger=0)
            ctx.term()


def test_client_side_errors(server):
    c = RemoteWorldModel(server.port, timeout_s=5.0)
    s = c.session()
    with pytest.raises(BridgeError, match="frames must be a uint8 array; received dtype float32") as info:
        s.reset(frames=np.zeros((1, 16, 16, 3), np.float32))
    assert info.value.code == "bad_buffer"
    c.close()
    s.close()  # closing a session after its client: no error
    with pytest.raises(BridgeError, match="this RemoteWorldModel is closed") as info:
        c.ping()
    assert info.value.code == "closed"
    from worldsim.bridges import FrameSubscriber

    sub = FrameSubscriber(server.port)  # any address: a SUB socket connects lazily
    sub.close()
    with pytest.raises(BridgeError, match="this FrameSubscriber is closed") as info:
        sub.recv(timeout_s=0.1)
    assert info.value.code == "closed"


def test_create_takes_the_models_sampling_defaults():
    """Settings a client leaves out take the checkpoint's recommended ones, as a local `WorldModel.session` does."""
    from conftest import randomize

    from worldsim import WorldModel

    wm = randomize(WorldModel.from_config("tiny", seed=0))
    wm.meta["sampling"] = {"temperature": 0.5, "context": "frame", "freeze_prefix": True}
    with BridgeServer(wm) as srv, RemoteWorldModel(srv.port, timeout_s=5.0) as c:
        assert c.hello()["sampling_defaults"] == {"temperature": 0.5, "context": "frame", "freeze_prefix": True}
        with c.session(seed=1) as frozen, c.session(seed=1, freeze_prefix=False, best_of=3) as batchable:
            assert frozen.info()["settings"]["freeze_prefix"] and not batchable.info()["settings"]["freeze_prefix"]
            assert frozen.info()["settings"]["best_of"] == 1 and batchable.info()["settings"]["best_of"] == 3
        with wm.session(seed=3) as local, c.session(seed=3) as remote, c.session(seed=3, temperature=1.0) as hot:
            for s in (local, remote, hot):
                s.reset(frames=frames_like(1))
            assert remote.info()["settings"]["temperature"] == 0.5 and hot.info()["settings"]["temperature"] == 1.0
            want = local.step("stay")
            assert np.array_equal(want.frame, remote.step("stay").frame) and want.log_prob != hot.step("stay").log_prob


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(st.lists(st.binary(max_size=96), max_size=4) | st.builds(
    lambda h, extra: [msgpack.packb(h), *extra],
    st.dictionaries(st.sampled_from(["v", "id", "op", "session", "seq", "args", "buffers", "ok", "x"]),
                    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_subnormal=False)
                    | st.text(max_size=8)
                    | st.binary(max_size=8) | st.lists(st.integers(-9, 2**40), max_size=3)
                    | st.dictionaries(st.text(max_size=3), st.integers(-9, 9), max_size=2), max_size=7),
    st.lists(st.binary(max_size=32), max_size=2)))
def test_decode_never_fails_except_with_a_coded_bridge_error(frames):
    """Any bytes at all: decode returns a validated message or raises BridgeError with a known code."""
    try:
        message, arrays = decode(frames)
    except BridgeError as e:
        assert e.code in {"bad_header", "bad_version", "bad_op", "bad_buffer", "too_large", "bad_request"}, e.code
    else:
        assert isinstance(message, (Request, Reply)) and all(isinstance(a, np.ndarray) for a in arrays)


def test_starting_a_running_server_again_keeps_one_loop(tiny):
    """`BridgeServer(wm).start()` inside `with` used to run two loops on one socket (a segfault under load)."""
    with BridgeServer(tiny) as srv:
        loop = srv._thread
        assert srv.start() is srv and srv._thread is loop
        with RemoteWorldModel(srv.port, timeout_s=10.0) as client:
            assert client.hello()["protocol"] >= 1
    assert not loop.is_alive()
