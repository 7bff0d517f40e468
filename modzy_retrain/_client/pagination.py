"""Lazy paging over the job history, with page-by-page access.

The API returns a bare array with no total and no reliable ``Link`` header, so the one
rule (kept in :meth:`JobHistoryPage.next_page`) is: pages are 1-based, and the first
page shorter than the page size (or empty) is the last.

That rule trusts the server to end. One that ignores ``page`` answers the same full
page for ever, one that makes jobs up answers new full pages for ever: the walk
(:class:`HistoryWalk`, pure, shared by both pagers) stops at a full page it has seen
before and after ``max_pages`` pages, with :class:`PaginationError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from modzy_retrain._core.constants import DEFAULT_MAX_HISTORY_PAGES
from modzy_retrain._core.exceptions import ConfigurationError, InvalidQueryError, PaginationError

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

    def fingerprint(self) -> bytes:
        """16 bytes that tell this page's items from another page's (its job ids, in order)."""
        digest = hashlib.blake2b(digest_size=16)
        for job in self.items:
            digest.update(job.job_id.encode("utf-8", "surrogatepass") + b"\0")
        for bad in self.invalid:
            digest.update(f"{bad.index}:{bad.job_id}:{bad.reason}".encode("utf-8", "replace"))
        return digest.digest()


def check_max_pages(max_pages: object) -> int | None:
    """``max_pages`` as given, or a ``ConfigurationError`` (before any request)."""
    if max_pages is None:
        return None
    if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1:
        raise ConfigurationError(
            f"max_pages takes a whole number of at least 1, or None, not {max_pages!r}"
        )
    return max_pages


@dataclass
class HistoryWalk:
    """Where a walk over the history goes after each page, and where it must stop.

    Pure; each pager's loop asks it. A full page (one that promises a next) is
    remembered by its fingerprint (16 bytes a page, so a walk of ten thousand pages
    keeps 160 KB): meeting it again means the server is not paging, and its jobs are
    not passed on twice. A short page ends the walk as always. Strictly private.
    """

    max_pages: int | None
    walked: int = 0
    _seen: dict[bytes, int] = field(default_factory=dict)

    def admit(self, page: JobHistoryPage) -> None:
        """Check ``page`` before its jobs go out; raise if it repeats an earlier page."""
        self.walked += 1
        if not page.has_next:
            return
        key = page.fingerprint()
        first = self._seen.setdefault(key, page.page)
        if first != page.page:
            raise PaginationError(
                f"GET /jobs/history: page {page.page} repeats page {first} (the same "
                f"{len(page.items) + len(page.invalid)} jobs): the server is not paging, "
                "so the history would never end; stopped",
                page=page.page,
                repeats=first,
            )

    def next_after(self, page: JobHistoryPage) -> int | None:
        """The page to fetch after ``page``, or ``None`` at the end; raise past the cap."""
        following = page.next_page
        if following is not None and self.max_pages is not None and self.walked >= self.max_pages:
            raise PaginationError(
                f"GET /jobs/history: still full after {self.walked} pages, the walk's "
                f"max_pages; stopped rather than read on. Narrow the query (start, end, "
                "model...) or raise max_pages",
                page=page.page,
                max_pages=self.max_pages,
            )
        return following


@dataclass(frozen=True)
class JobHistoryPager:
    """Iterate over every job of a history query, fetching pages only as needed.

    ``for job in pager`` walks the whole history; ``pager.pages()`` yields whole
    pages; ``pager.page(n)`` fetches just page ``n``. Nothing is sent until you
    iterate or ask for a page, and iterating twice queries the API twice.

    A walk raises :class:`PaginationError` at a full page that repeats an earlier one
    (before its jobs are yielded), and when page ``max_pages`` is full.

    Attributes:
        params: The query parameters sent with every page (``page`` aside).
        max_pages: Pages one walk reads at most (``None``: no cap).
    """

    params: dict[str, str]
    _fetch: Callable[[int], PageContent] = field(repr=False)
    max_pages: int | None = DEFAULT_MAX_HISTORY_PAGES

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
        walk = HistoryWalk(self.max_pages)
        number: int | None = start
        while number is not None:
            current = self.page(number)
            walk.admit(current)
            yield current
            number = walk.next_after(current)

    def __iter__(self) -> Iterator[Job]:
        for current in self.pages():
            yield from current.items


@dataclass(frozen=True)
class AsyncJobHistoryPager:
    """The async twin of :class:`JobHistoryPager`: ``async for job in pager``."""

    params: dict[str, str]
    _fetch: Callable[[int], Awaitable[PageContent]] = field(repr=False)
    max_pages: int | None = DEFAULT_MAX_HISTORY_PAGES

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
        walk = HistoryWalk(self.max_pages)
        number: int | None = start
        while number is not None:
            current = await self.page(number)
            walk.admit(current)
            yield current
            number = walk.next_after(current)

    async def __aiter__(self) -> AsyncIterator[Job]:
        async for current in self.pages():
            for job in current.items:
                yield job
