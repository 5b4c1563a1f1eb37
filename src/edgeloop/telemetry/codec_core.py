"""Shared parts of the wire codec: errors, zstd columns, typed field access, envelopes.

``edgeloop.telemetry.codec`` (frames, summaries, batches, acks) and
``edgeloop.telemetry.codec_events`` (events) build on these; the encodings themselves
are documented in ``codec``'s module docstring. Nothing here is public API.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NoReturn

import msgpack
import numpy as np
import numpy.typing as npt
import zstandard

from edgeloop.errors import CodecError, RejectReason
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.validate import MAX_PAYLOAD_BYTES as MAX_PAYLOAD_BYTES

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
# MAX_PAYLOAD_BYTES (8 MiB): largest encoded payload a decoder accepts. Defined beside
# the other input limits in validate.py, which must not import the codec's dependencies.
MAX_DECODED_BYTES = 64 * 1024 * 1024
"""Largest total decompressed column data per payload (about 4M frame rows)."""
ZSTD_LEVEL = 1  # level 3 gains <0.5% on float columns and costs ~20% more time

_NAMES_PER_SAMPLE_SKIP = 64  # frames with >= 64 samples per catalog name keep all names
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_U4 = np.dtype("<u4")
_I8 = np.dtype("<i8")
_F4 = np.dtype("<f4")


# -- errors -------------------------------------------------------------------------


def _fail(field: str, reason: RejectReason, detail: str = "") -> NoReturn:
    raise CodecError(field, reason, detail)


def _typename(x: object) -> str:
    return "nil" if x is None else type(x).__name__


# -- zstd, one context per thread (contexts are not thread-safe) ------------------------


class _Zstd(threading.local):
    def __init__(self) -> None:
        self.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
        self.d = zstandard.ZstdDecompressor()


_zstd = _Zstd()


class _Budget:
    """Decompressed bytes still allowed for one payload (the zstd-bomb guard)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_DECODED_BYTES


def _compress(arr: npt.NDArray[Any]) -> bytes:
    return _zstd.c.compress(np.ascontiguousarray(arr).data)


def _decompress(blob: object, field: str, itemsize: int, budget: _Budget) -> bytes:
    """Inflate one column after checking its declared size against the budget."""
    if not isinstance(blob, bytes):
        _fail(field, RejectReason.WRONG_TYPE, f"expected bin, got {_typename(blob)}")
    if not blob.startswith(_ZSTD_MAGIC):
        if _ZSTD_MAGIC.startswith(blob):
            _fail(field, RejectReason.TRUNCATED, f"zstd frame cut after {len(blob)} bytes")
        _fail(field, RejectReason.MALFORMED, "not a zstd frame (bad magic)")
    try:
        size = zstandard.frame_content_size(blob)
    except zstandard.ZstdError:
        if len(blob) < 18:  # the longest zstd frame header
            _fail(field, RejectReason.TRUNCATED, "zstd frame header incomplete")
        _fail(field, RejectReason.MALFORMED, "invalid zstd frame header")
    if size < 0:
        _fail(field, RejectReason.MALFORMED, "zstd frame does not declare its content size")
    if size > budget.left:
        _fail(
            field,
            RejectReason.OVERSIZED,
            f"declares {size} decompressed bytes; {budget.left} of the "
            f"{MAX_DECODED_BYTES}-byte limit left",
        )
    if size % itemsize:
        _fail(field, RejectReason.TRUNCATED, f"{size} bytes is not a multiple of {itemsize}")
    dobj = _zstd.d.decompressobj()
    try:
        raw = dobj.decompress(blob)
    except zstandard.ZstdError as exc:
        _fail(field, RejectReason.MALFORMED, f"corrupt zstd data: {exc}")
    if not dobj.eof or len(raw) != size:
        _fail(field, RejectReason.TRUNCATED, f"zstd frame ends after {len(raw)} of {size} bytes")
    if dobj.unused_data:
        _fail(field, RejectReason.MALFORMED, f"{len(dobj.unused_data)} bytes after the zstd frame")
    budget.left -= size
    return raw


# -- columns ----------------------------------------------------------------------------


