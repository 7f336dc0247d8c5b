"""CURVE on the bridge: an allowed client works (control and frame stream, encrypted); a client with another key,
or without CURVE, gets no connection at all (BridgeTimeout); key errors are clear; the server's secret key file is
private (0600); `worldsim serve --curve-keys`."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import zmq
import zmq.auth

from worldsim import WorldModel
from worldsim.bridges import BridgeServer, BridgeTimeout, FrameSubscriber, RemoteWorldModel
from worldsim.bridges.auth import load_key_folder
from worldsim.errors import ConfigError

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE support")


def first(n: int = 1) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def keys():
    server, alice, mallory = zmq.curve_keypair(), zmq.curve_keypair(), zmq.curve_keypair()
    return {"server": server, "alice": alice, "mallory": mallory}


def test_allowed_client_works_and_others_time_out(tiny, keys):
    (spub, ssec), (apub, asec), (mpub, msec) = keys["server"], keys["alice"], keys["mallory"]
    with BridgeServer(tiny, curve_public_key=spub, curve_secret_key=ssec, allowed_client_keys=[apub],
                      pub_address="tcp://127.0.0.1:0", private_stream=True) as srv:
        with RemoteWorldModel(srv.port, timeout_s=5.0, server_public_key=spub, public_key=apub,
                              secret_key=asec) as alice, alice.session(seed=0) as s, \
                FrameSubscriber(srv.pub_endpoint, s.stream, server_public_key=spub, public_key=apub,
                                secret_key=asec) as sub:
            s.reset(frames=first())
            steps = 0
            for _ in range(100):  # the subscription needs a moment to reach the server
                out, steps = s.step("stay"), steps + 1
                try:
                    head, frame = sub.recv(timeout_s=0.05)
                    break
                except BridgeTimeout:
                    continue
            else:
                pytest.fail("no frame on the encrypted stream")
            while head["step"] != out.info["step"]:
                head, frame = sub.recv(timeout_s=5.0)
            assert np.array_equal(frame, out.frame)
            with tiny.session(seed=0) as local:
                local.reset(frames=first())
                for _ in range(steps):
                    want = local.step("stay")
                assert np.array_equal(want.frame, out.frame)
        for kwargs in ({"server_public_key": spub, "public_key": mpub, "secret_key": msec},  # not on the list
                       {"server_public_key": spub},  # a fresh key pair: not on the list either
                       {}):  # no CURVE at all
            with RemoteWorldModel(srv.port, timeout_s=0.3, retries=0, **kwargs) as other:
                with pytest.raises(BridgeTimeout, match="no reply from .* to 'ping'"):
                    other.ping()


def test_any_client_with_the_server_key(tiny, keys):
    spub, ssec = keys["server"]
    with BridgeServer(tiny, curve_public_key=spub, curve_secret_key=ssec) as srv:
        with RemoteWorldModel(srv.port, timeout_s=5.0, server_public_key=spub) as c:
            assert c.ping() >= 0
        wrong = zmq.curve_keypair()[0]  # a client that trusts another server key never completes the handshake
        with RemoteWorldModel(srv.port, timeout_s=0.3, retries=0, server_public_key=wrong) as c:
            with pytest.raises(BridgeTimeout):
                c.ping()


def test_key_errors(tiny, keys):
    spub, ssec = keys["server"]
    with pytest.raises(ConfigError, match="needs both curve_secret_key and curve_public_key"):
        BridgeServer(tiny, curve_public_key=spub)
    with pytest.raises(ConfigError, match="allowed_client_keys needs CURVE"):
        BridgeServer(tiny, allowed_client_keys=[spub])
    with pytest.raises(ConfigError, match="curve_public_key must be a Z85 CURVE key of 40 characters; received 5"):
        BridgeServer(tiny, curve_public_key="short", curve_secret_key=ssec)
    with pytest.raises(ConfigError, match="server_public_key is not Z85 text"):
        RemoteWorldModel(1, server_public_key=b"\xff" * 40)
    with pytest.raises(ConfigError, match="pass both public_key and secret_key"):
        RemoteWorldModel(1, server_public_key=spub, public_key=spub)
    with pytest.raises(ConfigError, match="needs server_public_key as well"):
        RemoteWorldModel(1, public_key=spub, secret_key=ssec)


def test_key_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"no client certificates in .*clients .* copy alice.key into"):
        load_key_folder(tmp_path / "keys")
    assert (tmp_path / "keys" / "server.key").exists() and (tmp_path / "keys" / "server.key_secret").exists()
    (tmp_path / "keys" / "clients").mkdir()
    zmq.auth.create_certificates(str(tmp_path), "alice")
    (tmp_path / "alice.key").rename(tmp_path / "keys" / "clients" / "alice.key")
    public, secret, allowed = load_key_folder(tmp_path / "keys")
    assert allowed == [zmq.auth.load_certificate(str(tmp_path / "alice.key_secret"))[0]]
    assert (public, secret) == zmq.auth.load_certificate(str(tmp_path / "keys" / "server.key_secret"))
    (tmp_path / "keys" / "server.key_secret").write_bytes((tmp_path / "keys" / "server.key").read_bytes())
    with pytest.raises(ConfigError, match=r"server.key_secret holds no secret key .* Fix: remove it and"):
        load_key_folder(tmp_path / "keys")


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_server_secret_key_is_written_0600_and_a_readable_one_is_warned_about(tmp_path, caplog):
    old = os.umask(0o022)  # the usual umask: pyzmq alone writes the secret key world-readable under it
    try:
        with pytest.raises(ConfigError, match="no client certificates"):
            load_key_folder(tmp_path / "keys")
    finally:
        os.umask(old)
    secret, public = tmp_path / "keys" / "server.key_secret", tmp_path / "keys" / "server.key"
    assert secret.stat().st_mode & 0o777 == 0o600 and public.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["server.key", "server.key_secret"]
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="no client certificates"):
        load_key_folder(tmp_path / "keys")
    assert "can be read by other users (mode 644). Fix: chmod 600" in caplog.text


def test_serve_with_curve_keys(tmp_path):
    model = tmp_path / "tiny"
    WorldModel.from_config("tiny").save(model)
    keys = tmp_path / "keys"
    (keys / "clients").mkdir(parents=True)
    zmq.auth.create_certificates(str(tmp_path), "alice")
    (tmp_path / "alice.key").rename(keys / "clients" / "alice.key")
    apub, asec = zmq.auth.load_certificate(str(tmp_path / "alice.key_secret"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "worldsim.cli", "serve", "--model", str(model), "--port", "0",
                             "--curve-keys", str(keys), "--batch-window-ms", "1", "--max-sessions", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().startswith("NOTE: checkpoint")
        endpoint = proc.stdout.readline().split(" on ")[1].split()[0]
        assert "CURVE on" in proc.stdout.readline()
        spub = zmq.auth.load_certificate(str(keys / "server.key"))[0]
        with RemoteWorldModel(endpoint, timeout_s=10.0, server_public_key=spub, public_key=apub,
                              secret_key=asec) as c:
            info = c.info()
            assert info["batching"]["window_ms"] == 1 and info["limits"]["max_sessions"] == 3
            assert info["served"] == "tiny" and info["frame_stream"]["private"] is True
        with RemoteWorldModel(endpoint, timeout_s=0.3, retries=0) as plain, pytest.raises(BridgeTimeout):
            plain.ping()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
