"""``push_to_label_studio``: the samples of a published version that need a human,
as Label Studio tasks, once each.

One project per model (its input kind and class list decide the labelling
configuration). Idempotent: a sample already in the dataset's ledger
(``_labels/label-studio.jsonl``) or among the project's tasks (its ``data.job_id`` and
``data.input_name``) is counted as already present and never imported again, so a
rerun, or the push of a later version, adds only what is new. Tasks are imported in
chunks (one request per ``chunk_size`` tasks) and the ledger is rewritten after each.

A project whose images are served from where the dataset lives gets the storage Label
Studio serves them through, once: a local-files storage on the dataset's folder, or,
given ``s3_storage``, an S3 source storage on the dataset's folder in its bucket.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modzy_retrain._core.exceptions import ConfigurationError, LabelStudioError
from modzy_retrain._core.fs import join
from modzy_retrain._core.secrets import public_url
from modzy_retrain._dataset.inputs import InputKind
from modzy_retrain._dataset.lock import DatasetLock
from modzy_retrain._dataset.manifest import load_manifest
from modzy_retrain._dataset.reading import read_samples
from modzy_retrain._dataset.rows import LABEL_STATES, PublishedSample

from .client import IMPORT_CHUNK, MAX_CHUNK, LabelStudioClient
from .inputs import InputResolver, is_s3
from .ledger import LEDGER_DIR, Ledger, LedgerEntry, entry
from .models import LabelStudioProject
from .projects import (
    S3StorageSettings,
    config_choices,
    create_local_storage,
    create_s3_storage,
    local_storage_paths,
    s3_storages,
    storage_covers,
    update_label_config,
)
from .tasks import (
    CONTROL,
    SKIP_KIND_MISMATCH,
    SKIP_NO_CLASSES,
    SKIP_UNKNOWN_KIND,
    TITLE_MAX,
    TITLE_MIN,
    build_task,
    default_title,
    input_kind,
    label_config,
    task_key,
)

DEFAULT_STATES = ("needs_label", "conflict")
LOCAL_FILES_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
Select = Iterable[str] | Callable[[PublishedSample], bool] | None
ProjectRef = str | int
logger = logging.getLogger("modzy_retrain")


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    Attributes:
        projects: The project of each model pushed, by model id.
        created_projects: Ids of the projects this push created.
        created: Tasks imported by this push (``task_ids`` holds their ids).
        already_present: Selected samples that already had a task in their project
            (from the ledger, or found among the project's tasks: ``recovered``).
        recovered: Of those, tasks found in the project but missing from the ledger
            (a push that stopped between an import and its ledger write); now recorded.
        skipped: Selected samples that did not become tasks, by reason.
        skipped_samples: ``(job_id, input_name, reason)`` of each.
        import_requests: Import requests sent (one per chunk).
    """

    dataset: str
    version: str | None
    selected: int = 0
    projects: Mapping[str, LabelStudioProject] = field(default_factory=dict)
    created_projects: tuple[int, ...] = ()
    created: int = 0
    already_present: int = 0
    recovered: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    skipped_samples: tuple[tuple[str, str, str], ...] = ()
    task_ids: tuple[int, ...] = ()
    import_requests: int = 0


def _selector(select: Select) -> Callable[[PublishedSample], bool]:
    if select is None:
        select = DEFAULT_STATES
    if callable(select):
        return select
    if isinstance(select, str) or not isinstance(select, Iterable):
        raise ConfigurationError(
            "push: select must be label states (a list of names) or a callable on PublishedSample"
        )
    states = set(select)
    unknown = sorted(repr(s) for s in states if s not in LABEL_STATES)
    if unknown or not states:
        raise ConfigurationError(
            f"push: select names label states among {', '.join(LABEL_STATES)} (got {unknown})"
        )
    return lambda sample: sample.label_state in states


def _check_ref(ref: object) -> ProjectRef:
    if isinstance(ref, int) and not isinstance(ref, bool) and ref > 0:
        return ref
    if isinstance(ref, str) and TITLE_MIN <= len(ref) <= TITLE_MAX:
        return ref
    raise ConfigurationError(
        f"push: a project is an id (a positive int) or a title of {TITLE_MIN} to "
        f"{TITLE_MAX} characters"
    )


