"""modzy_retrain: turn Modzy production results and up/down votes into retraining data.

The public surface is what ``__all__`` lists (plus the ``modzy_retrain.sandbox``
subpackage). Every module whose name starts with an underscore is private and may
change without notice. Importing this package does no I/O and loads no optional extra.
"""

import contextlib as _contextlib

from ._cli.build import BuildResult, BuildSettings, build, load_settings
from ._client.base import InsecureBaseURLWarning
from ._client.client import AsyncModzyClient, ModzyClient
from ._client.history import HistoryFilters
from ._client.models import (
    ClassPrediction,
    InputFailure,
    InputResult,
    Job,
    JobResults,
    JobStatus,
    JobUser,
    ModelRef,
    ModelSummary,
    ModelVersion,
    VoteValue,
    Voting,
)
from ._client.pagination import AsyncJobHistoryPager, JobHistoryPage, JobHistoryPager
from ._client.parsing import InvalidJob
from ._client.retry import RetryEvent, RetryPolicy
from ._core.exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    DatabaseError,
    DatasetError,
    DatasetExistsError,
    InternalServerError,
    InvalidQueryError,
    LabelNotInClassListError,
    LabelStudioAuthError,
    LabelStudioConnectionError,
    LabelStudioError,
    LabelStudioNotFoundError,
    LabelStudioResponseError,
    LabelStudioStatusError,
    LineageError,
    MissingDependencyError,
    ModzyRetrainError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
    ResultParseError,
    StorageError,
    TriggerError,
    TriggerRefusedError,
    TriggerUnavailableError,
    UnprocessableEntityError,
    UnsafeNameError,
)
from ._dataset.human import (
    Annotation,
    HumanLabel,
    LabelAggregation,
    Majority,
    TrustedAnnotator,
    Unanimous,
    Weighted,
)
from ._dataset.journal import ResultJournal
from ._dataset.lock import DatasetLockedError
from ._dataset.manifest import (
    Changes,
    Checkpoint,
    FileTable,
    JobTally,
    Manifest,
    ManifestFile,
    TallyTotal,
    VoteCounts,
    VoteTallies,
    latest_version,
    list_versions,
    load_checkpoint,
    load_manifest,
)
from ._dataset.quarantine import Quarantine, QuarantinedJob, load_quarantine
from ._dataset.reading import read_samples
from ._dataset.rows import PublishedSample
from ._dataset.tallies import job_tallies
from ._dataset.trigger import TriggerGate
from ._dataset.verify import dataset_files, verify_dataset
from ._labels.annotations import PullProblem
from ._labels.client import LabelStudioClient
from ._labels.models import (
    LabelStudioAnnotation,
    LabelStudioProject,
    LabelStudioTask,
    LabelStudioUser,
)
from ._labels.projects import S3StorageSettings
from ._labels.pull import PullResult, pull_from_label_studio
from ._labels.push import PushResult, push_to_label_studio
from ._labels.retry import LabelStudioRetry
from ._loaders.frames import to_pandas
from ._loaders.hf import load_hf_dataset
from ._loaders.pytorch import load_torch_dataset
from ._report.feedback import feedback_report
from ._report.models import (
    ClassShare,
    ConfusionMatrix,
    ConfusionPair,
    DownVoteShare,
    FeedbackReport,
    ModelFeedback,
    PeriodShare,
    VersionShare,
    VersionSummary,
)
from ._stages.base import (
    AsyncStageIterator,
    Chain,
    Many,
    Source,
    Stage,
    StageIterator,
    pipeline,
)
from ._stages.fetch import ResultFetcher
from ._stages.guard import MisconfigurationGuard
from ._stages.labels import LabelDecision, LabelPolicy, load_label_file
from ._stages.lineage import LineageResolver
from ._stages.query import JobHistoryQuery
from ._stages.records import LabelState, PredictionRecord, Sample
from ._stages.report import Drop, RunReport, StageStats
from ._stages.selectors import (
    SELECTORS,
    AllOf,
    AnyOf,
    AnyVotes,
    ConflictingVotes,
    DownShare,
    DownVoted,
    Everything,
    MinVotes,
    NetScore,
    Not,
    PredictedIn,
    Selector,
    TopScoreBelow,
    UpVoted,
    selector_by_name,
)
from ._stages.sql_database import DatabaseRetry
from ._stages.sql_lineage import SqlLineageResolver
from ._stages.votes import VoteFilter
from ._stages.write import DatasetWriter
from ._version import __version__

