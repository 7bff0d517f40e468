"""Defaults in one place."""

from __future__ import annotations

import httpx

# Connect fast, but give a results body (which can be large) time to arrive.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# A call's whole life, every attempt and wait included. The timeouts above are per
# read, so a server sending a byte a second would keep a call alive for ever without
# it. Longer than the retry budget (120 s) plus a slow attempt: it cuts only calls a
# server keeps alive by trickling.
DEFAULT_DEADLINE = 300.0
# Enough connections for the fetcher's default concurrency, plus headroom.
DEFAULT_MAX_CONNECTIONS = 64
# A response body larger than this is refused before it is read into memory. A job's
# results are about 700 bytes an input (3 KB for four, with five classes each); 16 MiB
# holds the largest job the fetcher takes (max_inputs_per_job) with explanations of a
# kilobyte each. A 61 MiB body once cost 1.5 GiB of memory.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# What the fetcher may hold at once, bodies weighed at what they become in memory (see
# ResultFetcher): an ordinary run holds about 6 MiB (128 jobs of four inputs, 44 KB
# each weighed); a job of max_inputs_per_job ordinary inputs weighs about 110 MiB, a
# 15 MiB body of numbers about 107 MiB, and each still fits alone.
DEFAULT_MAX_BYTES_IN_FLIGHT = 128 * 1024 * 1024
# Inputs the fetcher takes in one job: each weighs about 11 KB (its body, its parsed
# result and record), so 110 MiB at most.
DEFAULT_MAX_INPUTS_PER_JOB = 10_000
# Pages one history walk reads at most: a million jobs at the default page size. A
# server that always answers a full page would otherwise be walked without end.
DEFAULT_MAX_HISTORY_PAGES = 10_000
# The server's default page is 10; bigger pages mean fewer round trips. The Java SDK
# and Modzy.NET sent 1000 with no recorded failure, so that is our ceiling.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

# Label states a training run can use as they are: what retraining thresholds count.
# ``needs_label`` and ``conflict`` rows wait for a human; ``labelled`` is a human's.
TRAINABLE_LABEL_STATES: frozenset[str] = frozenset({"confirmed", "corrected", "labelled"})

API_KEY_ENV = "MODZY_API_KEY"
BASE_URL_ENV = "MODZY_BASE_URL"