def _projects(project: object) -> ProjectRef | dict[str, ProjectRef] | None:
    if project is None:
        return None
    if isinstance(project, Mapping):
        if not all(isinstance(k, str) and k for k in project):
            raise ConfigurationError("push: project's keys are model ids")
        return {k: _check_ref(v) for k, v in project.items()}
    return _check_ref(project)


def _positive(name: str, value: object, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
        raise ConfigurationError(f"push: {name} must be an int in 1..{limit}")
    return value


def _model_kind(samples: list[PublishedSample]) -> InputKind | None:
    kinds = Counter(k for k in map(input_kind, samples) if k is not None)
    # The kind most of the model's inputs have; the others are skipped, named.
    return kinds.most_common(1)[0][0] if kinds else None


class _Push:
    """One push: the state its steps share."""

    def __init__(
        self,
        ls: LabelStudioClient,
        dataset_url: str,
        version: str | None,
        resolver: InputResolver,
        chunk_size: int,
        s3_storage: S3StorageSettings | None = None,
    ) -> None:
        self.ls = ls
        self.dataset = public_url(dataset_url) or dataset_url
        self.version = version
        self.resolver = resolver
        self.chunk_size = chunk_size
        self.s3_storage = s3_storage
        self.progress: Callable[[str, int], None] | None = None
        self.ledger = Ledger(resolver.fs, resolver.root)
        self.projects: dict[str, LabelStudioProject] = {}
        self.created_projects: list[int] = []
        self.task_ids: list[int] = []
        self.already = self.recovered = self.requests = 0
        self.skipped: list[tuple[str, str, str]] = []

    def skip(self, sample: PublishedSample, reason: str) -> None:
        self.skipped.append((sample.job_id, sample.input_name, reason))

    def project(
        self, ref: ProjectRef | None, model_id: str, kind: InputKind, classes: list[str]
    ) -> LabelStudioProject:
        config = label_config(kind, classes)
        if isinstance(ref, int):
            found = self.ls.find_project(ref)
            if found is None:
                raise LabelStudioError(f"no Label Studio project with id {ref}")
        else:
            title = ref if ref is not None else default_title(self.dataset, model_id)
            found = self.ls.find_project(title)
            if found is None:
                created = self.ls.create_project(
                    title, config, description=f"modzy-retrain: {self.dataset} ({model_id})"
                )
                self.created_projects.append(created.id)
                return created
        return self._fit_config(found, kind, classes, config)

    def _fit_config(
        self, project: LabelStudioProject, kind: InputKind, classes: list[str], config: str
    ) -> LabelStudioProject:
        found = config_choices(project.label_config, CONTROL)
        if found is None or found[1] != kind:
            raise LabelStudioError(
                f"project {project.id} ({project.title!r}) has no Choices control named "
                f"{CONTROL!r} on {kind!r}: name another project, or let the push create one"
            )
        missing = [c for c in classes if c not in found[2]]
        if not missing:
            return project
        if any(c not in classes for c in found[2]):
            raise LabelStudioError(
                f"project {project.id} ({project.title!r}) lacks the classes {missing} and "
                "offers others: add them to its labelling configuration"
            )
        # The class list only grows: the project's choices, then the new ones, in order.
        return update_label_config(self.ls, project.id, config)

    def ensure_local_storage(self, project_id: int) -> None:
        folder = self.resolver.local_folder
        assert folder is not None  # only called for samples served as local files
        # Compared as text only: nothing Label Studio answers is used as a path here.
        for path in local_storage_paths(self.ls, project_id):
            base = path.rstrip("/")
            if folder == base or folder.startswith(base + "/"):
                return
        create_local_storage(self.ls, project_id, folder, title="modzy-retrain dataset")

    def ensure_s3_storage(self, project_id: int) -> None:
        settings, where = self.s3_storage, self.resolver.s3_folder
        # Only called for the dataset's own s3:// copies, with s3_storage given.
        assert settings is not None
        assert where is not None
        bucket, prefix = where
        found = s3_storages(self.ls, project_id)
        if any(storage_covers(s, bucket, prefix) for s in found):
            return
        others = [s.id for s in found if s.bucket == bucket]
        if others:
            # Label Studio resolves s3:// URLs with the first storage on their bucket.
            logger.warning(
                "Label Studio project %d has S3 storages %s on bucket %r whose prefix does "
                "not hold %r: it presigns the images with the first of them",
                project_id,
                others,
                bucket,
                prefix,
            )
        create_s3_storage(self.ls, project_id, bucket=bucket, prefix=prefix, settings=settings)

    def push_model(
        self,
        model_id: str,
        samples: list[PublishedSample],
        ref: ProjectRef | None,
        classes: list[str],
    ) -> None:
        kind = _model_kind(samples)
        if not classes or kind is None:
            for sample in samples:
                self.skip(sample, SKIP_NO_CLASSES if not classes else SKIP_UNKNOWN_KIND)
            return
        project = self.project(ref, model_id, kind, classes)
        self.projects[model_id] = project
        done = self.ledger.keys(self.ls.url, project.id)
        present: dict[tuple[str, str], int] = {}
        for task in self.ls.tasks(project.id):
            key = task_key(task.data)
            if key is not None:
                present.setdefault(key, task.id)
        wanted = {s.key for s in samples}
        lost = [k for k in present if k not in done and k in wanted]
        self.ledger.append(
            entry(self.ls.url, project.id, present[k], k, model_id, self.version) for k in lost
        )
        self.recovered += len(lost)
        local_checked = s3_checked = False
        chunk: list[tuple[PublishedSample, dict[str, Any]]] = []
        for sample in samples:
            if sample.key in done or sample.key in present:
                self.already += 1
                continue
            own = input_kind(sample)
            if own != kind:
                self.skip(sample, SKIP_UNKNOWN_KIND if own is None else SKIP_KIND_MISMATCH)
                continue
            if kind == "image":
                value, reason, local = self.resolver.image(sample)
                if local and not local_checked:
                    self.ensure_local_storage(project.id)
                    local_checked = True
                served_from_s3 = value is not None and self.resolver.in_s3_folder(value)
                if self.s3_storage is not None and served_from_s3 and not s3_checked:
                    self.ensure_s3_storage(project.id)
                    s3_checked = True
            else:
                value, reason = self.resolver.text(sample)
            if value is None:
                self.skip(sample, reason or SKIP_UNKNOWN_KIND)
                continue
            built = build_task(sample, kind, value, dataset=self.dataset, version=self.version)
            chunk.append((sample, built))
            if len(chunk) >= self.chunk_size:
                self.flush(project.id, model_id, chunk)
                chunk = []
        self.flush(project.id, model_id, chunk)

    def flush(
        self, project_id: int, model_id: str, chunk: list[tuple[PublishedSample, dict[str, Any]]]
    ) -> None:
        if not chunk:
            return
        ids = self.ls.import_tasks(project_id, [t for _, t in chunk], chunk_size=len(chunk))
        self.requests += 1
        self.task_ids += ids
        entries: list[LedgerEntry] = [
            entry(self.ls.url, project_id, tid, s.key, model_id, self.version)
            for (s, _), tid in zip(chunk, ids, strict=True)
        ]
        self.ledger.append(entries)
        if self.progress is not None:
            self.progress("tasks created", len(self.task_ids))


def push_to_label_studio(
    dataset_url: str,
    *,
    client: LabelStudioClient | None = None,
    url: str | None = None,
    api_key: str | None = None,
    version: str | None = None,
    select: Select = None,
    project: ProjectRef | Mapping[str, ProjectRef] | None = None,
    local_files_root: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    chunk_size: int = IMPORT_CHUNK,
    s3_storage: S3StorageSettings | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> PushResult:
    """Make Label Studio tasks of the samples of a published version that need a human.

    Args:
        dataset_url: The dataset (any fsspec URL).
        client: A :class:`LabelStudioClient` to push through (else one is made from
            ``url`` and ``api_key``, or ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``).
        version: The version to push (default: the latest).
        select: Label states by name (default ``needs_label`` and ``conflict``), or a
            callable deciding on each :class:`PublishedSample`.
        project: The project, by title or id; with several models, a mapping from
            model id to project (a model left out gets ``<dataset> - <model id>``).
        local_files_root: The server's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``
            (default: that variable), so a local dataset under it is served to annotators.
        storage_options: fsspec options for the dataset.
        chunk_size: Tasks per import request.
        s3_storage: For a dataset in S3: how Label Studio reaches its bucket
            (:class:`S3StorageSettings`). Each project whose images are the dataset's
            ``s3://`` copies then gets an S3 source storage on the dataset's folder,
            unless one of its S3 storages already holds that folder; without it, connect
            one yourself.
        progress: Called after each import request with ``("tasks created", count)``.

    Raises:
        ConfigurationError: An invalid argument (before any request).
        DatasetError: No such dataset or version, or a damaged ledger.
        DatasetLockedError: Another push of the dataset is running.
        LabelStudioError: Label Studio refused or failed.
    """
    if not isinstance(dataset_url, str) or not dataset_url:
        raise ConfigurationError("push: dataset_url must be a non-empty URL")
    if client is not None and (url is not None or api_key is not None):
        raise ConfigurationError("push: pass a client, or url and api_key, not both")
    if client is not None and not isinstance(client, LabelStudioClient):
        raise ConfigurationError("push: client must be a LabelStudioClient")
    pick = _selector(select)
    wanted = _projects(project)
    _positive("chunk_size", chunk_size, MAX_CHUNK)
    if local_files_root is None:
        local_files_root = os.environ.get(LOCAL_FILES_ROOT_ENV) or None
    if local_files_root is not None and not os.path.isabs(local_files_root):
        raise ConfigurationError("push: local_files_root must be an absolute path")
    if s3_storage is not None and not isinstance(s3_storage, S3StorageSettings):
        raise ConfigurationError("push: s3_storage must be an S3StorageSettings")
    if s3_storage is not None and not is_s3(dataset_url):
        raise ConfigurationError(
            "push: s3_storage serves a dataset in an S3 bucket (s3://...); this one is not"
        )

    manifest = load_manifest(dataset_url, version=version, storage_options=storage_options)
    by_model: dict[str, list[PublishedSample]] = {}
    for sample in read_samples(
        dataset_url, version=manifest.version, storage_options=storage_options
    ):
        if pick(sample):
            by_model.setdefault(sample.model_id, []).append(sample)
    if isinstance(wanted, dict):
        unknown = sorted(set(wanted) - set(manifest.classes) - set(by_model))
        if unknown:
            raise ConfigurationError(f"push: project names models the dataset lacks: {unknown}")
    elif wanted is not None and len(by_model) > 1:
        raise ConfigurationError(
            f"push: the selected samples come from {len(by_model)} models "
            f"({', '.join(sorted(by_model))}); name a project per model (MODEL_ID=PROJECT)"
        )
    resolver = InputResolver(dataset_url, storage_options, local_files_root)
    # One push of a dataset at a time: two would both find a sample absent and import
    # it twice. The ledger's own lock, so a push never waits for a build (or a pull).
    run_id = f"label-push-{uuid.uuid4().hex[:12]}"
    lock = DatasetLock(resolver.fs, join(resolver.root, LEDGER_DIR), run_id, purpose="label push")
    ls = client or LabelStudioClient(url, api_key)
    try:
        lock.acquire()
        run = _Push(ls, dataset_url, manifest.version, resolver, chunk_size, s3_storage)
        run.progress = progress
        for model_id in sorted(by_model):
            ref = wanted.get(model_id) if isinstance(wanted, dict) else wanted
            classes = list(manifest.classes.get(model_id, []))
            run.push_model(model_id, by_model[model_id], ref, classes)
    finally:
        lock.release()
        if client is None:
            ls.close()
    return PushResult(
        dataset=run.dataset,
        version=manifest.version,
        selected=sum(len(s) for s in by_model.values()),
        projects=dict(run.projects),
        created_projects=tuple(run.created_projects),
        created=len(run.task_ids),
        already_present=run.already,
        recovered=run.recovered,
        skipped=dict(Counter(reason for _, _, reason in run.skipped)),
        skipped_samples=tuple(run.skipped),
        task_ids=tuple(run.task_ids),
        import_requests=run.requests,
    )
