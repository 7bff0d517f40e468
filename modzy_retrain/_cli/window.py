"""A build's window against the dataset's checkpoint: what to note, what to refuse.

Pure: the settings and the checkpoint in, notes (or a ConfigurationError) out.
"""

from __future__ import annotations

from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._dataset.manifest import Checkpoint

from .settings import BuildSettings


def window_published(s: BuildSettings, since: Checkpoint | None) -> str | None:
    """A note when ``end`` is before where the checkpoint has the next run start."""
    if s.end is None or s.rebuild_from is not None or since is None or since.cursor is None:
        return None
    if s.end >= since.cursor - s.lag:
        return None
    return (
        f"end = {s.end.isoformat()} is before the checkpoint (cursor "
        f"{since.cursor.isoformat()}, version {since.version}): every job up to end "
        "is published already"
    )


def window_notes(s: BuildSettings, since: Checkpoint | None) -> list[str]:
    """Check ``start`` and ``rebuild_from`` against the checkpoint; notes to show."""
    if since is None or since.cursor is None:
        return []
    if s.rebuild_from is not None:
        return [
            f"rebuilding from {s.rebuild_from.isoformat()}: the history is read again "
            f"from there (the checkpoint was at {since.cursor.isoformat()})"
        ]
    if s.start is not None and s._start_from_flag:
        raise ConfigurationError(
            f"the dataset has a checkpoint (cursor {since.cursor.isoformat()}): --start "
            "only sets the first build's window. To read the history again from a "
            "time into a new version, use --rebuild-from TIMESTAMP"
        )
    if s.start is not None and s.start < since.cursor - s.lag:
        return [
            f"start = {s.start.isoformat()} applies to the first build; reading from "
            f"the checkpoint at {since.cursor.isoformat()} (use --rebuild-from to read "
            "again from an earlier time)"
        ]
    return []
