"""The client's resource groups: ``client.jobs``, ``client.results``, ``client.models``.

Each method validates its arguments, describes its call (``_calls``) and hands it to
the client. The sync and async classes are one-liners over the same descriptions.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modzy_retrain._core.constants import DEFAULT_MAX_HISTORY_PAGES

from . import calls
from .history import HistoryFilters, build_history_params
from .models import InputResult, Job, JobResults, ModelSummary, ModelVersion, VoteValue
from .pagination import AsyncJobHistoryPager, JobHistoryPager, check_max_pages

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .client import AsyncModzyClient, ModzyClient

StrOrSeq = str | Sequence[str]

_HISTORY_DOC = """Query the job history; returns a lazy pager over every matching job.

        Nothing is sent until you iterate. The query is validated now, so a bad one
        (an unknown filter too) raises :class:`InvalidQueryError` before any request.

        Args:
            **filters: The history filters, :class:`HistoryFilters` (``start``, ``end``,
                ``model``, ``model_id``, ``model_version``, ``user``, ``access_key``,
                ``status``, ``sort_by``, ``direction``, ``page_size``). A list of values
                for a filter means "any of them". The API's defaults apply to those not
                given: every status, sorted by ``createdAt``, ascending, 100 a page.
            strict: Raise :class:`ResponseValidationError` on the first history item
                that is not a job (default). With ``False`` such items are set aside
                in ``page.invalid`` with their reason, and iterating yields the rest.
            max_pages: Pages one walk reads at most (10,000 by default; ``None``: no
                cap). A walk still full at that page, or that meets a full page it has
                seen before (a server that ignores paging), raises
                :class:`PaginationError`.
"""


class Jobs:
    """``client.jobs``: the job history and job details."""

    def __init__(self, client: ModzyClient) -> None:
        self._client = client

    def history(
        self,
        *,
        strict: bool = True,
        max_pages: int | None = DEFAULT_MAX_HISTORY_PAGES,
        **filters: Unpack[HistoryFilters],
    ) -> JobHistoryPager:
        params = build_history_params(**filters)
        client = self._client
        return JobHistoryPager(
            params,
            lambda page: client.call(calls.history_page(params, page, strict=strict)),
            check_max_pages(max_pages),
        )

    history.__doc__ = _HISTORY_DOC

    def retrieve(self, job_id: str) -> Job:
        """Get one job's details (``GET /jobs/{job_id}``)."""
        return self._client.call(calls.job_details(job_id))


class AsyncJobs:
    """``client.jobs`` on the async client."""

    def __init__(self, client: AsyncModzyClient) -> None:
        self._client = client

    def history(
        self,
        *,
        strict: bool = True,
        max_pages: int | None = DEFAULT_MAX_HISTORY_PAGES,
        **filters: Unpack[HistoryFilters],
    ) -> AsyncJobHistoryPager:
        params = build_history_params(**filters)
        client = self._client
        return AsyncJobHistoryPager(
            params,
            lambda page: client.call(calls.history_page(params, page, strict=strict)),
            check_max_pages(max_pages),
        )

    history.__doc__ = _HISTORY_DOC

    async def retrieve(self, job_id: str) -> Job:
        """Get one job's details (``GET /jobs/{job_id}``)."""
        return await self._client.call(calls.job_details(job_id))


