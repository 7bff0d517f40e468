"""What a pushed sample becomes in Label Studio: pure decisions, no I/O.

The input kind (image or text) comes from the raw input's file extension; the
labelling configuration from the kind and the model's class list (in the manifest's
order, so a class keeps its place for annotators as it does for training); a task from
a sample, with the model's prediction as a pre-annotation and the sample's provenance
in ``data`` (where Label Studio's Data Manager shows and filters it).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import escape

from modzy_retrain._dataset.inputs import InputKind, kind_of
from modzy_retrain._dataset.rows import PublishedSample
from modzy_retrain._version import __version__

# The control every generated configuration names: predictions and the pull use it.
CONTROL = "label"
TITLE_MIN, TITLE_MAX = 3, 50

# Why a selected sample did not become a task (PushResult.skipped counts them).
SKIP_UNKNOWN_KIND = "unknown_input_kind"
SKIP_KIND_MISMATCH = "input_kind_differs_from_model"
SKIP_NO_URL = "no_url_label_studio_can_serve"
SKIP_INPUT_MISSING = "input_missing"
SKIP_NOT_UTF8 = "text_not_utf8"
SKIP_TEXT_TOO_LARGE = "text_too_large"
SKIP_NO_CLASSES = "model_has_no_class_list"


def input_kind(sample: PublishedSample) -> InputKind | None:
    """``image`` or ``text`` from the raw input's extension (the copy's, else the
    source's); ``None`` when neither says."""
    return kind_of(sample.file, sample.source_url)


def label_config(kind: InputKind, classes: Sequence[str]) -> str:
    """A single-choice configuration offering ``classes`` in their order."""
    shown = (
        '<Image name="image" value="$image"/>'
        if kind == "image"
        else '<Text name="text" value="$text"/>'
    )
    # Always double-quoted (quoteattr would switch to single quotes), so that
    # config_choices reads back what it wrote.
    choices = "".join(f'<Choice value="{escape(c, {chr(34): "&quot;"})}"/>' for c in classes)
    return (
        f'<View>{shown}<Choices name="{CONTROL}" toName="{kind}" choice="single" '
        f'showInline="true">{choices}</Choices></View>'
    )


def default_title(dataset_url: str, model_id: str) -> str:
    """``<dataset folder> - <model id>``, cut to Label Studio's 50 characters.

    When the folder's name is too long it is cut and a short hash of the whole URL
    keeps two long names apart.
    """
    parts = urlsplit(dataset_url)
    path = (parts.path if parts.scheme else dataset_url).rstrip("/")
    name = posixpath.basename(path) or parts.netloc or "dataset"
    title = f"{name} - {model_id}"
    if len(title) <= TITLE_MAX:
        return title
    tag = hashlib.sha256(dataset_url.encode()).hexdigest()[:6]
    room = TITLE_MAX - len(f"~{tag} - {model_id}")
    if room < 1:
        return f"{name[:8]}~{tag} - {model_id}"[:TITLE_MAX]
    return f"{name[:room]}~{tag} - {model_id}"


def local_files_url(relative: str) -> str:
    """The URL Label Studio serves a file under its local-files document root at."""
    return "/data/local-files/?d=" + quote(relative, safe="/")


def build_task(
    sample: PublishedSample,
    kind: InputKind,
    value: str,
    *,
    dataset: str,
    version: str | None,
) -> dict[str, Any]:
    """One task: the input (``value``: a URL for an image, the text for a text), the
    provenance, candidates and votes in ``data``; the model's top class as a
    pre-annotation; every scored class in ``meta``."""
    data: dict[str, Any] = {
        kind: value,
        "job_id": sample.job_id,
        "input_name": sample.input_name,
        "model_id": sample.model_id,
        "model_version": sample.model_version,
        "model_name": sample.model_name,
        "dataset": dataset,
        "dataset_version": version,
        "label_state": sample.label_state,
        "candidates": list(sample.candidates),
        "votes_up": sample.votes_up,
        "votes_down": sample.votes_down,
        "predicted_label": sample.predicted_label,
        "predicted_score": sample.predicted_score,
        "source_url": sample.source_url,
    }
    meta: dict[str, Any] = {
        "pushed_by": f"modzy-retrain {__version__}",
        "sha256": sample.sha256,
        "predictions": [{"label": p.label, "score": p.score} for p in sample.predictions],
    }
    task: dict[str, Any] = {"data": data, "meta": meta}
    if sample.predicted_label is not None:
        prediction: dict[str, Any] = {
            "model_version": sample.model_version,
            "result": [
                {
                    "from_name": CONTROL,
                    "to_name": kind,
                    "type": "choices",
                    "value": {"choices": [sample.predicted_label]},
                }
            ],
        }
        if sample.predicted_score is not None:
            prediction["score"] = sample.predicted_score
        task["predictions"] = [prediction]
    return task


def task_key(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(job_id, input_name)`` of a task's data, when it has both as text."""
    job_id, input_name = data.get("job_id"), data.get("input_name")
    if isinstance(job_id, str) and isinstance(input_name, str):
        return (job_id, input_name)
    return None
