"""worldsim.bridges: serve world-model sessions over ZeroMQ + msgpack (wire format in PROTOCOL.md)."""

from .client import FrameSubscriber, RemoteSession, RemoteWorldModel
from .protocol import PROTOCOL_VERSION, BridgeError, BridgeTimeout, Reply, Request, decode, encode
from .server import BridgeServer

__all__ = ["PROTOCOL_VERSION", "BridgeError", "BridgeServer", "BridgeTimeout", "FrameSubscriber", "RemoteSession",
           "RemoteWorldModel", "Reply", "Request", "decode", "encode"]
