"""modzy_retrain: turn Modzy production results and up/down votes into retraining data.

The public surface is what ``__all__`` lists (plus the ``modzy_retrain.sandbox``
subpackage). Every module whose name starts with an underscore is private and may
change without notice. Importing this package does no I/O and loads no optional extra.
"""

import contextlib as _contextlib

from ._base_client import InsecureBaseURLWarning
from ._client import AsyncModzyClient, ModzyClient
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    InternalServerError,
    InvalidQueryError,
    ModzyRetrainError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    ResultParseError,
    UnprocessableEntityError,
)
from ._models import (
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
from ._pagination import AsyncJobHistoryPager, JobHistoryPage, JobHistoryPager
from ._retry import RetryEvent, RetryPolicy
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncJobHistoryPager",
    "AsyncModzyClient",
    "AuthenticationError",
    "BadRequestError",
    "ClassPrediction",
    "ConfigurationError",
    "ConflictError",
    "InputFailure",
    "InputResult",
    "InsecureBaseURLWarning",
    "InternalServerError",
    "InvalidQueryError",
    "Job",
    "JobHistoryPage",
    "JobHistoryPager",
    "JobResults",
    "JobStatus",
    "JobUser",
    "ModelRef",
    "ModelSummary",
    "ModelVersion",
    "ModzyClient",
    "ModzyRetrainError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseValidationError",
    "ResultParseError",
    "RetryEvent",
    "RetryPolicy",
    "UnprocessableEntityError",
    "VoteValue",
    "Voting",
    "__version__",
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
