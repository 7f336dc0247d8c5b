"""Sessions stepped together: `step_sessions` equals lone steps bit for bit; the server batches concurrent clients'
steps (seen in its `info` counters) with the same frames; a 16-client soak on loopback loses, repeats and reorders
nothing."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import zmq

from worldsim.bridges import BridgeError, BridgeServer, RemoteWorldModel, decode, encode
from worldsim.errors import InvalidAction
from worldsim.session import batch_key, step_sessions

SOAK_CLIENTS, SOAK_STEPS = 16, 200


def start_frames(wm, seed: int = 0, n: int = 2) -> np.ndarray:
    h, w = wm.config.height, wm.config.width
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Bit-identity holds on one intra-op thread: with several, a batch's matmuls are split differently from a lone
    row's and the last bits differ (seen on CI's 2 cores, amplified by max_iter into a frame's uint8 level)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def plan(i: int, steps: int, vocab) -> list[str]:
    """Client i's own action sequence (clients differ, so a reply routed to the wrong client shows)."""
    rng = np.random.default_rng(1000 + i)
    return [vocab[int(k)] for k in rng.integers(0, len(vocab), steps)]


def assert_same(a, b, exact: bool = True) -> None:
    """Bit for bit; with exact=False, within float32 rounding (a uint8 level, 1e-5 relative)."""
    assert a.frame.dtype == b.frame.dtype == np.uint8 and a.info["iterations"] == b.info["iterations"]
    if exact:
        assert np.array_equal(a.frame, b.frame)
        assert (a.log_prob, a.bits_per_dim, a.reward, a.terminated) == (b.log_prob, b.bits_per_dim, b.reward,
                                                                        b.terminated)
        return
    assert np.abs(a.frame.astype(int) - b.frame.astype(int)).max() <= 1 and a.terminated == b.terminated
    np.testing.assert_allclose([a.log_prob, a.bits_per_dim, a.reward], [b.log_prob, b.bits_per_dim, b.reward],
                               rtol=1e-5, atol=1e-5)


SETTINGS = [{}, {"guidance": 1.0, "temperature": 0.7}, {"context": "frame"}, {"denoise": "tweedie"},
            {"chunk": 4, "max_iter": 3}]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(s) or "default")
@pytest.mark.parametrize("model", ["tiny", "tiny_latent"])
def test_step_sessions_equals_lone_steps(request, model, settings):
    """Same frames, log-likelihoods, rewards and iterations, and the same state afterwards (a later lone step,
    and a later batched one, still agree). Bit for bit, except with small Jacobi chunks capped by max_iter: their
    4-token matrix products take batch-size-dependent kernels on some CPUs (an AVX-512-FP16 Xeon: last-bit
    differences, 1e-6 relative in log p), which the capped, unconverged iterate keeps."""
    exact = "max_iter" not in settings
    wm = request.getfixturevalue(model)
    k, vocab = 4, wm.vocabulary
    alone = [wm.session(seed=i, **settings) for i in range(k)]
    together = [wm.session(seed=i, **settings) for i in range(k)]
    for s in alone + together:
        s.reset(frames=start_frames(wm), actions=["stay"])
    for t in range(4):
        acts = [vocab[(3 * i + t) % len(vocab)] for i in range(k)]
        want = [s.step(a) for s, a in zip(alone, acts, strict=True)]
        got = ([s.step(a) for s, a in zip(together, acts, strict=True)] if t == 2
               else step_sessions(together, acts))
        for a, b in zip(want, got, strict=True):
            assert_same(a, b, exact)
    for a, b in zip(alone, together, strict=True):
        assert a.actions == b.actions
        assert np.abs(a.history.astype(int) - b.history.astype(int)).max() <= (0 if exact else 1)


