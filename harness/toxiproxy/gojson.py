"""JSON the way Toxiproxy's Go server reads and writes it.

Go's ``encoding/json`` decodes only the first value of a body (trailing bytes are ignored), matches
object keys to struct fields case-insensitively, ignores unknown keys, treats ``null`` as "leave
the default", refuses a non-integer for an integer field and a number a float32 cannot hold, and
turns invalid UTF-8 and lone surrogate escapes into U+FFFD. Syntax errors carry Go's scanner
wording (``invalid character 'x' after object key``), nesting deeper than 10000 is refused. Its
output is compact, escapes ``<``, ``>`` and ``&``, and prints a float32 in its shortest form
(``1``, ``0.5``, ``1e-7``). Hand-written because these rules are Go's, not the ``json`` module's:
the ``json`` module parses (fast, in C); the Go scanner here only runs when it refuses a body, to
name the error as Go would, or to parse nesting deeper than Python's recursion allows.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import struct
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
MAX_DEPTH = 10000
"""Go's ``maxNestingDepth``."""


class DecodeError(Exception):
    """A body Go would refuse; ``str()`` is Go's message (without ``bad request body: ``)."""


class Number(float):
    """A JSON number that remembers its literal (Go's type errors quote the literal)."""

    text: str

    def __new__(cls, text: str) -> Number:
        value = super().__new__(cls, text)
        value.text = text
        return value


class Object(dict[str, Any]):
    """A JSON object that also keeps every member in order, duplicates included (Go assigns
    each in turn, so the last of two keys matching one field wins)."""

    pairs: list[tuple[str, Any]]


def _object(pairs: list[tuple[str, Any]]) -> Object:
    obj = Object(pairs)
    obj.pairs = pairs
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity, -Infinity: not JSON, Go's scanner names the error


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    """Each invalid byte becomes one U+FFFD, as Go's decoder does."""
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd" * (exc.end - exc.start), exc.end


codecs.register_error("gojson-replace", _go_replace)

_decoder = json.JSONDecoder(
    object_pairs_hook=_object,
    parse_float=Number,
    parse_int=lambda text: int(text) if len(text) <= 40 else Number(text),
    parse_constant=_reject_constant,
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(body: bytes) -> Any:
    """Decode the first JSON value of ``body`` like ``json.NewDecoder(body).Decode``."""
    text = body.decode("utf-8", "gojson-replace")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise DecodeError("EOF")
    if _SURROGATE_ESCAPE.search(text) is None:
        try:
            return _decoder.raw_decode(text, start)[0]
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            pass
    return _GoParser(body).parse()


def _quote_char(c: int) -> str:
    """Go's ``quoteChar``: how its scanner names the offending byte."""
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    ch = chr(c)  # Go's string(byte) is the rune U+00XX
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        text = named[ch]
    elif ch == "\v":
        text = "\\v"
    elif ch == "\\":
        text = "\\\\"
    elif c < 0x20 or c == 0x7F:
        text = f"\\x{c:02x}"
    elif not ch.isprintable():
        text = f"\\u{c:04x}"
    else:
        text = ch
    return f"'{text}'"


_WS = frozenset(b" \t\r\n")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'bfnrt\\/"')
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]*')
_LITERALS = {ord("t"): (b"true", True), ord("f"): (b"false", False), ord("n"): (b"null", None)}


class _Eof(Exception):
    pass


