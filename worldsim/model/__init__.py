"""The flow network as plain nn.Modules: no I/O, no RNG ownership, no device choice."""

from .cache import DeepState, KVCache
from .flow import FlowNet, FlowOut

__all__ = ["DeepState", "FlowNet", "FlowOut", "KVCache"]