def test_step_sessions_refuses_mixed_sessions(tiny):
    a, b, fresh = tiny.session(seed=0), tiny.session(seed=1, temperature=0.5), tiny.session(seed=2)
    for s in (a, b):
        s.reset(frames=start_frames(tiny))
    assert batch_key(a) != batch_key(b) and batch_key(fresh) is None
    assert batch_key(tiny.session(sampler="sequential")) is None
    frozen = tiny.session(seed=4, freeze_prefix=True)
    frozen.reset(frames=start_frames(tiny))
    assert batch_key(frozen) is None  # steps alone: a batched pass would not reproduce its commits bit for bit
    picky = tiny.session(seed=5, best_of=2)
    picky.reset(frames=start_frames(tiny))
    assert batch_key(picky) is None  # its k candidates are a batch of their own
    with pytest.raises(ValueError, match="one batch_key; group them by batch_key"):
        step_sessions([a, b], ["stay", "stay"])
    with pytest.raises(ValueError, match="one action per session; received 1 sessions and 2 actions"):
        step_sessions([a], ["stay", "stay"])
    c = tiny.session(seed=3)
    c.reset(frames=start_frames(tiny))
    before = len(a.frames)
    with pytest.raises(InvalidAction, match="unknown action 'jump'"):
        step_sessions([a, c], ["stay", "jump"])
    assert len(a.frames) == before  # nothing changed


def run_clients(port: int, n: int, steps: int, vocab, body) -> list:
    """n threads, each with its own RemoteWorldModel, run body(i, client, actions); returns their results (a
    failure in a thread is re-raised here)."""
    results: list = [None] * n
    errors: list = []

    def worker(i: int) -> None:
        try:
            with RemoteWorldModel(port, timeout_s=20.0, retries=0) as c:
                results[i] = body(i, c, plan(i, steps, vocab))
        except BaseException as e:  # noqa: BLE001  (surfaced in the main thread)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    if errors:
        raise errors[0]
    return results


def lone_frames(wm, seeds, plans, first) -> list[list]:
    out = []
    for seed, actions in zip(seeds, plans, strict=True):
        with wm.session(seed=seed) as s:
            s.reset(frames=first)
            out.append([s.step(a) for a in actions])
    return out


def test_server_batches_concurrent_steps(tiny):
    """Four clients step in lockstep: the server runs their steps as batched passes (its counters say so) and every
    client gets the frames of a lone in-process session."""
    n, steps, first = 4, 5, start_frames(tiny, n=1)
    barrier = threading.Barrier(n, timeout=30)
    with BridgeServer(tiny, batch_window_ms=200) as srv:
        def body(i, c, actions):
            with c.session(seed=i) as s:
                s.reset(frames=first)
                out = []
                for a in actions:
                    barrier.wait()
                    out.append(s.step(a))
                return out

        got = run_clients(srv.port, n, steps, tiny.vocabulary, body)
        with RemoteWorldModel(srv.port, timeout_s=5.0) as c:
            stats = c.info()["batching"]
    want = lone_frames(tiny, range(n), [plan(i, steps, tiny.vocabulary) for i in range(n)], first)
    for w, g in zip(want, got, strict=True):
        for a, b in zip(w, g, strict=True):
            assert_same(a, b)
    assert stats["steps"] == n * steps and stats["window_ms"] == 200 and stats["max_batch"] == 32
    assert stats["passes"] >= 1 and stats["largest"] >= 2, stats
    assert stats["batched_steps"] == sum(int(k) * v for k, v in stats["sizes"].items())


def test_batch_window_options_are_checked(tiny):
    with pytest.raises(Exception, match="need batch_window_ms ≥ 0 and max_batch ≥ 1; received -1"):
        BridgeServer(tiny, batch_window_ms=-1)


