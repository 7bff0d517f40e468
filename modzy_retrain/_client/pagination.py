"""Lazy paging over the job history, with page-by-page access.

The API returns a bare array with no total and no reliable ``Link`` header, so the one
rule (kept in :meth:`JobHistoryPage.next_page`) is: pages are 1-based, and the first
page shorter than the page size (or empty) is the last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from modzy_retrain._core.exceptions import InvalidQueryError

from .models import Job
from .parsing import InvalidJob

# What a page fetch returns: the jobs, and the items a lenient pager set aside.
PageContent = tuple[list[Job], list[InvalidJob]]


@dataclass(frozen=True)
class JobHistoryPage:
    """One page of the job history.

    Attributes:
        items: The jobs on this page, in the order the API sent them.
        page: This page's number (1-based).
        page_size: The ``per-page`` that was asked for.
        invalid: Items that could not be parsed, set aside by ``history(strict=False)``
            (always empty when strict: the first one raises).
    """

    items: list[Job]
    page: int
    page_size: int
    invalid: list[InvalidJob] = field(default_factory=list)

    @property
    def has_next(self) -> bool:
        """Whether another page may follow (this one was full, set-aside items included)."""
        return len(self.items) + len(self.invalid) >= self.page_size

    @property
    def next_page(self) -> int | None:
        return self.page + 1 if self.has_next else None

    def __iter__(self) -> Iterator[Job]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class JobHistoryPager:
    """Iterate over every job of a history query, fetching pages only as needed.

    ``for job in pager`` walks the whole history; ``pager.pages()`` yields whole
    pages; ``pager.page(n)`` fetches just page ``n``. Nothing is sent until you
    iterate or ask for a page, and iterating twice queries the API twice.

    Attributes:
        params: The query parameters sent with every page (``page`` aside).
    """

    params: dict[str, str]
    _fetch: Callable[[int], PageContent] = field(repr=False)

    @property
    def page_size(self) -> int:
        return int(self.params["per-page"])

    def page(self, number: int) -> JobHistoryPage:
        """Fetch page ``number`` (1-based)."""
        if number < 1:
            raise InvalidQueryError(f"pages are numbered from 1, not {number}")
        jobs, invalid = self._fetch(number)
        return JobHistoryPage(jobs, number, self.page_size, invalid)

    def pages(self, start: int = 1) -> Iterator[JobHistoryPage]:
        """Yield pages from ``start`` until the first short or empty one (included)."""
        number: int | None = start
        while number is not None:
            current = self.page(number)
            yield current
            number = current.next_page

    def __iter__(self) -> Iterator[Job]:
        for current in self.pages():
            yield from current.items


@dataclass(frozen=True)
class AsyncJobHistoryPager:
    """The async twin of :class:`JobHistoryPager`: ``async for job in pager``."""

    params: dict[str, str]
    _fetch: Callable[[int], Awaitable[PageContent]] = field(repr=False)

    @property
    def page_size(self) -> int:
        return int(self.params["per-page"])

    async def page(self, number: int) -> JobHistoryPage:
        """Fetch page ``number`` (1-based)."""
        if number < 1:
            raise InvalidQueryError(f"pages are numbered from 1, not {number}")
        jobs, invalid = await self._fetch(number)
        return JobHistoryPage(jobs, number, self.page_size, invalid)

    async def pages(self, start: int = 1) -> AsyncIterator[JobHistoryPage]:
        """Yield pages from ``start`` until the first short or empty one (included)."""
        number: int | None = start
        while number is not None:
            current = await self.page(number)
            yield current
            number = current.next_page

    async def __aiter__(self) -> AsyncIterator[Job]:
        async for current in self.pages():
            for job in current.items:
                yield job
