"""Text from outside (the API, a dataset, a service) made safe to print on a terminal.

A job id, a model name or a label may hold characters a terminal acts on instead of
showing: ``ESC`` sequences (clear the screen, set the title, move the cursor), the
8-bit ``CSI`` (U+009B), a bell, a backspace or a carriage return that overwrites what
was printed, bidi overrides that reorder it (U+202E), a newline that forges a line.
:func:`printable` shows each as an escape (``\\x1b``, ``\\u202e``, ``\\n``), and leaves
every other character as it is (accents, CJK, emoji, a tab).
"""

from __future__ import annotations

import re

# C0 controls but the tab, DEL, C1 controls; the bidi embeddings, overrides, isolates
# and marks; the line and paragraph separators some terminals break lines on.
_UNSAFE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
_UNSAFE_BUT_NEWLINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, *, keep_newlines: bool = False) -> str:
    """``value`` as text a terminal shows as it is: control characters escaped.

    Args:
        keep_newlines: Keep ``\\n`` (a block of lines the program composed); by
            default a newline is escaped too, so a value cannot forge a line.
    """
    text = str(value)
    pattern = _UNSAFE_BUT_NEWLINES if keep_newlines else _UNSAFE
    return pattern.sub(_escape, text)
