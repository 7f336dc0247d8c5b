"""Bridge wire format: a msgpack header frame plus raw array buffers; `encode`/`decode` and the message schemas."""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Any, Literal

import msgpack
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from worldsim.errors import WorldSimError, suggest
from worldsim.settings import SessionSettings, describe_errors

PROTOCOL_VERSION = 1
OPS = ("hello", "create", "reset", "step", "observe", "score", "fork", "close", "info", "ping")
SESSION_OPS = ("reset", "step", "observe", "fork", "close")  # need a session token (info takes one optionally)
# little-endian always
DTYPES: dict[str, np.dtype] = {"uint8": np.dtype("<u1"), "float32": np.dtype("<f4"), "int64": np.dtype("<i8")}
MAX_HEADER_BYTES = 64 * 1024
MAX_BUFFERS = 8
MAX_NDIM = 8
MAX_TAG_BYTES = 8 * 1024  # a step's tag, packed: it travels back in the reply and on the frame stream
MAX_ACTION_CHARS = 1000  # an action text (echoed on the frame stream)
MAX_ACTION_DIM = 256  # components of a vector action
MAX_MESSAGE_CHARS = 2000  # an error message is cut to this (it may quote what the client sent)


class BridgeError(WorldSimError):
    """A bridge request failed; `code` is a stable machine-readable reason (see PROTOCOL.md, "Errors").

    `request_id` is the id of the request it answers, where one could be read (else None).
    """

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code, self.message, self.request_id = code, message, request_id


class BridgeTimeout(BridgeError, TimeoutError):
    """No reply within the client's timeout after all retries."""

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__("timeout", message, request_id)


# ----- message schemas ------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Request(_Strict):
    """A client → server header (without its "buffers" list, which `decode` turns into arrays)."""

    v: int = Field(PROTOCOL_VERSION, description="Protocol version; must equal PROTOCOL_VERSION.")
    id: int = Field(..., ge=0, lt=2**63, description="Request id chosen by the client; echoed in the reply.")
    op: Literal["hello", "create", "reset", "step", "observe", "score", "fork", "close", "info", "ping"] = Field(
        ..., description="The operation.")
    session: str | None = Field(None, max_length=64, description="Session token from `create`/`fork`.")
    seq: int | None = Field(None, ge=0, lt=2**63, description="Per-session sequence number (idempotent retries).")
    args: dict[str, Any] = Field(default_factory=dict, description="Op arguments (see PROTOCOL.md).")


class ErrorInfo(_Strict):
    code: str = Field(..., description="Stable machine-readable reason, e.g. 'not_found'.")
    message: str = Field(..., description="What went wrong, what was expected, how to fix it.")


class Reply(_Strict):
    """A server → client header (without "buffers")."""

    v: int = Field(PROTOCOL_VERSION, description="Protocol version.")
    id: int = Field(..., ge=-1, lt=2**63, description="The request's id; -1 when the request had no readable id.")
    ok: bool = Field(..., description="True: `result` holds the answer; False: `error` says why.")
    result: dict[str, Any] | None = Field(None, description="Op result (ok replies).")
    error: ErrorInfo | None = Field(None, description="Structured error (failed replies).")

    @model_validator(mode="after")
    def _ok_xor_error(self) -> Reply:
        if self.ok == (self.error is not None):
            raise ValueError("a reply has ok=true with no error, or ok=false with an error")
        return self


# Op arguments, validated by the server (strict types: "1" is not an int; an int is accepted for a float).
Finite = Annotated[float, Field(allow_inf_nan=False)]
TextAction = Annotated[str, StringConstraints(max_length=MAX_ACTION_CHARS)]
VectorAction = Annotated[list[Finite], Field(min_length=1, max_length=MAX_ACTION_DIM)]
Action = TextAction | VectorAction  # a phrase (text model) or a list of d floats (vector model)