def test_soak_16_clients(tiny):
    """16 concurrent clients × SOAK_STEPS steps on one server: every reply is the next one of its own session
    (seq and step counters), frames equal a lone in-process session's (checked for clients 0 and 15: the reference
    costs a lone step per step), retries answer from the cache without stepping, and tokens stay private."""
    first = start_frames(tiny, n=1)
    tokens: dict[int, str] = {}
    with BridgeServer(tiny, batch_window_ms=2, max_sessions_per_client=2) as srv:
        def body(i, c, actions):
            s = c.session(seed=i)
            tokens[i] = s.token
            s.reset(frames=first)
            out = []
            for t, a in enumerate(actions):
                r = s.step(a)
                assert r.info["step"] == t + 2, (i, t, r.info)  # 1 reset frame, then one per step: none lost
                if t % 25 == 0:  # a retry of the same seq: the cached reply, and no step
                    again, (frame,) = c.call("step", session=s.token, seq=s.seq, args={"action": a})
                    assert again["step"] == r.info["step"] and np.array_equal(frame, r.frame)
                out.append(r)
            info = s.info()
            assert info["steps"] == SOAK_STEPS + 1 and info["last_seq"] == SOAK_STEPS + 1 and s.seq == SOAK_STEPS + 2
            return out

        got = run_clients(srv.port, SOAK_CLIENTS, SOAK_STEPS, tiny.vocabulary, body)
        with RemoteWorldModel(srv.port, timeout_s=5.0) as thief:
            with pytest.raises(BridgeError, match="no session .* for this client") as info:
                thief.call("step", session=tokens[0], seq=SOAK_STEPS + 3, args={"action": "stay"})
            assert info.value.code == "not_found"
            stats = thief.info()["batching"]
    assert stats["steps"] == SOAK_CLIENTS * SOAK_STEPS and stats["passes"] >= 1
    checked = [0, SOAK_CLIENTS - 1]
    want = lone_frames(tiny, checked, [plan(i, SOAK_STEPS, tiny.vocabulary) for i in checked], first)
    for i, w in zip(checked, want, strict=True):
        for a, b in zip(w, got[i], strict=True):
            assert_same(a, b)


def test_pipelined_requests_keep_order_and_retries_do_not_step_twice(tiny):
    """One raw DEALER sends a burst without waiting: steps of three sessions (one with a bad action), a second
    step and an info of the first, and a duplicate (a retry) of a step. Every request gets exactly one correct
    reply, whatever the server batched."""
    first = start_frames(tiny, n=1)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    with BridgeServer(tiny, batch_window_ms=50) as srv:
        sock.connect(srv.endpoint)

        def send(rid, op, token=None, seq=None, args=None, arrays=()):
            sock.send_multipart(encode({"v": 1, "id": rid, "op": op, "session": token, "seq": seq,
                                        "args": args or {}}, list(arrays)))

        def replies(n):
            out = {}
            for _ in range(n):
                assert sock.poll(10_000, zmq.POLLIN), f"only {len(out)} of {n} replies"
                reply, arrays = decode(sock.recv_multipart())
                out.setdefault(reply.id, []).append((reply, arrays))
            return out

        for i in range(3):
            send(i + 1, "create", args={"seed": i})
        tokens = [replies(1)[i + 1][0][0].result["session"] for i in range(3)]
        for i, tok in enumerate(tokens):
            send(10 + i, "reset", tok, 1, arrays=[first])
        replies(3)
        send(20, "step", tokens[0], 2, {"action": "move up"})
        send(21, "step", tokens[1], 2, {"action": "jump"})
        send(22, "step", tokens[2], 2, {"action": "move left"})
        send(20, "step", tokens[0], 2, {"action": "move up"})  # a retry of request 20
        send(23, "step", tokens[0], 3, {"action": "stay"})
        send(24, "info", tokens[0], 4)
        got = replies(6)
        assert sock.poll(300, zmq.POLLIN) == 0  # nothing more: no reply lost or sent twice
    sock.close(linger=0)
    ctx.term()
    assert sorted(got) == [20, 21, 22, 23, 24] and len(got[20]) == 2
    (a, fa), (b, fb) = got[20]
    assert a.result == b.result and np.array_equal(fa[0], fb[0])
    assert got[21][0][0].error.code == "invalid_action"
    assert got[24][0][0].result["steps"] == 3 and got[24][0][0].result["last_seq"] == 3  # one step per seq
    want = lone_frames(tiny, [0, 2], [["move up", "stay"], ["move left"]], first)
    assert np.array_equal(fa[0], want[0][0].frame) and np.array_equal(got[23][0][1][0], want[0][1].frame)
    assert np.array_equal(got[22][0][1][0], want[1][0].frame)
