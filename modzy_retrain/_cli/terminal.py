"""What the commands print, made safe for a terminal.

Every line a command prints goes through :func:`say`: a job id, a model name, a label
or a service's answer may hold characters a terminal acts on (an ``ESC`` sequence, a
carriage return, a bidi override), shown as escapes instead (``_core/printable.py``).
"""

from __future__ import annotations

from typing import Any

from modzy_retrain._core.printable import printable


def say(text: object = "", *, file: Any = None, flush: bool = False, block: bool = False) -> None:
    """Print one line, its control characters (a newline too) escaped.

    Args:
        block: ``text`` is several lines the command composed (a report, a firing):
            its newlines are kept, and the values in it were escaped where they went in.
    """
    print(printable(text, keep_newlines=block), file=file, flush=flush)
