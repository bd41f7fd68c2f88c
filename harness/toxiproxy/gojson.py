"""JSON the way Toxiproxy's Go server reads and writes it.

Go's ``encoding/json`` decodes only the first value of a body (trailing bytes are ignored), matches
object keys to struct fields case-insensitively, ignores unknown keys, treats ``null`` as "leave
the default", and refuses a non-integer for an integer field. Its output is compact, escapes
``<``, ``>`` and ``&``, and prints a float32 in its shortest form (``1``, ``0.5``). Hand-written
because these rules are Go's, not the ``json`` module's.
"""

from __future__ import annotations

import json
import struct
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_decoder = json.JSONDecoder()


class DecodeError(Exception):
    """A body Go would refuse; ``str()`` is Go's message (without ``bad request body: ``)."""


def loads(body: bytes) -> Any:
    """Decode the first JSON value of ``body`` like ``json.NewDecoder(body).Decode``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("invalid character in input") from None
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise DecodeError("EOF")
    try:
        value, _ = _decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text) or exc.msg.startswith("Unterminated"):
            raise DecodeError("unexpected EOF") from None
        char = text[exc.pos]
        if exc.msg.startswith("Expecting value"):
            raise DecodeError(
                f"invalid character '{char}' looking for beginning of value"
            ) from None
        raise DecodeError(f"invalid character '{char}' ({exc.msg.lower()})") from None
    return value


def json_kind(value: Any) -> str:
    """Go's name for a JSON value's kind in type errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def decode_struct(
    value: Any, fields: dict[str, str], target: dict[str, Any], go_type: str, prefix: str = ""
) -> None:
    """Decode object ``value`` into ``target`` following ``fields`` (name -> Go type).

    Go types: ``string``, ``bool``, ``int64``, ``int``, ``float32``, ``object`` (kept raw).
    """
    if value is None:
        return
    if not isinstance(value, dict):
        raise DecodeError(
            f"json: cannot unmarshal {json_kind(value)} into Go value of type {go_type}"
        )
    lowered = {name.lower(): name for name in fields}
    for key, item in value.items():
        name = key if key in fields else lowered.get(key.lower())
        if name is None or item is None:
            continue
        kind = fields[name]
        where = f"{go_type.rsplit('.', 1)[-1]}.{prefix}{name}"
        target[name] = _convert(item, kind, where)


def _convert(item: Any, kind: str, where: str) -> Any:
    def fail(what: str) -> DecodeError:
        return DecodeError(
            f"json: cannot unmarshal {what} into Go struct field {where} of type {kind}"
        )

    if kind == "string":
        if not isinstance(item, str):
            raise fail(json_kind(item))
        return item
    if kind == "bool":
        if not isinstance(item, bool):
            raise fail(json_kind(item))
        return item
    if kind in ("int64", "int"):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise fail(json_kind(item))
        if isinstance(item, float) or not INT64_MIN <= item <= INT64_MAX:
            raise fail(f"number {item!r}")
        return item
    if kind == "float32":
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise fail(json_kind(item))
        return to_float32(float(item))
    if kind == "object":
        if not isinstance(item, dict):
            raise fail(json_kind(item))
        return item
    raise AssertionError(kind)


def to_float32(value: float) -> float:
    """Round to the nearest float32 (Toxiproxy keeps toxicity as a float32)."""
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def _float32_text(value: float) -> str:
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if to_float32(float(text)) == value:
            return text
    return repr(value)


class Float32(float):
    """A float printed the way Go prints a float32."""


def _prepare(value: Any) -> Any:
    if isinstance(value, Float32):
        return _Raw(_float32_text(float(value)))
    if isinstance(value, dict):
        return {k: _prepare(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_prepare(v) for v in value]
    return value


class _Raw:
    def __init__(self, text: str) -> None:
        self.text = text


def dumps(value: Any) -> str:
    """Compact JSON as Go's ``json.Marshal`` writes it."""
    raws: list[str] = []

    def default(obj: object) -> object:
        if isinstance(obj, _Raw):
            raws.append(obj.text)
            return f"\x00raw{len(raws) - 1}\x00"
        raise TypeError(type(obj).__name__)

    text = json.dumps(_prepare(value), separators=(",", ":"), ensure_ascii=False, default=default)
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000raw{i}\\u0000"', raw, 1)
    return text
