"""WebSocket gateway: a client written from bridges/PROTOCOL.md ("WebSocket gateway") against a real gateway on
loopback — sessions as in process, garbage and oversized messages, closed connections, 16 at once, timelines."""

from __future__ import annotations

import json
import struct
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from worldsim import WorldModel, preset
from worldsim.play.envelope import decode_message, encode_message
from worldsim.play.gateway import WebSocketGateway

TIMEOUT_S = 20.0
LIMIT = 256 * 1024  # max_message_bytes of the test gateway


# ----- the client, from PROTOCOL.md alone ---------------------------------------------------------------------------
def pack(header: dict, arrays: tuple[np.ndarray, ...] = ()) -> str | bytes:
    """Text: the JSON header. Binary: uint32 LE header length, the JSON header, the buffers back to back."""
    header = {**header, "buffers": [{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays]}
    text = json.dumps(header)
    if not arrays:
        return text
    head = text.encode()
    return struct.pack("<I", len(head)) + head + b"".join(a.tobytes() for a in arrays)


def unpack(message: str | bytes) -> tuple[dict, list[np.ndarray]]:
    if isinstance(message, str):
        return json.loads(message), []
    (n,) = struct.unpack_from("<I", message)
    header = json.loads(message[4 : 4 + n])
    offset, arrays = 4 + n, []
    assert offset % 8 == 0, "the server aligns its first buffer to 8 bytes"
    for spec in header["buffers"]:
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        size = int(np.prod(spec["shape"])) * dtype.itemsize
        arrays.append(np.frombuffer(message, dtype, count=size // dtype.itemsize, offset=offset).reshape(spec["shape"]))
        offset += size
    assert offset == len(message)
    return header, arrays


class Client:
    def __init__(self, url: str, **kw) -> None:
        self.ws = connect(url, max_size=None, **kw).__enter__()  # what a `with` block does
        self.id = 0

    def send(self, op: str, session: str | None = None, arrays: tuple[np.ndarray, ...] = (), **args) -> None:
        self.id += 1
        self.ws.send(pack({"v": 1, "id": self.id, "op": op, "session": session, "args": args}, arrays))

    def recv(self) -> tuple[dict, list[np.ndarray]]:
        return unpack(self.ws.recv(timeout=TIMEOUT_S))

    def call(self, op: str, session: str | None = None, arrays: tuple[np.ndarray, ...] = (), **args):
        self.send(op, session, arrays, **args)
        head, out = self.recv()
        assert head["id"] == self.id
        return head, out

    def ok(self, op: str, session: str | None = None, arrays: tuple[np.ndarray, ...] = (), **args):
        head, out = self.call(op, session, arrays, **args)
        assert head["ok"], head["error"]
        return head["result"], out

    def raw(self, message: str | bytes) -> dict:
        self.ws.send(message)
        head, _ = self.recv()
        assert not head["ok"]
        return head

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def gateway(tiny):
    with WebSocketGateway(tiny, max_message_bytes=LIMIT, max_sessions_per_client=3, max_frames_per_request=4,
                          timeline_every=2, timeline_keep=3, pages={"/": ("text/html", b"<p>hi</p>")}) as gw:
        yield gw


@pytest.fixture
def client(gateway):
    c = Client(gateway.ws_url)
    yield c
    c.close()


def first_frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)


def open_session(c: Client, seed: int = 0, **settings) -> str:
    token = c.ok("create", seed=seed, **settings)[0]["session"]
    c.ok("reset", token, (first_frame(seed),))
    return token


# ----- the session API -------------------------------------------------------------------------------------------
def test_a_session_steps_as_in_process_with_timestamps_and_the_tag_echoed(tiny, client):
    hello, _ = client.ok("hello")
    assert (hello["height"], hello["width"], hello["actions"]) == (16, 16, list(tiny.config.actions))
    assert hello["limits"]["max_message_bytes"] == LIMIT and hello["websocket"]["close_above_bytes"] == 2 * LIMIT
    token = open_session(client, seed=7)
    actions = ["move left", "move up", "stay", "move right"]
    with tiny.session(seed=7) as local:
        local.reset(frames=first_frame(7))
        for i, action in enumerate(actions):
            before = time.time()
            result, (frame,) = client.ok("step", token, action=action, tag={"pose": [0.1, i], "t": i})
            expected = local.step(action)
            np.testing.assert_array_equal(frame, expected.frame)
            assert result["log_prob"] == pytest.approx(float(expected.log_prob), abs=1e-4)
            assert result["tag"] == {"pose": [0.1, i], "t": i} and result["step"] == i + 2
            assert before <= result["time"] <= time.time() and result["compute_ms"] > 0
            assert "verdict" not in result  # the tiny model has no calibration
    assert client.ok("info", token)[0]["steps"] == len(actions) + 1
    assert client.ok("close", token)[0]["closed"] is True
    head, _ = client.call("step", token, action="stay")
    assert head["error"]["code"] == "not_found"


def test_the_packaged_codec_reads_and_writes_the_documented_layout():
    arrays = (np.arange(7, dtype=np.uint8), np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3))
    message = encode_message({"v": 1, "id": 3, "ok": True, "result": {"x": 1}, "error": None}, arrays)
    head, out = unpack(message)  # the test's own reader, from the spec
    assert head["result"] == {"x": 1} and all(np.array_equal(a, b) for a, b in zip(arrays, out, strict=True))
    head, out = decode_message(pack({"v": 1, "id": 4, "op": "reset"}, arrays))
    assert head["op"] == "reset" and all(np.array_equal(a, b) for a, b in zip(arrays, out, strict=True))
    assert encode_message({"v": 1, "id": 5, "op": "ping"}) == '{"v":1,"id":5,"op":"ping","buffers":[]}'


# ----- bad input: an error reply, never a crash ------------------------------------------------------------------
GARBAGE = [
    ("not json", "bad_header"),
    ("[1, 2, 3]", "bad_header"),
    ('{"v": 1, "id": 1, "op": "ping", "args": {"x": NaN}}', "bad_header"),
    ('{"v": 1, "id": 1, "op": "fly"}', "bad_op"),
    ('{"v": 2, "id": 1, "op": "ping"}', "bad_version"),
    ('{"v": 1, "id": "1", "op": "ping"}', "bad_header"),
    ('{"v": 1, "id": 1, "op": "create", "args": {"seed": 1.5}}', "bad_request"),
    ('{"v": 1, "id": 1, "op": "create", "args": {"seed": 123456789012345678901234567890}}', "bad_header"),
    ('{"v": 1, "id": 1, "op": "create", "args": {"timeline": "yes"}}', "bad_request"),
    ('{"v": 1, "id": 1, "op": "step", "session": "00ff", "args": {"action": "stay"}}', "not_found"),
    ('{"v": 1, "id": 1, "op": "ping", "buffers": [{"dtype": "uint8", "shape": [1]}]}', "bad_buffer"),
    ("[" * 5000 + "]" * 5000, "bad_header"),
    (b"\x01\x02", "bad_header"),
    (struct.pack("<I", 1000) + b"{}", "bad_header"),
    (struct.pack("<I", 2) + b"\xff\xfe", "bad_header"),
    (pack({"v": 1, "id": 1, "op": "reset"}, (np.zeros(10, np.uint8),))[:-3], "bad_buffer"),
    (pack({"v": 1, "id": 1, "op": "reset"}, (np.zeros(10, np.uint8),)) + b"xyz", "bad_buffer"),
    (pack({"v": 1, "id": 1, "op": "score"}, (np.zeros(10, np.float64),)), "bad_buffer"),
    (struct.pack("<I", 2**31) + b"{}", "too_large"),
]


@pytest.mark.parametrize("message,code", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_gets_an_error_reply_and_the_connection_goes_on(client, message, code):
    head = client.raw(message)
    assert head["error"]["code"] == code, head["error"]
    assert head["error"]["message"]
    assert client.ok("ping")[0]["pong"] is True


def test_random_bytes_never_crash_the_gateway(client):
    rng = np.random.default_rng(0)
    for n in (0, 3, 4, 17, 300, 5000):
        client.ws.send(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        head, _ = client.recv()
        assert not head["ok"] and head["id"] == -1
    token = open_session(client)
    assert client.ok("step", token, action="stay")[0]["step"] == 2


def test_the_protocols_errors_and_limits_hold(client):
    token = open_session(client)
    assert client.call("step", token, action="fly")[0]["error"]["code"] == "invalid_action"
    clip = np.zeros((5, 16, 16, 3), np.uint8)  # max_frames_per_request is 4
    assert client.call("reset", token, (clip,))[0]["error"]["code"] == "too_large"
    assert client.call("reset", token, (np.zeros((1, 8, 8, 3), np.uint8),))[0]["error"]["code"] == "invalid_frames"
    assert client.ok("step", token, action="stay")[0]["step"] == 2  # the failed requests changed nothing
    for _ in range(2):
        client.ok("create")
    assert client.call("create")[0]["error"]["code"] == "too_many_sessions"


def test_an_oversized_message_gets_too_large_and_a_huge_one_closes_only_its_connection(gateway, client):
    big = np.zeros(LIMIT + 1, np.uint8)
    head = client.raw(pack({"v": 1, "id": 9, "op": "score"}, (big,)))
    assert head["error"]["code"] == "too_large" and head["id"] == -1  # refused before its header is read
    assert client.ok("ping")[0]["pong"]
    other = Client(gateway.ws_url)
    token = open_session(other)
    other.ws.send(b"\0" * (2 * LIMIT + 1))  # past close_above_bytes: not read at all
    with pytest.raises(ConnectionClosed) as closed:
        other.ws.recv(timeout=TIMEOUT_S)
    assert closed.value.rcvd.code == 1009  # "message too big"
    assert client.ok("ping")[0]["pong"]
    assert wait_for(lambda: client.ok("info")[0]["server_sessions"] == 0), "the closed connection's session is open"
    assert token not in gateway.bridge.sessions


# ----- connections: isolation, closing, many at once --------------------------------------------------------------
def wait_for(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_connection_closed_mid_step_frees_its_sessions(gateway, client):
    gone = Client(gateway.ws_url)
    tokens = [open_session(gone, seed=s) for s in range(2)]
    assert client.ok("info")[0]["server_sessions"] == 2
    for _ in range(5):
        gone.send("step", tokens[0], action="move left")  # no wait for the replies
    gone.close()
    assert wait_for(lambda: client.ok("info")[0]["server_sessions"] == 0)
    assert not set(tokens) & set(gateway.bridge.sessions)
    assert client.ok("ping")[0]["pong"]


def test_sixteen_concurrent_connections_each_get_their_own_world(tiny, gateway):
    n, steps = 16, 3
    actions = ["move up", "move right", "stay"]
    frames: dict[int, list[np.ndarray]] = {}
    tokens: dict[int, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            c = Client(gateway.ws_url)
            start.wait(timeout=TIMEOUT_S)
            tokens[i] = open_session(c, seed=100 + i)
            frames[i] = [c.ok("step", tokens[i], action=a)[1][0].copy() for a in actions[:steps]]
            start.wait(timeout=TIMEOUT_S)  # all sessions open at once
            head, _ = c.call("step", tokens[(i + 1) % n], action="stay")  # a neighbour's token is not ours
            assert head["error"]["code"] == "not_found"
            start.wait(timeout=TIMEOUT_S)
            c.close()
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for i in range(n):
        with tiny.session(seed=100 + i) as local:
            local.reset(frames=first_frame(100 + i))
            for frame, action in zip(frames[i], actions, strict=True):
                np.testing.assert_array_equal(frame, local.step(action).frame)
    assert wait_for(lambda: not gateway.bridge.sessions)


def test_idle_sessions_expire(tiny):
    with WebSocketGateway(tiny, idle_timeout_s=0.3) as gw:
        c = Client(gw.ws_url)
        token = open_session(c)
        assert wait_for(lambda: token not in gw.bridge.sessions, timeout_s=5)
        assert c.call("step", token, action="stay")[0]["error"]["code"] == "not_found"
        c.close()


def test_browsers_from_other_origins_are_refused(tiny):
    with WebSocketGateway(tiny, origins=["http://allowed.example"]) as gw:
        with pytest.raises(InvalidStatus) as refused:
            connect(gw.ws_url, origin="http://evil.example")
        assert refused.value.response.status_code == 403
        for origin in (f"http://127.0.0.1:{gw.port}", f"http://localhost:{gw.port}", "http://allowed.example", None):
            c = Client(gw.ws_url, origin=origin)
            assert c.ok("ping")[0]["pong"]
            c.close()


def test_pages_over_plain_http(gateway):
    with urllib.request.urlopen(gateway.url, timeout=TIMEOUT_S) as page:
        assert page.read() == b"<p>hi</p>" and page.headers["Content-Type"] == "text/html"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(gateway.url + "nothing", timeout=TIMEOUT_S)
    assert missing.value.code == 404


# ----- timeline: fork at an earlier frame, exactly ------------------------------------------------------------------
def test_fork_at_any_earlier_frame_continues_bit_for_bit(client):
    token = open_session(client, seed=3, timeline=True)
    actions = ["move up", "move right", "move right", "stay", "move down", "move left", "move up", "stay", "move left"]
    history = [first_frame(3)[0]] + [client.ok("step", token, action=a)[1][0].copy() for a in actions]
    for n in range(1, len(history)):  # keep=3 copies: most forks re-run some frames from the nearest one
        result, _ = client.ok("fork", token, frames=n)
        assert (result["frames"], result["exact"]) == (n, True)
        assert result["replayed"] <= len(actions)
        child = result["session"]
        if n < len(history):
            np.testing.assert_array_equal(client.ok("step", child, action=actions[n - 1])[1][0], history[n])
        assert client.ok("info", child)[0]["steps"] == n + 1
        client.ok("close", child)
    # the parent went on as it was
    assert client.ok("info", token)[0]["steps"] == len(history)
    result, _ = client.ok("fork", token, frames=4)
    grandchild = client.ok("fork", result["session"], frames=2)[0]  # a branch keeps its parent's past
    assert grandchild["exact"] and grandchild["frames"] == 2


def test_fork_at_needs_a_timeline_and_a_frame_in_range(client):
    plain = open_session(client)
    assert "timeline" in client.call("fork", plain, frames=1)[0]["error"]["message"]
    token = open_session(client, timeline=True)
    client.ok("step", token, action="stay")
    for bad in (0, 3, -1, "1", True, 1.0):
        head, _ = client.call("fork", token, frames=bad)
        assert head["error"]["code"] == "bad_request" and "expected an int from 1" in head["error"]["message"]


def test_vector_actions_travel_as_json_lists():
    spec = {"kind": "vector", "dim": 2, "low": [-1.0, 0.0], "high": [1.0, 4.0]}
    vec = WorldModel.from_config(preset("tiny").merged(action_spec=spec))
    with WebSocketGateway(vec) as gw:
        c = Client(gw.ws_url)
        assert c.ok("hello")[0]["action_spec"]["dim"] == 2
        token = open_session(c, seed=4, timeline=True)
        actions = [[0.5, 1.0], [-1, 4], [0.0, 0.25]]
        with vec.session(seed=4) as local:
            local.reset(frames=first_frame(4))
            frames = []
            for a in actions:
                frames.append(c.ok("step", token, action=a)[1][0].copy())
                np.testing.assert_array_equal(frames[-1], local.step(np.array(a, np.float32)).frame)
        assert c.call("step", token, action=[2.0, 0.0])[0]["error"]["code"] == "invalid_action"  # out of bounds
        child = c.ok("fork", token, frames=2)[0]
        assert child["exact"]
        np.testing.assert_array_equal(c.ok("step", child["session"], action=actions[1])[1][0], frames[1])
        c.close()


def test_a_text_message_that_is_not_utf8_closes_its_connection(gateway, client):
    bad = Client(gateway.ws_url)
    bad.ws.send(b'{"v": 1, "id": 1, "op": "ping", "x": "\xff"}', text=True)
    with pytest.raises(ConnectionClosed) as closed:
        bad.ws.recv(timeout=TIMEOUT_S)
    assert closed.value.rcvd.code == 1007  # invalid data: the WebSocket standard's answer, not ours
    assert client.ok("ping")[0]["pong"]


def test_a_port_in_use_is_an_error_at_start(tiny, gateway):
    taken = WebSocketGateway(tiny, port=gateway.port)
    with pytest.raises(OSError, match="address already in use|Address already in use"):
        taken.start()
    taken.stop()
