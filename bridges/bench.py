"""`bridge_overhead`: what a step costs through the ZeroMQ bridge on loopback against in-process, and what many
concurrent clients get together (dynamic batching); `worldsim bench` reports it."""

from __future__ import annotations

import statistics
import threading
import time

from worldsim.envs.world_model_env import world_frame
from worldsim.world_model import WorldModel

from .client import RemoteWorldModel
from .server import BridgeServer


def bridge_overhead(model: WorldModel, steps: int = 20, clients: int = 16) -> dict[str, float]:
    """Measure the bridge on loopback with a server in this process (plain TCP, default batch window).

    Args:
        model: the served model (its sessions start from a real PushWorld frame).
        steps: timed steps per session (after one warm-up step).
        clients: concurrent clients (threads, each with its own RemoteWorldModel) for the throughput figure.

    Returns:
        bridge_step_ms: median time of `RemoteSession.step` (request, step on the server, reply with the frame).
        inprocess_step_ms: median time of `Session.step`, interleaved with the bridge steps (same seed, actions).
        bridge_overhead: bridge_step_ms / inprocess_step_ms.
        fps_1_client: frames per second of one client stepping alone (its bridge steps above).
        fps_16_clients: frames per second of `clients` clients (16 by default) stepping at once, all together.
        concurrency_gain: fps_16_clients / fps_1_client (above 1: the server batches concurrent steps).
    """
    if steps < 1 or clients < 1:
        raise ValueError(f"need steps ≥ 1 and clients ≥ 1; received steps={steps}, clients={clients}")
    cfg, vocab = model.config, model.vocabulary
    first = world_frame(cfg.height, cfg.width, 0)
    actions = [vocab[i % len(vocab)] for i in range(steps + 1)]
    with BridgeServer(model) as server:
        local_ms: list[float] = []
        bridge_ms: list[float] = []
        with model.session(seed=0) as local, RemoteWorldModel(server.port, timeout_s=600.0) as client, \
                client.session(seed=0) as remote:
            local.reset(frames=first)
            remote.reset(frames=first)
            local.step(actions[0])  # warm-up
            remote.step(actions[0])
            for a in actions[1:]:
                for session, times in ((local, local_ms), (remote, bridge_ms)):
                    t = time.perf_counter()
                    session.step(a)
                    times.append(1000 * (time.perf_counter() - t))
        wall = _concurrent_steps(server.port, clients, first, actions)
    bridge, inproc = statistics.median(bridge_ms), statistics.median(local_ms)
    fps_1 = 1000 * steps / sum(bridge_ms)
    fps_n = clients * steps / wall
    return {"bridge_step_ms": bridge, "inprocess_step_ms": inproc, "bridge_overhead": bridge / inproc,
            "fps_1_client": fps_1, "fps_16_clients": fps_n, "concurrency_gain": fps_n / fps_1}


def _concurrent_steps(port: int, clients: int, first, actions: list[str]) -> float:
    """Seconds for `clients` clients (reset and warmed up first) to step actions[1:] at once."""
    ready = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with RemoteWorldModel(port, timeout_s=600.0) as client, client.session(seed=i) as s:
                s.reset(frames=first)
                s.step(actions[0])
                ready.wait()
                for a in actions[1:]:
                    s.step(a)
        except BaseException as e:  # noqa: BLE001  (re-raised below)
            errors.append(e)
            ready.abort()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:  # a client failed before the start: its error is raised below
        pass
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start
