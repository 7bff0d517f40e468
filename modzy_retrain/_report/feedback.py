"""``feedback_report``: a dataset's manifests read, the report's numbers made."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.secrets import public_url
from modzy_retrain._dataset.manifest import latest_version, list_versions, load_manifest

from .figures import build_report
from .models import FeedbackReport, Period


def feedback_report(
    url: str,
    *,
    version: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    period: Period | None = None,
    confidence: float = 0.95,
) -> FeedbackReport:
    """The feedback report of a dataset: how users judged its models, from its manifests.

    Reads the manifest of every version up to ``version`` (nothing else: the tallies'
    totals and the confusions are in the manifests), so it is quick on any dataset.
    Needs no optional library; only drawing the charts (:meth:`FeedbackReport.to_html`,
    :meth:`FeedbackReport.write_html`) needs matplotlib, the ``report`` extra.

    Args:
        url: The dataset (a path or any fsspec URL), versioned or not.
        version: The version to report (default: the latest); the versions before it
            are shown too, the ones after are not.
        storage_options: fsspec options for ``url``.
        period: How the chart over time groups days: ``"day"``, ``"week"`` or
            ``"month"`` (default: by the span of the history, days up to a month,
            weeks up to half a year, else months).
        confidence: The confidence of the Wilson intervals (default 0.95).

    Raises:
        DatasetError: No dataset at ``url``, no such version, or an invalid manifest.
        ConfigurationError: An unknown ``period``, or a ``confidence`` outside (0, 1).
    """
    latest = latest_version(url, storage_options=storage_options)
    if latest is None:
        if version is not None:
            raise DatasetError(f"{public_url(url)} has no versions")
        manifests = [load_manifest(url, storage_options=storage_options)]
    else:
        wanted = load_manifest(url, version=version, storage_options=storage_options)
        names = list_versions(url, storage_options=storage_options)
        before = names[: names.index(str(wanted.version))]
        manifests = [
            *(load_manifest(url, version=v, storage_options=storage_options) for v in before),
            wanted,
        ]
    return build_report(public_url(url) or url, manifests, period=period, confidence=confidence)
