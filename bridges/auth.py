"""CURVE encryption and client allow-lists for the bridge sockets (pyzmq's `zmq.auth`), and the key folder of
`worldsim serve --curve-keys DIR`."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from worldsim.errors import ConfigError

KEY_CHARS = 40  # a Curve25519 key in Z85 text

log = logging.getLogger(__name__)


def as_key(key: str | bytes, what: str) -> bytes:
    """A Z85-encoded CURVE key (40 characters, as `zmq.curve_keypair()` gives), checked."""
    raw = key.encode("ascii", "replace") if isinstance(key, str) else key
    if not isinstance(raw, bytes) or len(raw) != KEY_CHARS:
        size = len(raw) if isinstance(raw, bytes) else type(key).__name__
        raise ConfigError(f"{what} must be a Z85 CURVE key of {KEY_CHARS} characters; received {size!r}. Fix: make "
                          "a key pair with zmq.curve_keypair() or zmq.auth.create_certificates(folder, name).")
    try:
        z85.decode(raw)
    except (ValueError, KeyError, UnicodeDecodeError):
        raise ConfigError(f"{what} is not Z85 text ({raw[:8]!r}…). Fix: pass the key as zmq.curve_keypair() "
                          "returns it, not raw 32 bytes.") from None
    return raw


class _AllowList:
    """ZAP credentials provider: admits exactly the listed client public keys."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self.keys = frozenset(keys)

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys


def start_authenticator(ctx: zmq.Context, allowed_client_keys: Iterable[str | bytes] | None) -> ThreadAuthenticator:
    """A ZAP handler on `ctx` for CURVE sockets: only `allowed_client_keys` connect (None: any client that knows the
    server's public key; traffic is still encrypted)."""
    auth = ThreadAuthenticator(ctx)
    auth.start()
    if allowed_client_keys is None:
        auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    else:
        keys = [as_key(k, "allowed_client_keys entry") for k in allowed_client_keys]
        auth.configure_curve_callback(domain="*", credentials_provider=_AllowList(keys))
    return auth


def curve_server(sock: zmq.Socket, public_key: bytes, secret_key: bytes) -> None:
    """Make `sock` (before bind) a CURVE server with this key pair."""
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = public_key, secret_key


def curve_client(sock: zmq.Socket, server_public_key: str | bytes, public_key: str | bytes | None,
                 secret_key: str | bytes | None) -> bytes:
    """Make `sock` (before connect) a CURVE client of the server with `server_public_key`; without a key pair of its
    own it makes a fresh one (enough for a server that admits any client). Returns the client's public key."""
    if (public_key is None) != (secret_key is None):
        raise ConfigError("pass both public_key and secret_key (the client's key pair), or neither.")
    if public_key is None or secret_key is None:  # both, after the check above
        public_key, secret_key = zmq.curve_keypair()
    public = as_key(public_key, "public_key")
    sock.curve_serverkey = as_key(server_public_key, "server_public_key")
    sock.curve_publickey, sock.curve_secretkey = public, as_key(secret_key, "secret_key")
    return public


def load_key_folder(folder: str | os.PathLike) -> tuple[bytes, bytes, list[bytes]]:
    """The server's key pair and the allowed client keys of a `--curve-keys` folder:

        server.key, server.key_secret   the server's certificates (made on first use, the secret one with mode 0600;
                                        give server.key to clients)
        clients/*.key                   public certificates of the clients allowed to connect

    Returns (public_key, secret_key, allowed_client_keys). No client certificate: ConfigError. A secret key file
    that others can read is used, with a warning.
    """
    root = Path(folder)
    secret_file = root / "server.key_secret"
    if not secret_file.exists():
        make_server_certificates(root)
    if os.name == "posix" and secret_file.stat().st_mode & 0o077:
        log.warning("%s can be read by other users (mode %o). Fix: chmod 600 %s", secret_file,
                    secret_file.stat().st_mode & 0o777, secret_file)
    public, secret = zmq.auth.load_certificate(str(secret_file))
    if secret is None:
        raise ConfigError(f"{secret_file} holds no secret key (a public certificate in its place?). Fix: remove "
                          f"it and {root / 'server.key'}; the next start makes a new pair (give clients the new "
                          "server.key).")
    clients = sorted((root / "clients").glob("*.key"))
    if not clients:
        raise ConfigError(f"no client certificates in {root / 'clients'} (files NAME.key); a CURVE server admits "
                          "only listed clients. Fix: on the client run python -c \"import zmq.auth; "
                          "zmq.auth.create_certificates('.', 'alice')\" and copy alice.key into "
                          f"{root / 'clients'} (keep alice.key_secret on the client).")
    return public, secret, [zmq.auth.load_certificate(str(c))[0] for c in clients]


def make_server_certificates(folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write a new key pair as FOLDER/server.key (public) and FOLDER/server.key_secret (mode 0600, never readable by
    others, not even for a moment: it is made in a private temporary folder, then moved). Returns both paths."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".keys-") as tmp:  # mode 0700
        public, secret = zmq.auth.create_certificates(tmp, "server")
        os.chmod(secret, 0o600)
        os.chmod(public, 0o644)
        os.replace(public, root / "server.key")
        os.replace(secret, root / "server.key_secret")  # last: its existence means the pair is complete
    return root / "server.key", root / "server.key_secret"
