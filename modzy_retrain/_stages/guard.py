"""The misconfiguration guard: a run whose inputs all fail the same way publishes nothing.

One wrong character in an input template (``.jpg`` for ``.png``) makes every selected
input of a model ``source_missing``. Published, such a run would hold nothing of that
model and move the checkpoint past its jobs, so fixing the template later would never
bring those samples back. The guard looks, per model, at the inputs that reached the
lineage stage: when every one of them failed for the same configuration-like reason,
or more than a set share did, the writer publishes nothing and the cursor stays where
it was. Isolated failures are dropped with their reason, as always.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from modzy_retrain._core.exceptions import ConfigurationError

from .report import (
    AMBIGUOUS_SOURCE,
    NAME_MISMATCH,
    NO_TEMPLATE,
    SOURCE_MISSING,
    SOURCE_TOO_LARGE,
    SOURCE_UNREADABLE,
    RunReport,
)

DEFAULT_MAX_FAILURE_SHARE = 0.5

# Reasons a setting causes (a template, a pattern, a size limit, storage options), and
# the hint each gives. Hostile names (unsafe_name) and copy failures are the data's.
HINTS: dict[str, str] = {
    NO_TEMPLATE: "no input template or query for this model: add one (MODEL_ID=TEMPLATE)",
    SOURCE_MISSING: "check the input template or query (extension, folder, field names)",
    NAME_MISMATCH: "check the name pattern",
    SOURCE_UNREADABLE: "check the storage options and permissions",
    SOURCE_TOO_LARGE: "check max_input_bytes",
    AMBIGUOUS_SOURCE: "check the input query: its key matches several rows",
}
_WHAT = {
    NO_TEMPLATE: "have no input template",
    SOURCE_MISSING: "missing",
    NAME_MISMATCH: "do not match the name pattern",
    SOURCE_UNREADABLE: "unreadable",
    SOURCE_TOO_LARGE: "over the size limit",
    AMBIGUOUS_SOURCE: "match several rows",
}


@dataclass(frozen=True)
class Suspicion:
    """One model whose inputs failed in a way that points at the configuration."""

    model_id: str
    reason: str
    failed: int
    attempted: int
    example: str = ""

    @property
    def message(self) -> str:
        where = f" (e.g. {self.example})" if self.example else ""
        return (
            f"{self.failed} of {self.attempted} inputs of model {self.model_id} "
            f"{_WHAT[self.reason]}{where}: {HINTS[self.reason]}"
        )


class MisconfigurationGuard:
    """Decides, before a version is published, whether the run looks misconfigured.

    Args:
        max_failure_share: A model is suspect when more than this share of its inputs
            that reached lineage failed for one configuration-like reason (no template,
            source missing, name mismatch, unreadable, too large). When every one of
            them failed that way it is suspect whatever the share. ``1.0``: only then.
        stage: The name of the lineage stage in the report (``resolve``).
    """

    def __init__(
        self, max_failure_share: float = DEFAULT_MAX_FAILURE_SHARE, *, stage: str = "resolve"
    ) -> None:
        if (
            isinstance(max_failure_share, bool)
            or not isinstance(max_failure_share, (int, float))
            or not 0.0 < max_failure_share <= 1.0
        ):
            raise ConfigurationError(
                f"max_failure_share takes a share above 0 and at most 1, not {max_failure_share!r}"
            )
        self.max_failure_share = float(max_failure_share)
        self.stage = stage

    def check(self, report: RunReport, delivered: Mapping[str, int]) -> list[Suspicion]:
        """The suspect models of a run, worst first.

        Args:
            report: The run's report (its per-model drop counts).
            delivered: Per model, the samples the lineage stage passed on.
        """
        failed: dict[str, Counter[str]] = {}
        for (stage, reason, model), n in report.drop_counts_by_model.items():
            if stage == self.stage:
                failed.setdefault(model, Counter())[reason] += n
        found = []
        for model, reasons in failed.items():
            attempted = delivered.get(model, 0) + sum(reasons.values())
            for reason, n in reasons.items():
                if reason not in HINTS:
                    continue
                if n == attempted or n / attempted > self.max_failure_share:
                    found.append(
                        Suspicion(model, reason, n, attempted, _example(report, model, reason))
                    )
        return sorted(found, key=lambda s: (-s.failed / s.attempted, s.model_id))

    def __repr__(self) -> str:
        return f"MisconfigurationGuard(max_failure_share={self.max_failure_share})"


def _example(report: RunReport, model: str, reason: str) -> str:
    for drop in report.drops:
        if drop.model_id == model and drop.reason == reason and drop.detail:
            return drop.detail
    return ""