class _GoParser:
    """Go's scanner (``encoding/json/scanner.go``) as an iterative parser: Go's error wording,
    its depth limit, and no recursion whatever the nesting."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.i = 0

    def parse(self) -> Any:
        try:
            return self._value()
        except _Eof:
            raise DecodeError("unexpected EOF") from None

    def _error(self, context: str) -> DecodeError:
        return DecodeError(f"invalid character {_quote_char(self.data[self.i])} {context}")

    def _peek(self) -> int:
        """The next non-space byte (not consumed)."""
        data, i = self.data, self.i
        while i < len(data) and data[i] in _WS:
            i += 1
        self.i = i
        if i >= len(data):
            raise _Eof
        return data[i]

    def _value(self) -> Any:
        # Stack of open containers: [container, pending key (objects) or None].
        stack: list[list[Any]] = []
        while True:
            c = self._peek()
            if c == ord("{") or c == ord("["):
                if len(stack) >= MAX_DEPTH:
                    raise self._error("exceeded max depth")
                self.i += 1
                empty = ord("}") if c == ord("{") else ord("]")
                container: list[Any] = []
                stack.append([container, c == ord("{"), None])
                if self._peek() == empty:
                    self.i += 1
                    value: Any = stack.pop()[0]
                    if c == ord("{"):
                        value = _object(value)
                elif c == ord("{"):
                    stack[-1][2] = self._key()
                    continue
                else:
                    continue
            else:
                value = self._scalar(c)
            # A value is complete: attach it, then close every container that ends here.
            while True:
                if not stack:
                    return value
                top = stack[-1]
                if top[1]:
                    top[0].append((top[2], value))
                else:
                    top[0].append(value)
                c = self._peek()
                if top[1]:
                    if c == ord(","):
                        self.i += 1
                        top[2] = self._key()
                        break
                    if c != ord("}"):
                        raise self._error("after object key:value pair")
                    self.i += 1
                    value = _object(stack.pop()[0])
                else:
                    if c == ord(","):
                        self.i += 1
                        break
                    if c != ord("]"):
                        raise self._error("after array element")
                    self.i += 1
                    value = stack.pop()[0]

    def _key(self) -> str:
        if self._peek() != ord('"'):
            raise self._error("looking for beginning of object key string")
        key = self._string()
        if self._peek() != ord(":"):
            raise self._error("after object key")
        self.i += 1
        return key

    def _scalar(self, c: int) -> Any:
        if c == ord('"'):
            return self._string()
        if c == ord("-") or c in _DIGITS:
            return self._number()
        literal = _LITERALS.get(c)
        if literal is None:
            raise self._error("looking for beginning of value")
        word, value = literal
        name = word.decode()
        for expected in word[1:]:
            self.i += 1
            if self.i >= len(self.data):
                raise _Eof
            if self.data[self.i] != expected:
                raise self._error(f"in literal {name} (expecting {_quote_char(expected)})")
        self.i += 1
        return value

    def _number(self) -> int | Number:
        data, start = self.data, self.i

        def at() -> int:
            if self.i >= len(data):
                raise _Eof
            return data[self.i]

        if at() == ord("-"):
            self.i += 1
            if at() not in _DIGITS:
                raise self._error("in numeric literal")
        if data[self.i] == ord("0"):
            self.i += 1
        while self.i < len(data) and data[self.i] in _DIGITS:
            self.i += 1
        is_float = False
        if self.i < len(data) and data[self.i] == ord("."):
            is_float = True
            self.i += 1
            if at() not in _DIGITS:
                raise self._error("after decimal point in numeric literal")
            while self.i < len(data) and data[self.i] in _DIGITS:
                self.i += 1
        if self.i < len(data) and data[self.i] in b"eE":
            is_float = True
            self.i += 1
            if at() in b"+-":
                self.i += 1
            if at() not in _DIGITS:
                raise self._error("in exponent of numeric literal")
            while self.i < len(data) and data[self.i] in _DIGITS:
                self.i += 1
        text = data[start : self.i].decode("ascii")
        if is_float or len(text) > 40:
            return Number(text)
        return int(text)

    def _string(self) -> str:
        data, start = self.data, self.i
        self.i += 1
        while True:
            match = _PLAIN.match(data, self.i)
            assert match is not None
            self.i = match.end()
            if self.i >= len(data):
                raise _Eof
            c = data[self.i]
            if c == ord('"'):
                self.i += 1
                break
            if c < 0x20:
                raise self._error("in string literal")
            # a backslash
            self.i += 1
            if self.i >= len(data):
                raise _Eof
            c = data[self.i]
            if c == ord("u"):
                for _ in range(4):
                    self.i += 1
                    if self.i >= len(data):
                        raise _Eof
                    if data[self.i] not in _HEX:
                        raise self._error("in \\u hexadecimal character escape")
            elif c not in _ESCAPES:
                raise self._error("in string escape code")
            self.i += 1
        raw = data[start : self.i].decode("utf-8", "gojson-replace")
        text: str = json.loads(raw)  # valid by now; Python pairs surrogates as Go does
        return _SURROGATE.sub("\ufffd", text)


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
    value: Any,
    fields: dict[str, str],
    target: dict[str, Any],
    go_type: str,
    prefix: str = "",
    struct_name: str | None = None,
) -> None:
    """Decode object ``value`` into ``target`` following ``fields`` (name -> Go type).

    Go types: ``string``, ``bool``, ``int64``, ``int``, ``float32``, or ``object:<Go type>``
    (an object kept raw, named in type errors). ``go_type`` names the whole value in type errors,
    ``struct_name`` (default: its last dotted part) prefixes field names, as Go's errors do.
    """
    if value is None:
        return
    if not isinstance(value, dict):
        raise DecodeError(
            f"json: cannot unmarshal {json_kind(value)} into Go value of type {go_type}"
        )
    if struct_name is None:
        struct_name = go_type.rsplit(".", 1)[-1]
    lowered = {name.lower(): name for name in fields}
    pairs = value.pairs if isinstance(value, Object) else list(value.items())
    for key, item in pairs:
        name = key if key in fields else lowered.get(key.lower())
        if name is None or item is None:
            continue
        target[name] = _convert(item, fields[name], f"{struct_name}.{prefix}{name}")


def _literal(item: Any) -> str:
    return item.text if isinstance(item, Number) else repr(item)


def _convert(item: Any, kind: str, where: str) -> Any:
    go_kind = kind.split(":", 1)[-1]

    def fail(what: str) -> DecodeError:
        return DecodeError(
            f"json: cannot unmarshal {what} into Go struct field {where} of type {go_kind}"
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
            raise fail(f"number {_literal(item)}")
        return item
    if kind == "float32":
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise fail(json_kind(item))
        try:
            return to_float32(float(item))
        except OverflowError:  # strconv.ParseFloat(s, 32): value out of range
            raise fail(f"number {_literal(item)}") from None
    if kind.startswith("object"):
        if not isinstance(item, dict):
            raise fail(json_kind(item))
        return item
    raise AssertionError(kind)


def to_float32(value: float) -> float:
    """Round to the nearest float32 (Toxiproxy keeps toxicity as a float32); ``OverflowError``
    when it does not fit, as Go's ``ParseFloat(s, 32)`` refuses it."""
    rounded = float(struct.unpack("f", struct.pack("f", value))[0])
    if not math.isfinite(rounded):
        raise OverflowError(value)
    return rounded


def _float32_text(value: float) -> str:
    """Go's ``json.Marshal`` of a float32: shortest digits, positional unless the magnitude is
    below 1e-6 or at least 1e21, and exponents without a leading zero (``1e-7``, ``1e+21``)."""
    if value == 0:
        return "0"
    for precision in range(9):
        text = f"{value:.{precision}e}"
        if to_float32(float(text)) == value:
            break
    mantissa, exp_text = text.split("e")
    exponent = int(exp_text)
    negative = mantissa.startswith("-")
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    sign = "-" if negative else ""
    magnitude = abs(value)
    if magnitude < _F32_SMALL or magnitude >= _F32_LARGE:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}".replace(
            "e-0", "e-"
        )
    point = exponent + 1  # digits before the decimal point
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


_F32_SMALL = float(struct.unpack("f", struct.pack("f", 1e-6))[0])
_F32_LARGE = float(struct.unpack("f", struct.pack("f", 1e21))[0])


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
