"""A body's bytes to JSON, or the reason they cannot be: pure, shared by both clients.

``json.loads`` alone lets a hostile body escape as a bare exception: a list nested a
thousand levels deep (2 KB) raises ``RecursionError``, an integer literal of more than
4,300 digits ``ValueError`` (Python's ``int_max_str_digits``), bytes that are not text
``UnicodeDecodeError``. Here each becomes :class:`Undecodable`, which the client turns
into the call's typed error.

A body nested deeper than :data:`MAX_JSON_DEPTH` is refused even when ``json`` would take
it: everything downstream of the decoder walks the value recursively (pydantic, the
lone-surrogate repair below, ``json.dumps`` when a body is journaled or a record
written), each with its own limit and its own stack, so the bound is set once, here,
far below all of them. No results body needs it: the API's own nesting is eight levels,
the rest is a model's explanation.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

MAX_JSON_DEPTH: Final = 64
# What one JSON value may cost once decoded, beyond its text: a pointer in its container
# and a small object (a float is 24 bytes, a short string 50 and up, an empty list 56).
VALUE_WEIGHT: Final = 64
# An object costs more: an empty dict is 64 bytes, one with a key already 184.
OBJECT_WEIGHT: Final = 256


class Undecodable(Exception):
    """A body that is not JSON this library can take; ``reason`` says why. Strictly private."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_KEEP = b'[]{}"'
_NOT_KEPT = bytes(b for b in range(256) if b not in _KEEP)
# A string whose escapes are gone: no quote inside it.
_STRING = re.compile(rb'"[^"]*"')


def nested_deeper_than(content: bytes | bytearray, limit: int) -> bool:
    """Whether the JSON text ``content`` nests containers more than ``limit`` deep.

    Without decoding, so without recursing, in a few passes of C-speed ``bytes``
    methods. A body with no more opening brackets than ``limit`` is answered at once.
    Otherwise the brackets are kept and the strings cut out (a bracket in a string is
    text), then each pass removes the innermost pairs, one level a pass. Text that is
    not JSON (unbalanced) answers ``False``: the decoder then says what is wrong.
    """
    if content.count(b"[") + content.count(b"{") <= limit:
        return False
    # Escaped backslashes, then escaped quotes, go first: no quote is left inside a
    # string. Then only brackets and quotes are kept, and the empty strings that most
    # strings become are dropped at once; two adjacent quotes that are the end of one
    # string and the start of the next have no bracket between them, so dropping them
    # merges two strings, which is harmless. The few strings left hold brackets.
    text = content.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = text.translate(None, _NOT_KEPT).replace(b'""', b"")
    if b'"' in text:
        text = _STRING.sub(b"", text)
    for _ in range(limit):
        # One level a pass: a pair of the other kind made by this pass waits for the
        # next (the placeholder keeps it apart).
        shorter = text.replace(b"[]", b"\0").replace(b"{}", b"\0").replace(b"\0", b"")
        if not shorter or len(shorter) == len(text):
            return False
        text = shorter
    # What is left are the brackets outside strings: at ``limit`` 0, any is too deep
    # (a string that holds a bracket, alone, is not).
    return bool(text)


def weigh(chunk: bytes | bytearray) -> int:
    """What ``chunk`` of a JSON body may cost in memory once received and decoded.

    Its bytes twice (the chunks, then the joined body) and :data:`VALUE_WEIGHT` for each
    value it starts (counted by the commas, colons and opening brackets, at C speed).
    Measured against what ``json.loads`` allocates (tracemalloc), on lists of floats,
    integers, zeros, booleans, short, long and empty strings, empty objects and lists,
    and objects of many keys: from 1.3 to 9 times the real footprint; ``[{}, {}, ...]``,
    the most memory per byte json makes (18 to 24 times the text), at 1.9 times. The
    exception: strings of characters outside the Basic Multilingual Plane (an emoji makes
    Python store the whole string at 4 bytes a character), weighed at about half.
    Not exact: a bound that is cheap.
    """
    values = chunk.count(b",") + chunk.count(b":") + chunk.count(b"[")
    return 2 * len(chunk) + VALUE_WEIGHT * values + OBJECT_WEIGHT * chunk.count(b"{")


# JSON may escape half a UTF-16 pair ("\ud800"), which decodes to a string no encoder
# takes: such a value could never be written to a dataset. Checked on the bytes first,
# so bodies without the escape (nearly all) cost nothing.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _whole_unicode(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD, keys included."""
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value) is None:
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_whole_unicode(v) for v in value]
    if isinstance(value, dict):
        return {_whole_unicode(k): _whole_unicode(v) for k, v in value.items()}
    return value


def decode_json(content: bytes | bytearray) -> Any:
    """The decoded body, every string whole Unicode.

    Raises:
        Undecodable: Not UTF-8, not JSON, nested deeper than :data:`MAX_JSON_DEPTH`, or
            holding a number Python will not convert.
    """
    if nested_deeper_than(content, MAX_JSON_DEPTH):
        raise Undecodable(f"is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        data = json.loads(content)
    except UnicodeDecodeError:
        raise Undecodable("is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise Undecodable(f"is not JSON ({exc.msg}: {where})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise Undecodable("is nested too deep to decode") from None
    except ValueError as exc:
        # int() refuses a literal of more than sys.get_int_max_str_digits() digits.
        raise Undecodable(f"holds a number that cannot be converted ({exc})") from None
    if _SURROGATE_ESCAPE.search(content):
        data = _whole_unicode(data)
    return data