class CreateArgs(SessionSettings):
    """`seed` plus the session settings (`worldsim.SessionSettings`: the same names, defaults and checks)."""

    seed: int = Field(0, ge=-(2**63), lt=2**64, description="Seeds the session's generator.")

    @field_validator("seed", mode="before")
    @classmethod
    def _integer_seed(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an int, received {type(value).__name__} {value!r}")
        return value


class ResetArgs(_Strict):
    prompt: str | None = Field(None, description="Imagine frame 0 from this text (when no frames buffer).")
    actions: list[Action | None] | None = Field(None, description="t0-1 actions between the given frames.")


class StepArgs(_Strict):
    action: Action = Field(..., description="A phrase (text model) or a list of d floats (vector model).")
    tag: dict[str, Any] | None = Field(None, description="Client data (e.g. pose, time) echoed in the reply and "
                                       "the frame stream, so an AR/VR client can reproject the frame; at most "
                                       f"{MAX_TAG_BYTES} bytes as msgpack.")


class ObserveArgs(_Strict):
    action: Action | None = Field(None, description="Action that led to the observed frame.")


class ScoreArgs(_Strict):
    actions: list[Action | None] | None = Field(None, description="T-1 actions of the clip.")
    prompt: str | None = Field(None, description="Scene prompt.")
    noise_draws: int = Field(0, ge=0, le=64, description="0: clean tokens; k: average over k noise draws.")
    seed: int = Field(0, ge=-(2**63), lt=2**64, description="Seed of the noise draws.")


class ForkArgs(_Strict):
    seed: int | None = Field(None, ge=-(2**63), lt=2**64,
                             description="None continues the parent's generator state.")


class NoArgs(_Strict):
    pass


ARGS: dict[str, type[BaseModel]] = {"hello": NoArgs, "create": CreateArgs, "reset": ResetArgs, "step": StepArgs,
                                   "observe": ObserveArgs, "score": ScoreArgs, "fork": ForkArgs, "close": NoArgs,
                                   "info": NoArgs, "ping": NoArgs}


def parse_args(op: str, args: dict[str, Any], request_id: int | None = None) -> Any:
    """Validate a request's `args` against its op's schema, or raise BridgeError('bad_request'; 'too_large' for a
    step's tag over MAX_TAG_BYTES)."""
    try:
        parsed = ARGS[op].model_validate(args)
    except ValidationError as e:
        settings = [err for err in e.errors() if err.get("loc") and err["loc"][0] in SessionSettings.model_fields]
        if op == "create" and len(settings) == len(e.errors()):  # only bad settings: named as a local session would
            raise BridgeError("bad_config", f"create: invalid session settings: {describe_errors(e, args)}.",
                              request_id) from None
        raise BridgeError("bad_request", f"{op}: invalid args {_short(args)}: {_errors(e)}. "
                          f"Expected fields: {sorted(ARGS[op].model_fields)}.", request_id) from None
    if isinstance(parsed, StepArgs) and parsed.tag is not None:
        size = len(msgpack.packb(parsed.tag, use_bin_type=True))  # decoded from msgpack, so it packs again
        if size > MAX_TAG_BYTES:
            raise BridgeError("too_large", f"step: tag of {size} bytes as msgpack; at most {MAX_TAG_BYTES}. Fix: "
                              "send a small tag (a pose and a time); keep bulk data out of it.", request_id)
    return parsed


# ----- codec ----------------------------------------------------------------------------------------------------
def encode(header: dict[str, Any], arrays: list[np.ndarray] | tuple[np.ndarray, ...] = ()) -> list[bytes]:
    """A multipart message: frame 0 is the msgpack header (with "buffers": [{dtype, shape}, ...]), then one frame of
    raw little-endian C-order bytes per array. Only uint8, float32 and int64 arrays travel."""
    specs, bufs = [], []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        name = a.dtype.name
        if name not in DTYPES:
            raise BridgeError("bad_buffer", f"buffer {i} has dtype {a.dtype}; expected one of {list(DTYPES)}. "
                              "Fix: convert with .astype(np.uint8 / np.float32 / np.int64).")
        a = np.ascontiguousarray(a, dtype=DTYPES[name])
        specs.append({"dtype": name, "shape": list(a.shape)})
        bufs.append(a.tobytes())
    if len(specs) > MAX_BUFFERS:
        raise BridgeError("too_large", f"{len(specs)} buffers in one message; at most {MAX_BUFFERS} allowed.")
    try:
        head = msgpack.packb({**header, "buffers": specs}, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise BridgeError("bad_header", f"the header cannot be packed as msgpack ({type(e).__name__}: {e}). "
                          "Fix: use plain str/int (−2⁶³…2⁶⁴−1)/float/bool/None/list/dict values, "
                          "not numpy scalars.") from None
    if len(head) > MAX_HEADER_BYTES:
        raise BridgeError("too_large", f"header of {len(head)} bytes; at most {MAX_HEADER_BYTES} allowed.")
    return [head, *bufs]


def decode(frames: list[bytes], max_header_bytes: int = MAX_HEADER_BYTES,
           max_buffers: int = MAX_BUFFERS) -> tuple[Request | Reply, list[np.ndarray]]:
    """Parse and validate a multipart message into (Request or Reply, arrays); raise BridgeError with a code:
    'bad_header' (not msgpack / not a map / bad fields), 'bad_version', 'bad_op', 'bad_buffer', 'too_large'.

    Arrays are read-only views of the received bytes (no copy)."""
    if not frames:
        raise BridgeError("bad_header", "empty message; expected a msgpack header frame then buffers.")
    raw = frames[0]
    if len(raw) > max_header_bytes:
        raise BridgeError("too_large", f"header of {len(raw)} bytes; at most {max_header_bytes} allowed.")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several types (ExtraData, FormatError, StackError, ValueError, …)
        raise BridgeError("bad_header", f"frame 0 is not a single msgpack value ({type(e).__name__}: {e}). "
                          "Fix: pack the header as one msgpack map.") from None
    if not isinstance(header, dict):
        raise BridgeError("bad_header", f"header is a msgpack {type(header).__name__}; expected a map with keys "
                          "v, id, op (request) or v, id, ok (reply).")
    rid = header.get("id")  # echoed in an error reply only when it is a valid id
    rid = rid if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 2**63 else None
    if header.get("v") != PROTOCOL_VERSION:
        raise BridgeError("bad_version", f"protocol version {_short(header.get('v'))}; this side speaks "
                          f"v={PROTOCOL_VERSION}. Fix: send \"v\": {PROTOCOL_VERSION} (and upgrade the older side).",
                          rid)
    if "op" in header and header["op"] not in OPS:
        op = header["op"]
        hint = suggest(op, OPS) if isinstance(op, str) else ""
        raise BridgeError("bad_op", f"unknown op {_short(op)}; expected one of {list(OPS)}.{hint}", rid)
    arrays = _buffers(header.pop("buffers", []), frames[1:], max_buffers, rid)
    model: type[Request] | type[Reply] = Request if "op" in header else Reply
    if "op" not in header and "ok" not in header:
        raise BridgeError("bad_header", f"header has neither 'op' (request) nor 'ok' (reply); keys: "
                          f"{sorted(map(str, header))}.", rid)
    try:
        return model.model_validate(header), arrays
    except ValidationError as e:
        raise BridgeError("bad_header", f"invalid {model.__name__.lower()} header: {_errors(e)}.", rid) from None


def request_digest(req: Request, arrays: list[np.ndarray]) -> bytes:
    """Fingerprint of what a session request asks (op, args, buffers; not its id)."""
    h = hashlib.blake2b(msgpack.packb([req.op, req.args, [[a.dtype.str, list(a.shape)] for a in arrays]],
                                      use_bin_type=True), digest_size=16)
    for a in arrays:
        h.update(a.data)
    return h.digest()


def _buffers(specs: Any, bufs: list[bytes], max_buffers: int, rid: int | None) -> list[np.ndarray]:
    if not isinstance(specs, list):
        raise BridgeError("bad_buffer", f"'buffers' is {type(specs).__name__}; expected a list of "
                          "{dtype, shape} maps, one per frame after the header.", rid)
    if len(specs) > max_buffers or len(bufs) > max_buffers:
        raise BridgeError("too_large", f"{max(len(specs), len(bufs))} buffers; at most {max_buffers} allowed.", rid)
    if len(specs) != len(bufs):
        raise BridgeError("bad_buffer", f"header lists {len(specs)} buffers but {len(bufs)} frames follow it; "
                          "expected one frame per entry of 'buffers'.", rid)
    arrays = []
    for i, (spec, buf) in enumerate(zip(specs, bufs, strict=True)):
        if not (isinstance(spec, dict) and set(spec) == {"dtype", "shape"}):
            raise BridgeError("bad_buffer", f"buffer {i}: spec {_short(spec)}; expected exactly "
                              "{'dtype': str, 'shape': [int, ...]}.", rid)
        dtype, shape = spec["dtype"], spec["shape"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise BridgeError("bad_buffer", f"buffer {i}: dtype {_short(dtype)}; expected one of {list(DTYPES)}.",
                              rid)
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise BridgeError("bad_buffer", f"buffer {i}: shape {_short(shape)}; expected a list of at most "
                              f"{MAX_NDIM} non-negative ints.", rid)
        need = math.prod(shape) * DTYPES[dtype].itemsize  # exact Python ints: huge declared sizes cannot overflow
        if need != len(buf):
            raise BridgeError("bad_buffer", f"buffer {i}: {dtype} {tuple(shape)} needs {need} bytes; the frame has "
                              f"{len(buf)}. Fix: send prod(shape) × itemsize raw bytes, row-major (C order), "
                              "little-endian, no padding (numpy: arr.tobytes()).", rid)
        arrays.append(np.frombuffer(buf, dtype=DTYPES[dtype]).reshape(shape))
    return arrays


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'header'}: {err['msg']}" for err in e.errors()[:5])


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