class Results:
    """``client.results``: results, single-input results, output files and votes."""

    def __init__(self, client: ModzyClient) -> None:
        self._client = client

    def retrieve(self, job_id: str, *, strict: bool = True) -> JobResults:
        """Get every input's result for a job (``GET /results/{job_id}``).

        With ``strict=False``, an input whose result cannot be parsed is set aside in
        ``JobResults.invalid`` instead of raising :class:`ResultParseError` for the job.
        """
        return self._client.call(calls.job_results(job_id, strict=strict))

    def retrieve_input(self, job_id: str, input_name: str) -> InputResult:
        """Get one input's result (``GET /results/{job_id}/datasource/{input_name}``)."""
        return self._client.call(calls.input_result(job_id, input_name))

    def output(self, job_id: str, input_name: str, output_name: str) -> bytes:
        """Get the raw bytes of one output file, such as ``results.json`` or a binary."""
        return self._client.call(calls.output_file(job_id, input_name, output_name))

    def upvote(self, job_id: str, input_name: str) -> None:
        """Vote this input's prediction up (replaces this key's earlier vote)."""
        self._client.call(calls.vote(job_id, input_name, "upvote"))

    def downvote(self, job_id: str, input_name: str) -> None:
        """Vote this input's prediction down (replaces this key's earlier vote)."""
        self._client.call(calls.vote(job_id, input_name, "downvote"))

    def vote(self, job_id: str, input_name: str) -> VoteValue:
        """This key's own vote on the input: ``"UP"``, ``"DOWN"`` or ``"NO_VOTES"``."""
        return self._client.call(calls.get_vote(job_id, input_name))

    def reset_vote(self, job_id: str, input_name: str) -> None:
        """Reset the votes on this input (``DELETE /results/{job}/vote/{input}``)."""
        self._client.call(calls.reset_vote(job_id, input_name))


class AsyncResults:
    """``client.results`` on the async client."""

    def __init__(self, client: AsyncModzyClient) -> None:
        self._client = client

    async def retrieve(self, job_id: str, *, strict: bool = True) -> JobResults:
        """Get every input's result for a job (``GET /results/{job_id}``).

        With ``strict=False``, an input whose result cannot be parsed is set aside in
        ``JobResults.invalid`` instead of raising :class:`ResultParseError` for the job.
        """
        return await self._client.call(calls.job_results(job_id, strict=strict))

    async def retrieve_input(self, job_id: str, input_name: str) -> InputResult:
        """Get one input's result (``GET /results/{job_id}/datasource/{input_name}``)."""
        return await self._client.call(calls.input_result(job_id, input_name))

    async def output(self, job_id: str, input_name: str, output_name: str) -> bytes:
        """Get the raw bytes of one output file, such as ``results.json`` or a binary."""
        return await self._client.call(calls.output_file(job_id, input_name, output_name))

    async def upvote(self, job_id: str, input_name: str) -> None:
        """Vote this input's prediction up (replaces this key's earlier vote)."""
        await self._client.call(calls.vote(job_id, input_name, "upvote"))

    async def downvote(self, job_id: str, input_name: str) -> None:
        """Vote this input's prediction down (replaces this key's earlier vote)."""
        await self._client.call(calls.vote(job_id, input_name, "downvote"))

    async def vote(self, job_id: str, input_name: str) -> VoteValue:
        """This key's own vote on the input: ``"UP"``, ``"DOWN"`` or ``"NO_VOTES"``."""
        return await self._client.call(calls.get_vote(job_id, input_name))

    async def reset_vote(self, job_id: str, input_name: str) -> None:
        """Reset the votes on this input (``DELETE /results/{job}/vote/{input}``)."""
        await self._client.call(calls.reset_vote(job_id, input_name))


class Models:
    """``client.models``: the models list and model details."""

    def __init__(self, client: ModzyClient) -> None:
        self._client = client

    def list(self) -> builtins.list[ModelSummary]:
        """All models visible to the key (``GET /models``)."""
        return self._client.call(calls.models_list())

    def retrieve(self, model_id: str) -> ModelSummary:
        """One model's details (``GET /models/{model_id}``)."""
        return self._client.call(calls.model_details(model_id))

    def versions(self, model_id: str) -> builtins.list[ModelVersion]:
        """One model's versions (``GET /models/{model_id}/versions``)."""
        return self._client.call(calls.model_versions(model_id))


class AsyncModels:
    """``client.models`` on the async client."""

    def __init__(self, client: AsyncModzyClient) -> None:
        self._client = client

    async def list(self) -> builtins.list[ModelSummary]:
        """All models visible to the key (``GET /models``)."""
        return await self._client.call(calls.models_list())

    async def retrieve(self, model_id: str) -> ModelSummary:
        """One model's details (``GET /models/{model_id}``)."""
        return await self._client.call(calls.model_details(model_id))

    async def versions(self, model_id: str) -> builtins.list[ModelVersion]:
        """One model's versions (``GET /models/{model_id}/versions``)."""
        return await self._client.call(calls.model_versions(model_id))
