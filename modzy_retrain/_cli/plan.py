"""A dry run's plan: what a build would write, counted sample by sample."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._dataset.human import rule_sources
from modzy_retrain._dataset.manifest import latest_version, load_manifest
from modzy_retrain._dataset.tables import ScratchTables
from modzy_retrain._dataset.versions import load_previous
from modzy_retrain._stages.records import Sample
from modzy_retrain._stages.report import RunReport


class Plan:
    """What a dry run would write, counted sample by sample; what is new is judged
    against the latest version, loaded into a scratch database as the writer would."""

    def __init__(self, url: str, storage_options: Mapping[str, Any]) -> None:
        self.samples = 0
        self.bytes = 0
        self.by_model: Counter[str] = Counter()
        self.model_names: dict[str, str] = {}
        self.by_state: Counter[str] = Counter()
        self._scratch = ScratchTables()
        try:
            self._scratch.complete_jobs()  # the merge's join needs the table; none here
            latest = latest_version(url, storage_options=storage_options)
            self._previous = latest is not None
            if latest is not None:
                fs, root = url_to_fs(url, storage_options)
                previous = load_manifest(url, storage_options=storage_options)
                load_previous(self._scratch, fs, root, previous)
        except BaseException:
            self._scratch.close()
            raise

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self._scratch.close()

    def add(self, sample: Sample) -> None:
        if sample.sha256 is not None:
            first = self._scratch.first_with(sample.sha256, sample.job_id, sample.input_name)
            if first is not None and (first[0], first[1]) != (sample.job_id, sample.input_name):
                return  # the writer would skip it as a duplicate of that content
        self.samples += 1
        self.bytes += sample.size or 0
        self.by_model[sample.record.model_id] += 1
        if sample.record.model_name:
            self.model_names.setdefault(sample.record.model_id, sample.record.model_name)
        self.by_state[sample.label_state] += 1
        self._scratch.add_sample(
            sample.job_id,
            sample.input_name,
            sample.label,
            sample.label_state,
            "+".join(rule_sources(sample.rule)),
        )

    def _new(self) -> int:
        """Samples added, or relabelled against the latest version (retractions are
        only known when a version is written)."""
        added = self._scratch.added()
        relabelled = sum(
            1
            for row, is_new, label, state, human, _ in self._scratch.merged()
            if is_new and _label_of(row) != (label, state, human)
        )
        return added + relabelled

    def summary(self, report: RunReport) -> dict[str, Any]:
        return {
            "jobs": report.stages["query"].items_out if "query" in report.stages else 0,
            "inputs": report.inputs_seen,
            "samples": self.samples,
            "new": self._new(),
            "by_model": dict(self.by_model),
            "model_names": dict(self.model_names),
            "by_label_state": dict(self.by_state),
            "excluded": report.drops_by_reason(),
            "estimated_bytes": self.bytes,
        }


def _label_of(row: str) -> tuple[Any, Any, str]:
    """What a relabelling changes (as ``versions.carry_over`` compares it)."""
    data = json.loads(row)
    human = "+".join(rule_sources(str(data.get("rule") or "")))
    return data.get("label"), data.get("label_state"), human
