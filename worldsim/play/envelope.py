"""The WebSocket gateway's message layout: a JSON header (the bridge protocol's header) and raw array buffers, as one
WebSocket message; `encode_message`/`decode_message` are the codec (see bridges/PROTOCOL.md, "WebSocket gateway")."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from worldsim.bridges.protocol import DTYPES, MAX_HEADER_BYTES, MAX_NDIM, BridgeError


def encode_message(header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> str | bytes:
    """One WebSocket message: a text message (the JSON header) when there are no arrays, else a binary message:
    uint32 little-endian header length n, n bytes of UTF-8 JSON (space-padded so that the first buffer starts at a
    multiple of 8), then each array's raw little-endian C-order bytes, in the order of header["buffers"]."""
    arrays = [np.ascontiguousarray(a, dtype=DTYPES[np.asarray(a).dtype.name]) for a in arrays]
    head = {**header, "buffers": [{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays]}
    text = json.dumps(head, separators=(",", ":"), allow_nan=False)
    if not arrays:
        return text
    raw = text.encode()
    raw += b" " * (-(4 + len(raw)) % 8)
    return b"".join([struct.pack("<I", len(raw)), raw, *(a.tobytes() for a in arrays)])


def decode_message(data: str | bytes) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Parse a message of `encode_message`'s layout into (header, arrays); BridgeError on a malformed one."""
    header, bufs = split_message(data)
    specs = header["buffers"]
    if not isinstance(specs, list) or any(_spec_bytes(s) is None for s in specs):
        raise BridgeError("bad_buffer", f"buffers {_short(specs)}; expected a list of {{dtype, shape}} maps.")
    return header, [np.frombuffer(b, DTYPES[s["dtype"]]).reshape(s["shape"]) for s, b in zip(specs, bufs, strict=True)]


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON; send finite numbers")


def split_message(data: str | bytes) -> tuple[dict[str, Any], list[bytes]]:
    """(header map, raw buffers). The buffers are cut by the specs that can be read; a spec that cannot (bad dtype,
    shape) gets the rest of the message, and the protocol's checks then answer it."""
    if isinstance(data, str):
        head_text, payload = data, b""
    else:
        if len(data) < 4:
            raise BridgeError("bad_header", f"binary message of {len(data)} bytes; expected a uint32 little-endian "
                              "header length, the JSON header, then the buffers.")
        (n,) = struct.unpack_from("<I", data)
        if n > MAX_HEADER_BYTES:
            raise BridgeError("too_large", f"header of {n} bytes; at most {MAX_HEADER_BYTES} allowed.")
        if n > len(data) - 4:
            raise BridgeError("bad_header", f"the message says its header has {n} bytes, but only {len(data) - 4} "
                              "follow the length. Fix: the first 4 bytes are the header's length, little-endian.")
        try:
            head_text = data[4 : 4 + n].decode()
        except UnicodeDecodeError as e:
            raise BridgeError("bad_header", f"the header is not UTF-8 ({e}).") from None
        payload = data[4 + n :]
    if len(head_text) > MAX_HEADER_BYTES:
        raise BridgeError("too_large", f"header of {len(head_text)} characters; at most {MAX_HEADER_BYTES} allowed.")
    try:
        header = json.loads(head_text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise BridgeError("bad_header", f"the header is not one JSON value ({type(e).__name__}: {e}). Fix: send "
                          "one JSON object with keys v, id, op.") from None
    if not isinstance(header, dict):
        raise BridgeError("bad_header", f"the header is a JSON {type(header).__name__}; expected an object with "
                          "keys v, id, op.")
    specs = header.get("buffers", [])
    if isinstance(data, str) and specs:
        raise BridgeError("bad_buffer", f"a text message carries no buffers, but its header lists {_short(specs)}. "
                          "Fix: send a binary message (length, header, buffers).", request_id(header))
    header.setdefault("buffers", [])
    bufs, offset = [], 0
    for spec in specs if isinstance(specs, list) else []:
        need = _spec_bytes(spec)
        if need is None:
            bufs.append(payload[offset:])
            offset = len(payload)
            continue
        if offset + need > len(payload):
            raise BridgeError("bad_buffer", f"the header's buffers need {offset + need} bytes so far (buffer "
                              f"{len(bufs)}: {_short(spec)}); only {len(payload)} follow the header. Fix: send "
                              "prod(shape) × itemsize raw bytes per buffer, back to back.", request_id(header))
        bufs.append(payload[offset : offset + need])
        offset += need
    if offset != len(payload):
        raise BridgeError("bad_buffer", f"{len(payload) - offset} bytes follow the buffers the header lists "
                          f"({len(bufs)}); expected none. Fix: list every buffer in 'buffers'.", request_id(header))
    return header, bufs


def _spec_bytes(spec: Any) -> int | None:
    """prod(shape) × itemsize of a readable {dtype, shape} spec, else None."""
    if not (isinstance(spec, dict) and isinstance(spec.get("dtype"), str) and spec["dtype"] in DTYPES
            and isinstance(spec.get("shape"), list)):
        return None
    shape = spec["shape"]
    if len(shape) > MAX_NDIM or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return None
    return math.prod(shape) * DTYPES[spec["dtype"]].itemsize


def request_id(header: Any) -> int:
    rid = header.get("id") if isinstance(header, dict) else None
    return rid if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 2**63 else -1


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


