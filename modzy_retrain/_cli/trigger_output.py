"""How a trigger's firing is shown: one line a firing, one more per failed action."""

from __future__ import annotations

from typing import Any

from modzy_retrain._triggers.fire import Firing


def firing_line(title: str, firing: Firing) -> str:
    """``trigger for v0003: fired, ok (command exit code 0, github:...: 204)``, then
    each failed action's message (what to fix) on a line of its own."""
    state = "ok" if firing.ok else "FAILED"
    done = [o.text() for o in firing.outcomes if o.ok]
    line = f"{title} for {firing.version}: fired, {state}"
    if done:
        line += f" ({', '.join(done)})"
    failed = [f"  - {o.action}: {o.detail}" for o in firing.outcomes if not o.ok]
    return "\n".join([line, *failed])


def firing_report(firing: Firing) -> dict[str, Any]:
    """The firing in the run report's JSON (``trigger``)."""
    return {
        "version": firing.version,
        "fired": firing.fired,
        "ok": firing.ok,
        "actions": [
            {
                "id": o.action_id,
                "action": o.action,
                "ok": o.ok,
                "detail": o.detail,
                "already": o.already,
            }
            for o in firing.outcomes
        ],
    }