__all__ = [  # noqa: RUF022 - plain sorted(), which a test checks
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AllOf",
    "Annotation",
    "AnyOf",
    "AnyVotes",
    "AsyncJobHistoryPager",
    "AsyncModzyClient",
    "AsyncStageIterator",
    "AuthenticationError",
    "BadRequestError",
    "BuildResult",
    "BuildSettings",
    "Chain",
    "Changes",
    "Checkpoint",
    "ClassPrediction",
    "ClassShare",
    "ConfigurationError",
    "ConflictError",
    "ConflictingVotes",
    "ConfusionMatrix",
    "ConfusionPair",
    "DatabaseError",
    "DatabaseRetry",
    "DatasetError",
    "DatasetExistsError",
    "DatasetLockedError",
    "DatasetWriter",
    "DownShare",
    "DownVoteShare",
    "DownVoted",
    "Drop",
    "Everything",
    "FeedbackReport",
    "FileTable",
    "HistoryFilters",
    "HumanLabel",
    "InputFailure",
    "InputResult",
    "InsecureBaseURLWarning",
    "InternalServerError",
    "InvalidJob",
    "InvalidQueryError",
    "Job",
    "JobHistoryPage",
    "JobHistoryPager",
    "JobHistoryQuery",
    "JobResults",
    "JobStatus",
    "JobTally",
    "JobUser",
    "LabelAggregation",
    "LabelDecision",
    "LabelNotInClassListError",
    "LabelPolicy",
    "LabelState",
    "LabelStudioAnnotation",
    "LabelStudioAuthError",
    "LabelStudioClient",
    "LabelStudioConnectionError",
    "LabelStudioError",
    "LabelStudioNotFoundError",
    "LabelStudioProject",
    "LabelStudioResponseError",
    "LabelStudioRetry",
    "LabelStudioStatusError",
    "LabelStudioTask",
    "LabelStudioUser",
    "LineageError",
    "LineageResolver",
    "Majority",
    "Manifest",
    "ManifestFile",
    "Many",
    "MinVotes",
    "MisconfigurationGuard",
    "MissingDependencyError",
    "ModelFeedback",
    "ModelRef",
    "ModelSummary",
    "ModelVersion",
    "ModzyClient",
    "ModzyRetrainError",
    "NetScore",
    "Not",
    "NotFoundError",
    "PaginationError",
    "PeriodShare",
    "PermissionDeniedError",
    "PredictedIn",
    "PredictionRecord",
    "PublishedSample",
    "PullProblem",
    "PullResult",
    "PushResult",
    "Quarantine",
    "QuarantinedJob",
    "RateLimitError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "ResultFetcher",
    "ResultJournal",
    "ResultParseError",
    "RetryEvent",
    "RetryPolicy",
    "RunReport",
    "S3StorageSettings",
    "SELECTORS",
    "Sample",
    "Selector",
    "Source",
    "SqlLineageResolver",
    "Stage",
    "StageIterator",
    "StageStats",
    "StorageError",
    "TallyTotal",
    "TopScoreBelow",
    "TriggerError",
    "TriggerGate",
    "TriggerRefusedError",
    "TriggerUnavailableError",
    "TrustedAnnotator",
    "Unanimous",
    "UnprocessableEntityError",
    "UnsafeNameError",
    "UpVoted",
    "VersionShare",
    "VersionSummary",
    "VoteCounts",
    "VoteFilter",
    "VoteTallies",
    "VoteValue",
    "Voting",
    "Weighted",
    "__version__",
    "build",
    "dataset_files",
    "feedback_report",
    "job_tallies",
    "latest_version",
    "list_versions",
    "load_checkpoint",
    "load_hf_dataset",
    "load_label_file",
    "load_manifest",
    "load_quarantine",
    "load_settings",
    "load_torch_dataset",
    "pipeline",
    "pull_from_label_studio",
    "push_to_label_studio",
    "read_samples",
    "selector_by_name",
    "to_pandas",
    "verify_dataset",
]

# Tracebacks and reprs show the public path (modzy_retrain.RateLimitError), not the
# private module a class happens to live in.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("modzy_retrain._"):
        with _contextlib.suppress(AttributeError, TypeError):  # e.g. type aliases
            _obj.__module__ = __name__
del _name, _obj

import logging as _logging  # noqa: E402

# A library installs no handlers; NullHandler keeps "no handler" warnings away.
_logging.getLogger("modzy_retrain").addHandler(_logging.NullHandler())