def _enc_u4(a: npt.NDArray[Any]) -> bytes:
    return _compress(np.asarray(a, dtype=_U4))


def _enc_i8(a: npt.NDArray[Any]) -> bytes:
    return _compress(np.asarray(a, dtype=_I8))


def _enc_i8_delta(a: npt.NDArray[Any]) -> bytes:
    a = np.asarray(a, dtype=_I8)
    d = np.empty_like(a)
    if a.shape[0]:
        d[0] = a[0]
        np.subtract(a[1:], a[:-1], out=d[1:])  # wraps on overflow; the cumsum wraps back
    return _compress(d)


def _enc_f4_shuffled(a: npt.NDArray[Any]) -> bytes:
    b = np.ascontiguousarray(a, dtype=_F4).view(np.uint8).reshape(-1, 4)
    return _compress(b.T)


def _dec_u4(blob: object, field: str, budget: _Budget) -> npt.NDArray[np.uint32]:
    raw = _decompress(blob, field, 4, budget)
    return np.frombuffer(raw, dtype=_U4).astype(np.uint32)  # writable, native order


def _dec_i8(blob: object, field: str, budget: _Budget) -> npt.NDArray[np.int64]:
    raw = _decompress(blob, field, 8, budget)
    return np.frombuffer(raw, dtype=_I8).astype(np.int64)


def _dec_i8_delta(blob: object, field: str, budget: _Budget) -> npt.NDArray[np.int64]:
    raw = _decompress(blob, field, 8, budget)
    return np.cumsum(np.frombuffer(raw, dtype=_I8), dtype=np.int64)


def _dec_f4_shuffled(blob: object, field: str, budget: _Budget) -> npt.NDArray[np.float32]:
    raw = _decompress(blob, field, 4, budget)
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(4, -1)
    out = np.empty((planes.shape[1], 4), dtype=np.uint8)
    for i in range(4):  # one strided copy per byte plane is ~5x faster than planes.T
        out[:, i] = planes[i]
    return out.view(_F4).reshape(-1).astype(np.float32, copy=False)


def _enc_block(frame: Frame) -> dict[str, bytes]:
    return {
        "sensor": _enc_u4(frame.sensor),
        "ts": _enc_i8_delta(frame.ts),
        "value": _enc_f4_shuffled(frame.value),
    }


def _dec_block(m: Mapping[Any, Any], field: str, budget: _Budget, n_names: int | None) -> Frame:
    """Decode the columns of a block map; ``n_names`` bounds the sensor indices if given."""
    sensor = _dec_u4(_get(m, "sensor", field), f"{field}.sensor", budget)
    ts = _dec_i8_delta(_get(m, "ts", field), f"{field}.ts", budget)
    value = _dec_f4_shuffled(_get(m, "value", field), f"{field}.value", budget)
    _same_length(field, sensor=sensor, ts=ts, value=value)
    _check_indices(sensor, n_names, f"{field}.sensor")
    return Frame(sensor, ts, value)


def _same_length(field: str, **cols: npt.NDArray[Any]) -> None:
    lengths = {k: int(v.shape[0]) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        _fail(field, RejectReason.TRUNCATED, f"columns differ in length: {lengths}")


def _check_indices(sensor: npt.NDArray[np.uint32], n_names: int | None, field: str) -> None:
    if n_names is None or sensor.shape[0] == 0:
        return
    top = int(sensor.max())
    if top >= n_names:
        _fail(field, RejectReason.MALFORMED, f"sensor index {top} beyond {n_names} names")


# -- typed field access -----------------------------------------------------------------


def _map(obj: object, field: str) -> dict[Any, Any]:
    if not isinstance(obj, dict):
        _fail(field, RejectReason.MALFORMED, f"expected a map, got {_typename(obj)}")
    return obj


def _get(m: Mapping[Any, Any], key: str, field: str) -> object:
    try:
        return m[key]
    except KeyError:
        _fail(f"{field}.{key}", RejectReason.MALFORMED, "missing key")


def _int(m: Mapping[Any, Any], key: str, field: str) -> int:
    x = _get(m, key, field)
    return _as_int(x, f"{field}.{key}")


def _as_int(x: object, field: str) -> int:
    if type(x) is not int:  # bool is an int subclass but never a valid int field
        _fail(field, RejectReason.WRONG_TYPE, f"expected int, got {_typename(x)}")
    if not _I64_MIN <= x <= _I64_MAX:
        _fail(field, RejectReason.WRONG_TYPE, f"{x} does not fit int64")
    return x


def _float(m: Mapping[Any, Any], key: str, field: str) -> float:
    return _as_float(_get(m, key, field), f"{field}.{key}")


def _as_float(x: object, field: str) -> float:
    if type(x) is float:
        return x
    if type(x) is int:  # msgpack ints are at most 64-bit: exact enough, never overflow
        return float(x)
    _fail(field, RejectReason.WRONG_TYPE, f"expected float, got {_typename(x)}")


def _str(m: Mapping[Any, Any], key: str, field: str) -> str:
    x = _get(m, key, field)
    if not isinstance(x, str):
        _fail(f"{field}.{key}", RejectReason.WRONG_TYPE, f"expected str, got {_typename(x)}")
    return x


def _list(x: object, field: str) -> list[Any]:
    if not isinstance(x, list):
        _fail(field, RejectReason.WRONG_TYPE, f"expected an array, got {_typename(x)}")
    return x


def _names(x: object, field: str) -> tuple[str, ...]:
    items = _list(x, field)
    if set(map(type, items)) <= {str}:  # the common case, without a Python loop
        return tuple(items)
    for i, s in enumerate(items):
        if not isinstance(s, str):
            _fail(f"{field}[{i}]", RejectReason.WRONG_TYPE, f"expected str, got {_typename(s)}")
    return tuple(items)


# -- envelope -----------------------------------------------------------------------


def _default(obj: object) -> object:
    """msgpack fallback: numpy scalars and arrays in ``status`` become plain values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _pack(kind: str, body: dict[str, Any], version: int = SCHEMA_VERSION) -> bytes:
    out: bytes = msgpack.packb(
        {"v": version, "k": kind, **body}, use_bin_type=True, default=_default
    )
    return out


def _open(
    data: object, kind: str, versions: tuple[int, ...] = SUPPORTED_VERSIONS
) -> dict[Any, Any]:
    """Check size, parse msgpack, check version (one of ``versions``) and kind; return
    the envelope map."""
    if not isinstance(data, bytes | bytearray | memoryview):
        _fail("payload", RejectReason.WRONG_TYPE, f"expected bytes, got {_typename(data)}")
    n = memoryview(data).nbytes
    if n > MAX_PAYLOAD_BYTES:
        _fail("payload", RejectReason.OVERSIZED, f"{n} bytes > limit {MAX_PAYLOAD_BYTES}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except msgpack.ExtraData:
        _fail("payload", RejectReason.MALFORMED, "trailing bytes after the envelope")
    except (msgpack.FormatError, msgpack.StackError, UnicodeDecodeError) as exc:
        _fail("payload", RejectReason.MALFORMED, f"invalid msgpack: {exc!s:.120}")
    except ValueError as exc:
        msg = str(exc)
        # "incomplete input", or a length header larger than the bytes that follow
        if "incomplete" in msg or "exceeds max_" in msg:
            _fail("payload", RejectReason.TRUNCATED, f"msgpack input ends early ({msg:.120})")
        _fail("payload", RejectReason.MALFORMED, f"invalid msgpack: {msg:.120}")
    except Exception as exc:  # the C unpacker's other complaints (e.g. bad ext data)
        _fail("payload", RejectReason.MALFORMED, f"invalid msgpack: {exc!r:.120}")
    env = _map(obj, "envelope")
    v = _get(env, "v", "envelope")
    if type(v) is not int:
        _fail("envelope.v", RejectReason.WRONG_TYPE, f"expected int, got {_typename(v)}")
    if v not in versions:
        _fail(
            "envelope.v",
            RejectReason.SCHEMA_VERSION,
            f"{kind} version {v} not supported; supported: {list(versions)}",
        )
    k = _get(env, "k", "envelope")
    if k != kind:
        got = repr(k)[:60] if isinstance(k, str) else _typename(k)
        _fail("envelope.k", RejectReason.MALFORMED, f"expected kind {kind!r}, got {got}")
    return env
